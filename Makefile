# flexhook build, test, demo and benchmarks. Every target works as root on a
# fresh Debian machine: `deps` installs what is missing.
SHELL := /bin/bash
GO ?= go
BIN := bin/flexhook
# Debian packages the tests and the demo need (--no-install-recommends).
DEB_PACKAGES := ca-certificates iproute2 net-tools iputils-ping nftables wireguard-tools wireguard-go gawk mawk procps etcd-server systemd zsh fish mmdebstrap systemd-container
PRESET ?= vxlan-prod
NODES ?= 3
INTEGRATION_TIMEOUT ?= 25m

# golangci-lint, pinned; make deps installs it with go install.
GOLANGCI_LINT_VERSION := v2.15.0
GOLANGCI_LINT := $(shell $(GO) env GOPATH)/bin/golangci-lint
# A count of executions, not a duration: with a duration, Go 1.26's fuzz
# coordinator can fail a target at the deadline (go.dev/issue/75804).
FUZZTIME ?= 10000x
# The fuzz targets, as package:Target.
FUZZ_TARGETS := ./leases:FuzzDecodeAdmit ./hooks:FuzzParse ./internal/puretools:FuzzPureArgv ./runner/shell:FuzzStraightParity

.PHONY: all build dist image systemd-rootfs deps docs lint unit cover fuzz soak integration integration-kube test demo bench bench-kube flanneld clean

all: build

# VERSION is stamped into the binary (flexhook version); Go stamps the
# commit itself. The binary is static (no cgo), so it runs in any image.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
COMMIT ?= $(shell git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)$(shell git diff --quiet HEAD 2>/dev/null || echo -dirty)

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" -o $(BIN) ./cmd/flexhook

# dist builds the release artefacts in dist/: a static binary and a .deb
# (tools/mkdeb: /usr/bin/flexhook, the systemd unit, /etc/flexhook/env)
# per architecture.
DIST_ARCHES ?= amd64 arm64
dist:
	rm -rf dist && mkdir -p dist
	for a in $(DIST_ARCHES); do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" \
			-o dist/flexhook-linux-$$a ./cmd/flexhook || exit 1; \
		$(GO) run ./tools/mkdeb -arch $$a -version $(VERSION) -bin dist/flexhook-linux-$$a \
			-unit contrib/flexhook.service -out dist/flexhook_$$a.deb || exit 1; \
	done
	ls -l dist

