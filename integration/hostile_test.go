//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"mvdan.cc/sh/v3/expand"
	"mvdan.cc/sh/v3/syntax"

	"github.com/flexhook/flexhook/internal/netlab"
	"github.com/flexhook/flexhook/leases"
	presetfiles "github.com/flexhook/flexhook/presets"
	"github.com/flexhook/flexhook/runner"
)

// hostileLease is one entry written to the store, and the reason lease
// admission must refuse it for ("" for the valid ones).
type hostileLease struct {
	key, value string
	reason     leases.Reason
	// data is the valid lease's BackendData; ip its PublicIP.
	data, ip string
}

// hostileStore generates the storm: over a thousand entries of every
// category lease admission refuses, interleaved with valid leases. Keys
// the file store cannot hold (a '/' or a NUL) are made only for etcd.
// canary is a directory every payload would write into were it run.
// With shaped, BackendData must be a MAC (the vxlan recipe's shape);
// without, data of any other form is valid and reaches the hooks.
func hostileStore(canary string, forEtcd, shaped bool, own []string) []hostileLease {
	var out []hostileLease
	add := func(key, value string, r leases.Reason) {
		out = append(out, hostileLease{key: key, value: value, reason: r})
	}
	val := func(ip, data string) string {
		b, _ := json.Marshal(map[string]any{"PublicIP": ip, "PublicIPv6": nil, "BackendType": "extension", "BackendData": data})
		return string(b)
	}
	mac := func(i int) string { return fmt.Sprintf("82:87:fe:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff) }
	// Subnets 10.1.x.0/24 and up hold hostile entries, 10.200.x.0/24 the
	// valid ones.
	n := 0
	subnet := func() string { n++; return fmt.Sprintf("10.%d.%d.0-24", 1+n/256, n%256) }
	payloads := []string{
		"$(touch " + canary + "/sub)", "`touch " + canary + "/tick`", "; touch " + canary + "/semi",
		"| touch " + canary + "/pipe", "&& touch " + canary + "/and", "$(IFS=_;x=touch_" + canary + "/ifs;$x)",
		"${PATH:0:1}bin/touch " + canary + "/param", "'; touch " + canary + "/quote; '", "\"; touch " + canary + "/dq; \"",
		"-rf " + canary, "--help", "-s 82:87:fe:a4:a9:55", "allowed-ips 0.0.0.0/0",
		"82:87:fe:a4:a9:55 dev lo", "82:87:fe:a4:a9:55\ntouch " + canary + "/nl", "a\x00b", "\r", "\t",
		"\x1b[2J", "\u0085", "\u2028", "82:87:FE:A4:A9:5", "00:00:00:00:00:00", "ff:ff:ff:ff:ff:ff",
		"01:00:5e:00:00:01", "82-87-fe-a4-a9-55", strings.Repeat("a", 5000), "é", "*", "~", "..", "/etc/passwd",
	}
	// BackendData: every payload as data of an otherwise valid lease.
	for i := range 12 {
		for _, p := range payloads {
			ip := fmt.Sprintf("192.0.2.%d", 30+i) // not a lab node's address (192.0.2.11 and up)
			switch {
			case leases.CheckBackendData(p) != nil:
				add(subnet(), val(ip, p), leases.ReasonBackendData)
			case shaped:
				add(subnet(), val(ip, p), leases.ReasonDataShape)
			default: // one line of text: a quoting hook gets it as one word
				out = append(out, hostileLease{key: subnet(), value: val(ip, p), data: p, ip: ip})
			}
		}
	}
	// Invalid UTF-8 inside the JSON string.
	for range 40 {
		add(subnet(), `{"PublicIP":"192.0.2.9","PublicIPv6":null,"BackendType":"extension","BackendData":"a`+"\xff\xfe"+`"}`, leases.ReasonBackendData)
	}
	// Odd PublicIPs and PublicIPv6s.
	for _, ip := range []string{"0.0.0.0", "0.1.2.3", "127.0.0.1", "127.1.2.3", "169.254.1.1", "224.0.0.1",
		"239.255.255.250", "255.255.255.255", "240.0.0.1", "::ffff:192.0.2.2", "2001:db8::1", ""} {
		for range 15 {
			add(subnet(), val(ip, mac(n)), leases.ReasonPublicIP)
		}
	}
	for _, ip6 := range []string{"fe80::1%a b", "fe80::1", "::1", "::", "ff02::1", "::ffff:192.0.2.1", "2001:db8::1%eth0"} {
		for range 15 {
			add(subnet(), `{"PublicIP":"192.0.2.9","PublicIPv6":"`+ip6+`","BackendType":"extension","BackendData":"`+mac(n)+`"}`, leases.ReasonPublicIPv6)
		}
	}
	// Values that are not leases.
	for range 8 {
		add(subnet(), "null", leases.ReasonBackendType) // decodes to an empty lease
	}
	for _, v := range []string{"", "{", "[]", `{"PublicIP":5}`, `{"PublicIP":"192.0.2.300"}`,
		`{"PublicIP":"1.2.3.4%eth0"}`, strings.Repeat("[", 20000), `{"PublicIP":"192.0.2.9","BackendData":"` + strings.Repeat("x", 70<<10) + `"}`,
		"$(touch " + canary + "/value)"} {
		for range 8 {
			add(subnet(), v, leases.ReasonBadValue)
		}
	}
	// Another BackendType.
	for _, bt := range []string{"vxlan", "host-gw", "", "EXTENSION", "extension "} {
		for range 6 {
			add(subnet(), `{"PublicIP":"192.0.2.9","PublicIPv6":null,"BackendType":"`+bt+`","BackendData":"`+mac(n)+`"}`, leases.ReasonBackendType)
		}
	}
	// Subnets outside Network or of another length.
	for _, k := range []string{"0.0.0.0-0", "10.0.0.0-8", "10.50.0.0-16", "192.168.0.0-24", "11.0.0.0-24",
		"172.16.5.0-24", "10.7.7.0-25", "10.7.8.0-23", "10.7.9.1-32", "10.7.10.0-30"} {
		add(k, val("192.0.2.9", mac(n)), leases.ReasonOutsideNetwork)
	}
	for i := 1; i <= 90; i++ {
		add(fmt.Sprintf("192.168.%d.0-24", i), val("192.0.2.9", mac(n)), leases.ReasonOutsideNetwork)
	}
	// Keys that are not canonical, or not keys.
	bad := []string{"10.7.11.0-024", "010.7.11.0-24", "10.7.11.1-24", "10.7.11.0-24 ", " 10.7.11.0-24",
		"10.7.11.0-+24", "10.7.11.0-24&", "junk", "-rf", "$(touch " + canary + "/key)",
		"`touch " + canary + "/keytick`", "10.7.11.0--24", "10.7.11.0-24\n", "\x1b[31m", "10.7.11.0-٢٤",
		strings.Repeat("k", 250), "..-24", "10.7.11.0-24;touch x", "::-0"}
	if forEtcd {
		bad = append(bad, "10.7.11.0-24/x", "a\x00b", strings.Repeat("k", 2000), "sub/dir/10.7.11.0-24")
	}
	if !forEtcd {
		// A file name holds no '/' (nor NUL), and the file store takes a
		// name starting with '.' for a write in flight, not a lease.
		bad = slices.DeleteFunc(bad, func(k string) bool { return strings.Contains(k, "/") || strings.HasPrefix(k, ".") })
		bad = append(bad, "$(touch canary-key)", "`touch canary-tick`")
	}
	for i := range 4 {
		for _, k := range bad {
			if i > 0 {
				k = fmt.Sprintf("%s%d", k, i) // distinct keys, still bad
			}
			add(k, val("192.0.2.9", mac(n)), leases.ReasonBadKey)
		}
	}
	// A dual-stack key while dual stack is off.
	add("10.7.12.0-24&fd00::-64", val("192.0.2.9", mac(n)), leases.ReasonIPv6Subnet)
	// The valid leases, each with non-canonical twins that must not make
	// it flap.
	for i := range 12 {
		s := fmt.Sprintf("10.200.%d.0-24", i)
		ip, data := fmt.Sprintf("192.0.2.%d", 100+i), mac(0xa00000+i)
		out = append(out, hostileLease{key: s, value: val(ip, data), data: data, ip: ip})
		add(fmt.Sprintf("10.200.%d.0-0024", i), val("192.0.2.66", mac(0xb00000+i)), leases.ReasonBadKey)
		if shaped {
			// A later lease repeating a valid one's VTEP MAC (in other
			// case): its fdb entry would move the valid peer's.
			add(fmt.Sprintf("10.202.%d.0-24", i), val("192.0.2.77", strings.ToUpper(data)), leases.ReasonDuplicateData)
		}
	}
	// PublicIPs that are this node's own addresses (not its public IP).
	for i, a := range own {
		add(fmt.Sprintf("10.203.%d.0-24", i), val(a, mac(0xc00000+i)), leases.ReasonOwnPublicIP)
	}
	return out
}

// storm is one store under the hostile test: how to write an entry and
// the node's store flags.
type storm interface {
	put(t *testing.T, key, value string)
	flags() []string
}

// fileStorm writes into the lab's shared file store.
type fileStorm struct{ dir string }

func (s fileStorm) put(t *testing.T, key, value string) {
	p := filepath.Join(s.dir, "subnets", key)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o700))
	require.NoError(t, os.WriteFile(p, []byte(value), 0o600), "%q", key)
	exp := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(p, exp, exp))
}

