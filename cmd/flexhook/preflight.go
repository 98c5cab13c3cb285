package main

import (
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"

	"mvdan.cc/sh/v3/interp"
	"mvdan.cc/sh/v3/syntax"

	"github.com/flexhook/flexhook/hooks"
)

// packageOf names the Debian package of a tool the presets use.
var packageOf = map[string]string{
	"ip": "iproute2", "bridge": "iproute2", "arp": "net-tools", "wg": "wireguard-tools",
	"wireguard-go": "wireguard-go", "nft": "nftables", "sysctl": "procps",
}

// hostProblems lists what on this host would make cfg's hooks fail before
// they change anything: a command they name (a literal command word, not
// a builtin or a function of the hook) that is not on PATH, and a process
// without CAP_NET_ADMIN. capStatus is /proc/self/status's content.
func hostProblems(cfg *hooks.Config, capStatus string) []string {
	var out []string
	for _, k := range hooks.Kinds {
		h := cfg.Backend.Hook(k)
		if h.Empty() {
			continue
		}
		funcs := map[string]bool{}
		syntax.Walk(h.File, func(n syntax.Node) bool {
			if fd, ok := n.(*syntax.FuncDecl); ok {
				funcs[fd.Name.Value] = true
			}
			return true
		})
		seen := map[string]bool{}
		syntax.Walk(h.File, func(n syntax.Node) bool {
			call, ok := n.(*syntax.CallExpr)
			if !ok || len(call.Args) == 0 {
				return true
			}
			name := call.Args[0].Lit()
			if name == "" || seen[name] || funcs[name] || interp.IsBuiltin(name) || slices.Contains(hooks.UnsupportedBuiltins, name) {
				return true
			}
			seen[name] = true
			if _, err := exec.LookPath(name); err != nil {
				msg := fmt.Sprintf("%s:%d:%d: %s: not found on PATH", k, call.Pos().Line(), call.Pos().Col(), name)
				if p := packageOf[name]; p != "" {
					msg += fmt.Sprintf(" (Debian: apt-get install --no-install-recommends %s)", p)
				}
				out = append(out, msg)
			}
			return true
		})
	}
	if !hasNetAdmin(capStatus) {
		out = append(out, "no CAP_NET_ADMIN: hooks that change links, addresses or routes fail (run as root, or grant CAP_NET_ADMIN)")
	}
	return out
}

// capNetAdmin is CAP_NET_ADMIN's bit in the capability sets.
const capNetAdmin = 12

// hasNetAdmin reports whether a /proc/PID/status has CAP_NET_ADMIN in its
// effective set (unknown: yes, so a host without /proc is not blamed).
func hasNetAdmin(status string) bool {
	for _, line := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err != nil || caps&(1<<capNetAdmin) != 0
		}
	}
	return true
}

// ownStatus is this process's /proc/self/status ("" where there is none).
func ownStatus() string {
	b, _ := os.ReadFile("/proc/self/status")
	return string(b)
}