# systemd-rootfs makes the Debian root filesystem (a tar) that
# TestSystemdBoot boots with systemd-nspawn, systemd as its PID 1, to
# install the .deb and `systemctl enable --now flexhook` in: mmdebstrap's
# Essential packages, systemd and the .deb's Depends, no docs. It is
# cached in SYSTEMD_CACHE under a name that hashes what makes it (about
# 90 s and 90 MB to build; rm -rf .cache/systemd for newer packages), and
# the last line printed names it. As root.
SYSTEMD_SUITE ?= trixie
SYSTEMD_MIRROR ?= http://deb.debian.org/debian
SYSTEMD_ARCH ?= $(shell $(GO) env GOARCH)
SYSTEMD_PACKAGES := systemd iproute2 net-tools wireguard-tools procps
SYSTEMD_CACHE ?= .cache/systemd
SYSTEMD_MMDEBSTRAP := mmdebstrap --variant=essential --format=tar --arch=$(SYSTEMD_ARCH) --include='$(SYSTEMD_PACKAGES)' \
	--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/doc/*'
SYSTEMD_ROOTFS := $(SYSTEMD_CACHE)/rootfs-$(SYSTEMD_SUITE)-$(SYSTEMD_ARCH)-$(shell echo '$(SYSTEMD_MMDEBSTRAP) $(SYSTEMD_SUITE) $(SYSTEMD_MIRROR)' | sha256sum | cut -c1-12).tar

$(SYSTEMD_ROOTFS):
	@mkdir -p $(@D) && rm -f $(SYSTEMD_CACHE)/rootfs-$(SYSTEMD_SUITE)-$(SYSTEMD_ARCH)-*.tar
	$(SYSTEMD_MMDEBSTRAP) $(SYSTEMD_SUITE) $@.part $(SYSTEMD_MIRROR)
	mv $@.part $@

systemd-rootfs: $(SYSTEMD_ROOTFS)
	@echo "systemd rootfs: $(abspath $(SYSTEMD_ROOTFS))"

# image builds the OCI image of deploy/kube-flexhook.yml without any
# container daemon: mmdebstrap makes a Debian root filesystem (a tar: the
# Essential packages and IMAGE_PACKAGES, no apt, no docs or man pages), and
# tools/mkimage packs it with a static flexhook at /usr/local/bin/flexhook
# into one archive that docker load, podman load and ctr import accept
# (deploy/IMAGE.md). The root filesystem is cached in IMAGE_CACHE under a
# name that hashes what makes it, so only a change of those rebuilds it
# (rm -rf .cache/image to take newer Debian packages). As root.
IMAGE_SUITE ?= trixie
IMAGE_MIRROR ?= http://deb.debian.org/debian
IMAGE_SECURITY ?= http://deb.debian.org/debian-security
# The suite, its updates and its security updates.
IMAGE_SOURCES := 'deb $(IMAGE_MIRROR) $(IMAGE_SUITE) main' 'deb $(IMAGE_MIRROR) $(IMAGE_SUITE)-updates main' \
	'deb $(IMAGE_SECURITY) $(IMAGE_SUITE)-security main'
# The tools the presets' hooks run (ip, bridge, arp, wg, sysctl, nft),
# wireguard-go for kernels without WireGuard, ping and CA certificates.
IMAGE_PACKAGES := iproute2 net-tools wireguard-tools wireguard-go nftables procps iputils-ping ca-certificates
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)
IMAGE_TAG ?= flexhook:$(VERSION)
IMAGE_OUT ?= dist/flexhook-image.tar
IMAGE_CACHE ?= .cache/image
# Every file's mtime and the image's created time: the commit's time.
IMAGE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
# mmdebstrap's SOURCE_DATE_EPOCH: what files inside record as a date
# (/etc/shadow's last change) is trixie's release day, whatever the day of
# the build.
IMAGE_ROOTFS_EPOCH := 1754697600
IMAGE_MMDEBSTRAP := mmdebstrap --variant=essential --arch=$(IMAGE_ARCH) --include='$(IMAGE_PACKAGES)' \
	--dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
	--dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-include=/usr/share/locale/locale.alias' \
	--dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright'
# What mmdebstrap leaves that an image does without: apt's state (apt is
# not installed), the build host's resolv.conf and hostname (the runtime
# provides both), debconf's backups, the empty man and info trees.
IMAGE_TARFILTER := mmtarfilter $(foreach p,/var/lib/apt /var/cache/apt /usr/share/man /usr/share/info,--path-exclude='$(p)' --path-exclude='$(p)/*') \
	--path-exclude=/etc/resolv.conf --path-exclude=/etc/hostname --path-exclude='/var/cache/debconf/*-old'
IMAGE_ROOTFS := $(IMAGE_CACHE)/rootfs-$(IMAGE_SUITE)-$(IMAGE_ARCH)-$(shell echo '$(IMAGE_MMDEBSTRAP) $(IMAGE_TARFILTER) $(IMAGE_SUITE) $(IMAGE_SOURCES) $(IMAGE_ROOTFS_EPOCH)' | sha256sum | cut -c1-12).tar

$(IMAGE_ROOTFS):
	@mkdir -p $(@D) && rm -f $(IMAGE_CACHE)/rootfs-$(IMAGE_SUITE)-$(IMAGE_ARCH)-*.tar
	set -o pipefail; SOURCE_DATE_EPOCH=$(IMAGE_ROOTFS_EPOCH) $(IMAGE_MMDEBSTRAP) $(IMAGE_SUITE) - $(IMAGE_SOURCES) | $(IMAGE_TARFILTER) > $@.part
	mv $@.part $@

image: $(IMAGE_ROOTFS)
	@mkdir -p $(dir $(IMAGE_OUT))
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -ldflags "-X main.version=$(VERSION) -X main.commit=$(COMMIT)" \
		-o $(IMAGE_CACHE)/flexhook-linux-$(IMAGE_ARCH) ./cmd/flexhook
	$(GO) run ./tools/mkimage -rootfs $(IMAGE_ROOTFS) -bin $(IMAGE_CACHE)/flexhook-linux-$(IMAGE_ARCH) -arch $(IMAGE_ARCH) \
		-tag $(IMAGE_TAG) -version $(VERSION) -revision $(COMMIT) -epoch $(IMAGE_EPOCH) -out $(IMAGE_OUT)

# deps installs the Debian packages (as root) and the Go modules.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (run as root)"; exit 1; fi; \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(GO) mod download
	@if ! $(GOLANGCI_LINT) version 2>/dev/null | grep -q "version $(GOLANGCI_LINT_VERSION:v%=%) "; then \
		echo "installing golangci-lint $(GOLANGCI_LINT_VERSION)"; \
		$(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION); \
	fi

# docs regenerates what is generated from the command table in
# cmd/flexhook: docs/flags.md and the completion scripts' golden files
# (tests fail while either is stale).
docs:
	$(GO) test ./cmd/flexhook -run 'TestFlagReference|Completion' -count=1 -update

lint:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./...
	$(GOLANGCI_LINT) run ./...

# unit runs every package's tests with the race detector. The integration
# tag is on so the few root-only tests inside packages (e.g. wireguard-go
# fallback) run too; the slow netns suite is ./integration (below).
unit:
	$(GO) test -race -count=1 -tags integration $$($(GO) list ./... | grep -v /integration$$)

# integration runs the root-only tests in network namespaces. With CI=true a
# skip (not root, missing tool) is a failure.
integration: build
	FLEXHOOK_BIN=$(CURDIR)/$(BIN) $(GO) test -tags integration -count=1 -timeout $(INTEGRATION_TIMEOUT) -v ./integration/...

# integration-kube runs the nested module integration/kube: the kube store
# and `flexhook run --kube-subnet-mgr` against a real kube-apiserver (from
# k8s.io/kubernetes, in this process) and flanneld's own kube subnet
# manager, the manifest deploy/kube-flexhook.yml, and two 3-node netns
# labs. Its own go.mod keeps k8s.io/kubernetes out of the main one; a cold
# build takes about 16 minutes on 2 cores (~260 modules, ~5 GB of build
# cache), a warm one seconds. It is vetted here, not in lint, for that
# reason.
integration-kube: build
	cd integration/kube && $(GO) vet -tags integration ./...
	cd integration/kube && FLEXHOOK_BIN=$(CURDIR)/$(BIN) $(GO) test -tags integration -count=1 -timeout $(INTEGRATION_TIMEOUT) -v ./...

# fuzz runs each fuzz target for FUZZTIME (CI: 10000 executions, a few
# seconds; locally, e.g. make fuzz FUZZTIME=2000000x).
fuzz:
	@set -e; for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; name=$${t#*:}; \
		echo "fuzz $$name ($$pkg) for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg; \
	done

# cover prints each package's statement coverage of the unit tests (as
# root the in-package root-only tests count too).
cover:
	@$(GO) test -count=1 -cover -tags integration $$($(GO) list ./... | grep -v /integration$$) > .cover.log 2>&1; rc=$$?; \
		awk '/coverage:/ { for (i = 1; i <= NF; i++) { if ($$i ~ /^github.com/) p = $$i; if ($$i == "coverage:") c = $$(i+1) }; print p, c }' .cover.log | column -t; \
		if [ $$rc != 0 ]; then grep -E '^(--- FAIL|FAIL|panic)' .cover.log; echo "make cover: tests failed (full output in .cover.log)"; fi; exit $$rc

# soak runs the engine core's deterministic simulation (runner/sim_test.go)
# for SOAK_TIME instead of make test's 5000 schedules, and prints the count.
SOAK_TIME ?= 10m
soak:
	$(GO) test -count=1 -timeout 0 -run '^TestSimulation$$' ./runner -sim.duration $(SOAK_TIME) -v | grep -E '^(simulation|---|ok|FAIL)|seed'

test: deps lint unit fuzz integration integration-kube

demo: deps build
	$(BIN) lab --preset $(PRESET) --nodes $(NODES) $(DEMO_FLAGS)

# bench: the micro-benchmarks with their side-by-side ratios, then (as
# root) the convergence benchmark in a network namespace: BENCH_N leases
# per run, BENCH_ROUNDS rounds, latency, peak RSS and scale (sync time
# and VmHWM with 5000, 10 000 and 20 000 leases, file store and etcd;
# README's Scale) (docs/speed.md).
# With a $(FLANNELD) (make flanneld) its flanneld section times flanneld's
# compiled host-gw and vxlan backends against flexhook on etcd; without
# one the section says it was skipped.
BENCH_N ?= 1000
BENCH_ROUNDS ?= 3
BENCH_ONLY ?= host-gw,vxlan,wireguard,flanneld,latency,rss,scale
FLANNELD ?= bin/flanneld
bench: deps build
	$(GO) test -run '^$$' -bench . -benchmem -count=1 ./... | tee .bench.log
	@echo; echo "side-by-side ratios:"; $(GO) run ./tools/benchreport < .bench.log
	$(GO) build -o bin/convbench ./tools/convbench
	set -o pipefail; bin/convbench -flexhook $(BIN) $(if $(wildcard $(FLANNELD)),-flanneld $(FLANNELD)) \
		-n $(BENCH_N) -rounds $(BENCH_ROUNDS) -only $(BENCH_ONLY) | tee .convbench.log

# flanneld builds flannel's own daemon from its source, for convbench's
# flanneld section only: flannel is no dependency of flexhook (not in
# go.mod) and no part of make test or CI. `go mod download` fetches the
# module FLANNEL_VERSION from the Go module proxy (the newest tag by
# default; the proxy serves no branch such as master); a writable copy in
# a temporary directory is built static (CGO_ENABLED=0) into $(FLANNELD), without
# the two backends that cannot build so here (udp needs cgo on amd64,
# tencentvpc's SDK is not on the proxy), and $(FLANNELD).version records
# the module version and hash. flanneld wants the iptables binary at
# start even in nftables mode (it cleans up iptables rules it may have
# left), so iptables is installed if missing. As root; about 3 minutes
# the first time on 2 cores.
FLANNEL_VERSION ?= v0.28.10
FLANNEL_SKIP_BACKENDS := udp tencentvpc
flanneld:
	@command -v iptables >/dev/null || { echo "installing: iptables"; apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends iptables; }
	set -euo pipefail; \
	json=$$($(GO) mod download -json github.com/flannel-io/flannel@$(FLANNEL_VERSION)); \
	field() { echo "$$json" | sed -n 's/^[[:space:]]*"'$$1'": "\(.*\)",\{0,1\}$$/\1/p'; }; \
	ver=$$(field Version); dir=$$(field Dir); sum=$$(field Sum); \
	if [ -z "$$ver" ] || [ -z "$$dir" ]; then echo "$$json"; exit 1; fi; \
	src=$$(mktemp -d); trap 'rm -rf "$$src"' EXIT; cp -r "$$dir/." "$$src" && chmod -R u+w "$$src"; \
	for b in $(FLANNEL_SKIP_BACKENDS); do \
		grep -q "^\s*_ \"github.com/flannel-io/flannel/pkg/backend/$$b\"$$" "$$src/main.go" || \
			{ echo "flannel $$ver: main.go imports no backend $$b"; exit 1; }; \
		sed -i "\#^\s*_ \"github.com/flannel-io/flannel/pkg/backend/$$b\"\$$#d" "$$src/main.go"; \
	done; \
	mkdir -p $(dir $(FLANNELD)); \
	(cd "$$src" && CGO_ENABLED=0 $(GO) build -trimpath \
		-ldflags "-X github.com/flannel-io/flannel/pkg/version.Version=$$ver" -o $(abspath $(FLANNELD)) .); \
	echo "github.com/flannel-io/flannel $$ver $$sum (asked: $(FLANNEL_VERSION)); without backends: $(FLANNEL_SKIP_BACKENDS)" > $(FLANNELD).version; \
	cat $(FLANNELD).version

# bench-kube: issue 24's scale figures. TestScale (integration/kube)
# with SCALE_NODES kubelet-sized Nodes (~12 KB each) on a real
# kube-apiserver and one `flexhook run --kube-subnet-mgr` (host-gw, in a
# network namespace): the line `scale: nodes=N routes_in=S vmhwm=MiB`
# is the time from the agent's start to all N routes in its kernel and
# its peak RSS then. SCALE_GOMEMLIMIT (e.g. 40MiB) is the agent's
# GOMEMLIMIT. With a $(FLANNELD) (make flanneld) flanneld then runs the
# same recipe on the same Nodes: `scale: flanneld ...` and the ratios.
# make integration-kube runs the same test (5000 Nodes, about 30 s;
# no flanneld). As root; the kube module's first build takes ~16 minutes.
SCALE_NODES ?= 5000
SCALE_GOMEMLIMIT ?=
bench-kube: build
	cd integration/kube && FLEXHOOK_BIN=$(CURDIR)/$(BIN) FLEXHOOK_SCALE_NODES=$(SCALE_NODES) FLEXHOOK_SCALE_GOMEMLIMIT=$(SCALE_GOMEMLIMIT) \
		FLEXHOOK_FLANNELD_BIN=$(if $(wildcard $(FLANNELD)),$(abspath $(FLANNELD))) \
		$(GO) test -tags integration -count=1 -timeout 20m -run '^TestScale$$' -v . 2>&1 | tee $(CURDIR)/.bench-kube.log | \
		grep -E '^(scale:|\s*--- |ok|FAIL|PASS)'; exit $${PIPESTATUS[0]}

clean:
	rm -rf bin .integration.log .bench.log .convbench.log .bench-kube.log