func (s fileStorm) flags() []string { return []string{"--store-resync", "500ms"} }

// etcdStorm writes into the lab's etcd, from the hub.
type etcdStorm struct{ e *labEtcd }

func (s etcdStorm) put(t *testing.T, key, value string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.e.Client(t).Put(ctx, leases.DefaultPrefix+"/subnets/"+key, value)
	require.NoError(t, err, "%q", key)
}

func (s etcdStorm) flags() []string { return []string{"--etcd-endpoints", s.e.Endpoint} }

// TestHostileLeases fills a store with over a thousand hostile entries and
// a few valid ones while a real daemon runs in a lab node's namespace with
// the real tools: the vxlan recipe's own hooks (its data shape: a MAC),
// and a custom config that quotes its variables and hands any one-line
// data to a real process (printf, through env). No payload runs; the
// trace shows every command a hook ran with exactly the valid lease's
// fields as its words; the kernel (vxlan) or the process's output
// (quoted) holds exactly the valid leases' data; the daemon stays up and
// applies a valid lease written after the storm, and status lists every
// refusal with its reason. Both stores (the lab's file store, the lab's
// etcd).
func TestHostileLeases(t *testing.T) {
	bin := requireLab(t, "etcd", "bridge", "arp")
	vxlanRaw, err := presetfiles.Get("vxlan")
	require.NoError(t, err)
	var vx map[string]any
	require.NoError(t, json.Unmarshal(vxlanRaw, &vx))
	vx["Network"] = "10.0.0.0/8" // room for the storm; the hooks stay the recipe's
	vxlanCfg, err := json.Marshal(vx)
	require.NoError(t, err)

	for _, store := range []string{"file", "etcd"} {
		for _, kind := range []string{"vxlan", "quoted"} {
			t.Run(store+"/"+kind, func(t *testing.T) {
				t.Parallel()
				ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
				defer cancel()
				lab := newLab(t, ctx, bin, 1)
				var st storm = fileStorm{dir: lab.StoreDir()}
				if store == "etcd" {
					st = etcdStorm{e: startLabEtcd(t, ctx, lab)}
				}
				cfg := string(vxlanCfg)
				if kind == "quoted" {
					seen, err := json.Marshal(filepath.Join(t.TempDir(), "seen"))
					require.NoError(t, err)
					cfg = `{"Network": "10.0.0.0/8", "Backend": {"Type": "extension",
						"SubnetAddCommand": "read D; env printf 'add %s %s %s\\n' \"$SUBNET\" \"$PUBLIC_IP\" \"$D\" >> ` + strings.Trim(string(seen), `"`) + `",
						"SubnetRemoveCommand": "read D; env printf 'remove %s %s %s\\n' \"$SUBNET\" \"$PUBLIC_IP\" \"$D\" >> ` + strings.Trim(string(seen), `"`) + `"}}`
				}
				hostileRun(t, ctx, lab, st, kind, cfg, store == "etcd")
			})
		}
	}
}

