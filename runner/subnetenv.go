package runner

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/pathmtu"
	"github.com/flexhook/flexhook/leases"
)

// MTUProbe finds the MTU of the path pod traffic takes to other nodes in
// the kernel; pathmtu.Probe is the real one. ok is false when nothing of
// the overlay is in the kernel yet.
type MTUProbe func(pathmtu.Query) (p pathmtu.Path, ok bool, err error)

// mtuOptions say where FLANNEL_MTU comes from, first match wins: the
// operator's MTU, the config's Backend.MTU, the probe, the underlay's.
type mtuOptions struct {
	fixed    int      // MTU
	underlay int      // UnderlayMTU, when the probe finds no path
	iface    string   // the underlay's interface, for the source
	probe    MTUProbe // ProbeMTU
}

// MTU is FLANNEL_MTU as the operator gives it (--mtu): no probing, and it
// wins over the config's Backend.MTU.
func MTU(mtu int) Option {
	return func(o *options) error {
		if mtu < 68 || mtu > 65535 {
			return fmt.Errorf("MTU %d: out of range 68..65535", mtu)
		}
		o.mtu.fixed = mtu
		return nil
	}
}

// UnderlayMTU is the MTU of the interface the node's public IP is on
// (iface, for the status): FLANNEL_MTU while the probe finds no path,
// e.g. a host-gw node before its first peer. Default DefaultMTU. An
// interface may have a larger MTU than an IP packet's 65535 bytes
// (loopback's is 65536): FLANNEL_MTU is then 65535.
func UnderlayMTU(mtu int, iface string) Option {
	return func(o *options) error {
		if mtu < 68 {
			return fmt.Errorf("underlay MTU %d: want at least 68", mtu)
		}
		mtu = min(mtu, 65535)
		o.mtu.underlay, o.mtu.iface = mtu, iface
		return nil
	}
}

// ProbeMTU sets how FLANNEL_MTU is found when neither MTU nor the
// config's Backend.MTU gives it: after PostStartupCommand, after each
// batch of hooks and every status heartbeat, p reads the path's MTU from
// the kernel, and subnet.env is rewritten when it changes. nil (the
// default) probes nothing: the underlay's MTU is used.
func ProbeMTU(p MTUProbe) Option {
	return func(o *options) error {
		o.mtu.probe = p
		return nil
	}
}

// subnetFile keeps flannel's subnet.env: it works out FLANNEL_MTU and
// rewrites the file when its content changes. refresh runs in the engine's
// goroutine; mtuNow may be read from any.
type subnetFile struct {
	path   string // "" writes nothing (the MTU is still worked out)
	ipMasq bool   // FLANNEL_IPMASQ
	o      mtuOptions
	log    *slog.Logger

	mu      sync.Mutex
	written []byte
	mtu     int
	source  string
}

// refresh works out FLANNEL_MTU for cfg and own and rewrites subnet.env
// if it changed; changed says whether the MTU or its source did. A failed
// probe keeps the MTU found before (or falls back to the underlay's the
// first time), logged.
func (f *subnetFile) refresh(cfg *hooks.Config, own leases.Lease) (changed bool, err error) {
	mtu, source := f.resolve(cfg, own)
	data := subnetEnv(cfg, own, mtu, f.ipMasq)
	f.mu.Lock()
	old, oldMTU := f.written, f.mtu
	changed = oldMTU != mtu || f.source != source
	f.mtu, f.source = mtu, source
	f.mu.Unlock()
	if oldMTU != 0 && oldMTU != mtu {
		if mtu < oldMTU {
			f.log.Warn("FLANNEL_MTU dropped: pods made before keep the old, larger MTU until they are recreated",
				"from", oldMTU, "to", mtu, "source", source)
		} else {
			f.log.Info("FLANNEL_MTU changed", "from", oldMTU, "to", mtu, "source", source)
		}
	}
	if f.path == "" || bytes.Equal(old, data) {
		return changed, nil
	}
	if err := writeSubnetFile(f.path, data); err != nil {
		return changed, err
	}
	f.mu.Lock()
	f.written = data
	f.mu.Unlock()
	if old == nil {
		f.log.Info("subnet.env written", "path", f.path, "mtu", mtu, "mtu_source", source)
	}
	return changed, nil
}

// resolve returns FLANNEL_MTU and where it came from.
func (f *subnetFile) resolve(cfg *hooks.Config, own leases.Lease) (int, string) {
	switch {
	case f.o.fixed > 0:
		return f.o.fixed, "--mtu"
	case cfg.Backend.MTU > 0:
		return cfg.Backend.MTU, "Backend.MTU"
	}
	if f.o.probe != nil {
		p, ok, err := f.o.probe(mtuQuery(cfg, own))
		switch {
		case err != nil:
			f.mu.Lock()
			mtu, source := f.mtu, f.source
			f.mu.Unlock()
			f.log.Warn("cannot read the path MTU from the kernel", "error", err)
			if mtu > 0 {
				return mtu, source
			}
		case ok:
			return p.MTU, "path: dev " + p.Device + ", " + p.Why
		}
	}
	if f.o.underlay > 0 {
		src := "underlay"
		if f.o.iface != "" {
			src += " " + f.o.iface
		}
		return f.o.underlay, src
	}
	return DefaultMTU, "default"
}

// mtuNow returns the last FLANNEL_MTU worked out and its source (0
// before the first refresh).
func (f *subnetFile) mtuNow() (int, string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mtu, f.source
}

func mtuQuery(cfg *hooks.Config, own leases.Lease) pathmtu.Query {
	var q pathmtu.Query
	for _, p := range []netip.Prefix{cfg.Network, cfg.IPv6Network} {
		if p.IsValid() {
			q.Networks = append(q.Networks, p)
		}
	}
	for _, p := range []netip.Prefix{own.Subnet, own.IPv6Subnet} {
		if p.IsValid() {
			q.Own = append(q.Own, p)
		}
	}
	return q
}
