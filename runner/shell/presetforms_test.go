package shell_test

import (
	"context"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/netcmd"
	"github.com/flexhook/flexhook/internal/wgkey"
	"github.com/flexhook/flexhook/presets"
	"github.com/flexhook/flexhook/runner/shell"
)

// argvLog keeps every command a dry-run traced.
type argvLog struct {
	mu   sync.Mutex
	cmds [][]string
}

func (a *argvLog) Trace(ev shell.TraceEvent) {
	if ev.Redirect || len(ev.Argv) == 0 {
		return
	}
	a.mu.Lock()
	a.cmds = append(a.cmds, slices.Clone(ev.Argv))
	a.mu.Unlock()
}

// presetSlowForms are the presets' network commands the fast path leaves
// to the real binary, each with why; every other `ip`, `bridge`, `arp`
// or `wg` command a preset runs must be fast (netcmd's `wg set`, wgkey's
// `wg genkey` and `wg pubkey`). A preset that
// gains a form must either be fast (and in the parity suite) or be named
// here.
var presetSlowForms = map[string]string{
	"ip link show":          "a query, once at start (PreStartup, PostStartup)",
	"ip route get":          "a query: DirectRouting's per-peer test, only with DirectRouting true",
	"ip link add wireguard": "wireguard devices are made by wireguard-go or the module, once at start",
	"ip -6 addr add nodad":  "once at start (PostStartup); iproute2's nodad flag is not read",
	"wg show":               "wireguard-prod's query of the device's key and port, once at start (PostStartup)",
}

// slowKey names cmd's form for presetSlowForms.
func slowKey(argv []string) string {
	s := strings.Join(argv, " ")
	switch {
	case argv[0] == "wg" && len(argv) > 1 && argv[1] == "show":
		return "wg show"
	case strings.HasPrefix(s, "ip link show"):
		return "ip link show"
	case strings.HasPrefix(s, "ip route get"):
		return "ip route get"
	case strings.HasPrefix(s, "ip link add") && strings.HasSuffix(s, "type wireguard"):
		return "ip link add wireguard"
	case strings.HasPrefix(s, "ip -6 addr add") && strings.HasSuffix(s, " nodad"):
		return "ip -6 addr add nodad"
	}
	return ""
}

// TestPresetFormsAreFast runs every hook of every preset in dry-run,
// single and dual stack, DirectRouting off and on, and reads each network
// command it would run with netcmd (wg's key commands with wgkey): every
// one is fast, or a form presetSlowForms names. So turning the fast path on by default leaves no
// preset forking ip, bridge or arp per peer.
func TestPresetFormsAreFast(t *testing.T) {
	seen := map[string]bool{}
	for _, name := range presets.Names() {
		raw, err := presets.Get(name)
		require.NoError(t, err)
		cfg, err := hooks.Parse(raw)
		require.NoError(t, err)
		for _, dual := range []bool{false, true} {
			for _, direct := range []string{"", "true"} {
				var tl argvLog
				sh, err := shell.New(shell.Dir(t.TempDir()), shell.DryRun(true), shell.Trace(&tl))
				require.NoError(t, err)
				env := []string{"NETWORK=10.50.0.0/16", "PUBLIC_IP=192.0.2.2", "DIRECT_ROUTING=" + direct}
				if dual {
					env = append(env, "IPV6_NETWORK=fd00:10:50::/56", "IPV6SUBNET=fd00:10:50:2::/64", "PUBLIC_IPV6=fd00::2")
				}
				for _, k := range hooks.Kinds {
					h := cfg.Backend.Hook(k)
					if h.Empty() {
						continue
					}
					// A dry-run may fail where a skipped command's output was
					// needed (wireguard-prod's wg pubkey < privatekey); what
					// ran before is traced, and the other hooks still run.
					data := "b2:d1:fc:40:8d:2f\n" // a VTEP MAC; wireguard's peers send their public key
					if strings.HasPrefix(name, "wireguard") {
						data = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\n"
					}
					_, _ = sh.Run(context.Background(), shell.Request{Hook: h, Env: append(slices.Clone(env), "SUBNET=10.50.2.0/24"),
						Stdin: data, Subnet: "10.50.2.0/24"})
				}
				for _, argv := range tl.cmds {
					switch argv[0] {
					case "ip", "bridge", "arp", "wg":
					default:
						continue
					}
					line := strings.Join(argv, " ")
					if _, ok := wgkey.Command(argv); ok {
						seen[line] = true
						continue
					}
					c, err := netcmd.Parse(argv)
					if err == nil && c.Fast {
						seen[line] = true
						continue
					}
					if k := slowKey(argv); k != "" && presetSlowForms[k] != "" {
						continue
					}
					t.Errorf("preset %s (dual stack %v, DirectRouting %q) runs %q, which the fast path does not take (%v): make it fast and add it to the parity suite, or name it in presetSlowForms", name, dual, direct, line, err)
				}
			}
		}
	}
	if len(seen) == 0 {
		t.Fatal("no fast command seen: the dry-run traced nothing")
	}
	t.Logf("%d distinct fast command lines across the presets:\n%s", len(seen), strings.Join(slices.Sorted(maps.Keys(seen)), "\n"))
}