// traced is one command a hook ran, read back from the node's trace.
type traced struct {
	hook, subnet string
	argv         []string
}

// traceOf reads the commands of node 1's trace (--log-format json): each
// line's message is the argv, quoted as a shell would read it.
func traceOf(t *testing.T, log string) []traced {
	t.Helper()
	var out []traced
	for _, line := range strings.Split(log, "\n") {
		var e struct{ Msg, Hook, Subnet string }
		if !strings.HasPrefix(line, "{") || json.Unmarshal([]byte(line), &e) != nil || !strings.HasPrefix(e.Msg, "+ ") || e.Hook == "" {
			continue
		}
		f, err := syntax.NewParser().Parse(strings.NewReader(strings.TrimPrefix(e.Msg, "+ ")), "")
		require.NoError(t, err, "trace line %q", e.Msg)
		call, ok := f.Stmts[0].Cmd.(*syntax.CallExpr)
		if !ok {
			continue // a redirection ("+ >> FILE"), not a command
		}
		tr := traced{hook: e.Hook, subnet: e.Subnet}
		for _, w := range call.Args {
			v, err := expand.Literal(nil, w)
			require.NoError(t, err, "trace line %q", e.Msg)
			tr.argv = append(tr.argv, v)
		}
		out = append(out, tr)
	}
	return out
}

func hostileRun(t *testing.T, ctx context.Context, lab *netlab.Lab, st storm, kind, cfg string, forEtcd bool) {
	dir := t.TempDir()
	canary := filepath.Join(dir, "canary")
	require.NoError(t, os.Mkdir(canary, 0o777))
	cfgPath := filepath.Join(dir, "net-conf.json")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	var seenPath string
	if kind == "quoted" {
		var c struct{ Backend map[string]string }
		require.NoError(t, json.Unmarshal([]byte(cfg), &c))
		_, seenPath, _ = strings.Cut(c.Backend["SubnetAddCommand"], ">> ")
	}
	// An address of the node's that is not its public IP: a lease
	// carrying it is refused too.
	own := "192.0.2.200"
	out, err := lab.Exec(ctx, 1, "ip", "addr", "add", own+"/32", "dev", "eth0")
	require.NoError(t, err, "%s", out)
	publicIP := lab.Underlay(1).String()

	storm := hostileStore(canary, forEtcd, kind == "vxlan", []string{own})
	// A stale lease of this node's own PublicIP is refused only once the
	// node holds its lease (at start a node takes back the lease carrying
	// its address): written after the start.
	late := []hostileLease{}
	for i := range 10 {
		late = append(late, hostileLease{key: fmt.Sprintf("10.201.%d.0-24", i),
			value:  fmt.Sprintf(`{"PublicIP":%q,"PublicIPv6":null,"BackendType":"extension","BackendData":"82:87:fe:00:01:%02x"}`, publicIP, i),
			reason: leases.ReasonOwnPublicIP})
	}
	for _, h := range storm {
		st.put(t, h.key, h.value)
	}
	t.Logf("%s store: %d entries before the start", kind, len(storm))
	args := append([]string{"--config", cfgPath, "--trace", "--log-format", "json", "--log-level", "info"}, st.flags()...)
	require.NoError(t, lab.StartNode(ctx, 1, args...))

	valid := map[string]hostileLease{}
	for _, h := range storm {
		if h.reason == "" {
			valid[strings.ReplaceAll(h.key, "-", "/")] = h
		}
	}
	// added counts, per subnet, the SubnetAddCommands that ran to their
	// last command.
	last := "bridge"
	if kind == "quoted" {
		last = "env"
	}
	added := func() map[string]int {
		m := map[string]int{}
		for _, c := range traceOf(t, lab.Logs(1)) {
			if c.hook == "SubnetAddCommand" && c.argv[0] == last {
				m[c.subnet]++
			}
		}
		return m
	}
	require.Eventually(t, func() bool { return len(added()) >= len(valid) },
		2*time.Minute, 100*time.Millisecond, "the valid leases were never all added")

	for _, h := range late {
		st.put(t, h.key, h.value)
	}
	// By the key as status shows it (long keys shortened: several may
	// show alike), and how many distinct keys there are.
	wantRefused := map[string]leases.Reason{}
	refusedKeys := map[string]bool{}
	for _, h := range append(slices.Clone(storm), late...) {
		if h.reason != "" {
			wantRefused[leases.DisplayKey(leases.Lease{Key: h.key})] = h.reason
			refusedKeys[h.key] = true
		}
	}
	var status runner.Status
	assert.Eventually(t, func() bool { // on failure, the diff below says what is missing
		status, err = runner.ReadStatus(lab.StateDir(1))
		return err == nil && len(status.Refused) == len(refusedKeys)
	}, 2*time.Minute, 200*time.Millisecond, "status lists every refusal")
	gotRefused := map[string]leases.Reason{}
	for _, r := range status.Refused {
		gotRefused[r.Key] = leases.Reason(r.Reason)
	}
	assert.Equal(t, wantRefused, gotRefused, "every refusal is in status with its reason")
	for _, reason := range leases.Reasons {
		t.Logf("refused %-20s %d", reason, status.RefusedNow[string(reason)])
	}
	ownSubnet := status.Subnet.String()

	// A valid lease after the storm is applied.
	start := time.Now()
	after := hostileLease{key: "10.202.0.0-24", ip: "192.0.2.250", data: "82:87:fe:ff:00:01"}
	if ownSubnet == "10.202.0.0/24" {
		after.key = "10.202.1.0-24"
	}
	after.value = fmt.Sprintf(`{"PublicIP":%q,"PublicIPv6":null,"BackendType":"extension","BackendData":%q}`, after.ip, after.data)
	st.put(t, after.key, after.value)
	afterSubnet := strings.ReplaceAll(after.key, "-", "/")
	valid[afterSubnet] = after
	require.Eventually(t, func() bool { return added()[afterSubnet] > 0 },
		2*time.Minute, 20*time.Millisecond, "the lease written after the storm was never applied")
	t.Logf("%s: the lease written after the storm was applied %s after its write", kind, time.Since(start).Round(time.Millisecond))

	// What reached the kernel, or the process, while the node runs.
	snap, err := lab.Snapshot(ctx, 1)
	require.NoError(t, err)
	require.True(t, lab.Running(1), "the daemon stayed up")
	ifName := "flannel-vxlan"
	if kind == "vxlan" {
		var wantFDB, gotFDB []string
		for s, v := range valid {
			wantFDB = append(wantFDB, fmt.Sprintf("%s dev %s dst %s permanent", v.data, ifName, v.ip))
			assert.Contains(t, snap["route"], fmt.Sprintf("%s via %s dev %s", s, strings.TrimSuffix(s, "/24"), ifName))
			assert.Contains(t, snap["neigh"], fmt.Sprintf("%s lladdr %s dev %s permanent", strings.TrimSuffix(s, "/24"), v.data, ifName))
		}
		for _, f := range snap["fdb"] {
			if strings.Contains(f, " dev "+ifName+" ") {
				gotFDB = append(gotFDB, f)
			}
		}
		assert.ElementsMatch(t, wantFDB, gotFDB, "the vxlan fdb holds exactly the valid leases' VTEPs")
		var routes int
		for _, r := range snap["route"] {
			if strings.Contains(r, " via ") && strings.HasSuffix(r, " dev "+ifName) { // the main table's
				routes++
			}
		}
		assert.Equal(t, len(valid), routes, "a route for each valid lease, none else:\n%s", strings.Join(snap["route"], "\n"))
	} else {
		b, err := os.ReadFile(seenPath)
		require.NoError(t, err)
		var want []string
		for s, v := range valid {
			want = append(want, fmt.Sprintf("add %s %s %s", s, v.ip, v.data))
		}
		assert.ElementsMatch(t, want, strings.Split(strings.TrimSuffix(string(b), "\n"), "\n"),
			"printf got each valid lease's data as one word, and nothing else")
	}

	require.NoError(t, lab.StopNode(ctx, 1), "the daemon stopped cleanly on SIGTERM")

	// What the hooks ran, from the trace.
	for s, n := range added() {
		assert.Equal(t, 1, n, "%s added %d times (flapping between keys?)", s, n)
	}
	for _, c := range traceOf(t, lab.Logs(1)) {
		if c.hook != "SubnetAddCommand" && c.hook != "SubnetRemoveCommand" {
			continue // our own hooks
		}
		v, ok := valid[c.subnet]
		if !assert.True(t, ok, "a hook ran for %s, which is not a valid lease: %q", c.subnet, c.argv) {
			continue
		}
		ip, subnetIP := v.ip, strings.TrimSuffix(c.subnet, "/24")
		var want []string
		switch {
		case kind == "quoted":
			want = []string{"env", "printf", c.argv[2], c.subnet, ip, v.data}
		case c.argv[0] == "cut": // the recipe's SUBNET_IP=`echo $SUBNET | cut -d'/' -f 1`
			want = []string{"cut", "-d/", "-f", "1"}
		case c.argv[0] == "ip":
			want = []string{"ip", "route", "add", c.subnet, "nexthop", "via", subnetIP, "dev", ifName, "onlink"}
		case c.argv[0] == "arp":
			want = []string{"arp", "-s", subnetIP, v.data, "dev", ifName}
		case c.argv[0] == "bridge":
			want = []string{"bridge", "fdb", "add", v.data, "dev", ifName, "self", "dst", ip}
		}
		assert.Equal(t, want, c.argv, "argv for %s: exactly the lease's fields", c.subnet)
	}
	ents, err := os.ReadDir(canary)
	require.NoError(t, err)
	assert.Empty(t, ents, "a payload ran")
	for _, s := range []string{"sub", "tick", "semi", "canary-key", "canary-tick"} { // relative canaries land in the hooks' cwd
		assert.NoFileExists(t, filepath.Join(lab.StateDir(1), s))
	}
	// One warning per refused lease, not one per snapshot.
	warnings := strings.Count(lab.Logs(1), `"msg":"lease refused"`)
	assert.Equal(t, len(refusedKeys), warnings, "one warning per refused lease")
	assert.Len(t, status.Refused, len(refusedKeys))
}
