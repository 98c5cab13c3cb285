//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/etcd/etcdtest"
	presetfiles "github.com/flexhook/flexhook/presets"
	"github.com/flexhook/flexhook/runner"
)

// argvRecEnv names the file the argv recorder appends to. The test binary
// is the recorder: linked as ip, arp, bridge, cat and rec in a directory
// put first in the daemon's PATH, it appends one JSON line per call (its
// name, its arguments, $SUBNET) and plays the part of the real command
// where a hook needs its output (cat of a VTEP address).
const argvRecEnv = "FLEXHOOK_ARGVREC"

// recorded is one call the recorder saw.
type recorded struct {
	Name   string
	Args   []string
	Subnet string
}

// runArgvRecorder acts as the recorder when the test binary was started
// as one, and exits; otherwise it returns.
func runArgvRecorder() {
	path := os.Getenv(argvRecEnv)
	name := filepath.Base(os.Args[0])
	if path == "" || !slices.Contains([]string{"ip", "arp", "bridge", "cat", "rec"}, name) {
		return
	}
	line, err := json.Marshal(recorded{Name: name, Args: os.Args[1:], Subnet: os.Getenv("SUBNET")})
	if err == nil {
		var f *os.File
		if f, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600); err == nil {
			_, err = f.Write(append(line, '\n'))
			f.Close()
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "argv recorder:", err)
		os.Exit(1)
	}
	if name == "cat" && len(os.Args) == 2 && strings.HasPrefix(os.Args[1], "/sys/class/net/") {
		fmt.Println("82:87:fe:a4:a9:01") // the VTEP MAC PreStartup reads
	}
	os.Exit(0)
}

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
func hostileStore(canary string, forEtcd, shaped bool) []hostileLease {
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
			ip := fmt.Sprintf("192.0.2.%d", 10+i)
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
	for i, a := range ownAddrs() {
		add(fmt.Sprintf("10.203.%d.0-24", i), val(a, mac(0xc00000+i)), leases.ReasonOwnPublicIP)
	}
	return out
}

// ownAddrs lists this host's global unicast IPv4 addresses other than the
// hostile test's --public-ip (at most 4).
func ownAddrs() []string {
	var out []string
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil && n.IP.IsGlobalUnicast() && n.IP.String() != "192.0.2.1" && len(out) < 4 {
			out = append(out, n.IP.String())
		}
	}
	return out
}

// storm is one store under the hostile test: how to write an entry and
// the daemon's store flags.
type storm interface {
	put(t *testing.T, key, value string)
	flags() []string
}

type fileStorm struct{ dir string }

func (s fileStorm) put(t *testing.T, key, value string) {
	p := filepath.Join(s.dir, "subnets", key)
	require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o700))
	require.NoError(t, os.WriteFile(p, []byte(value), 0o600), "%q", key)
	exp := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(p, exp, exp))
}

func (s fileStorm) flags() []string { return []string{"--store", s.dir, "--store-resync", "500ms"} }

type etcdStorm struct {
	srv *etcdtest.Server
	cli *clientv3.Client
}

func (s etcdStorm) put(t *testing.T, key, value string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := s.cli.Put(ctx, leases.DefaultPrefix+"/subnets/"+key, value)
	require.NoError(t, err, "%q", key)
}

func (s etcdStorm) flags() []string {
	return []string{"--etcd-endpoints", strings.Join(s.srv.Endpoints, ",")}
}

// TestHostileLeases fills a store with over a thousand hostile entries and
// a few valid ones while a real daemon runs hooks that record their argv:
// with the vxlan recipe's own hooks (its data shape: a MAC), and with a
// custom config that quotes its variables and takes any one-line data.
// No payload runs, no hook gets more words than the lease has fields or a
// refused lease's values, the daemon stays up and applies a valid lease
// written after the storm, and status lists every refusal with its
// reason. Both stores.
func TestHostileLeases(t *testing.T) {
	bin := requireLab(t)
	vxlanRaw, err := presetfiles.Get("vxlan")
	require.NoError(t, err)
	var vx map[string]any
	require.NoError(t, json.Unmarshal(vxlanRaw, &vx))
	vx["Network"] = "10.0.0.0/8" // room for the storm; the hooks stay the recipe's
	vxlanCfg, err := json.Marshal(vx)
	require.NoError(t, err)
	quoted := `{"Network": "10.0.0.0/8", "Backend": {"Type": "extension",
		"SubnetAddCommand": "read D; rec add \"$SUBNET\" \"$PUBLIC_IP\" \"$D\"",
		"SubnetRemoveCommand": "read D; rec remove \"$SUBNET\" \"$PUBLIC_IP\" \"$D\""}}`

	for _, store := range []string{"file", "etcd"} {
		for _, c := range []struct {
			name, cfg string
		}{{"vxlan", string(vxlanCfg)}, {"quoted", quoted}} {
			t.Run(store+"/"+c.name, func(t *testing.T) {
				var st storm
				if store == "file" {
					st = fileStorm{dir: t.TempDir()}
				} else {
					srv := etcdtest.Start(t)
					st = etcdStorm{srv: srv, cli: srv.Client(t)}
				}
				hostileRun(t, bin, st, c.name, c.cfg, store == "etcd")
			})
		}
	}
}

func hostileRun(t *testing.T, bin string, st storm, kind, cfg string, forEtcd bool) {
	dir := t.TempDir()
	canary := filepath.Join(dir, "canary")
	require.NoError(t, os.Mkdir(canary, 0o777))
	recDir := filepath.Join(dir, "bin")
	require.NoError(t, os.Mkdir(recDir, 0o755))
	self, err := os.Executable()
	require.NoError(t, err)
	for _, name := range []string{"ip", "arp", "bridge", "cat", "rec"} {
		require.NoError(t, os.Symlink(self, filepath.Join(recDir, name)))
	}
	recFile := filepath.Join(dir, "argv.jsonl")
	cfgPath := filepath.Join(dir, "net-conf.json")
	require.NoError(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))

	storm := hostileStore(canary, forEtcd, kind == "vxlan")
	// A stale lease of this node's own PublicIP is refused only once the
	// node holds its lease (at start a node takes back the lease carrying
	// its address): written after the start.
	late := []hostileLease{}
	for i := range 10 {
		late = append(late, hostileLease{key: fmt.Sprintf("10.201.%d.0-24", i),
			value:  fmt.Sprintf(`{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"extension","BackendData":"82:87:fe:00:01:%02x"}`, i),
			reason: leases.ReasonOwnPublicIP})
	}
	for _, h := range storm {
		st.put(t, h.key, h.value)
	}
	t.Logf("%s store: %d entries before the start", kind, len(storm))

	stateDir := filepath.Join(dir, "state")
	args := append([]string{"run", "--config", cfgPath, "--state-dir", stateDir,
		"--subnet-file", filepath.Join(stateDir, "subnet.env"), "--public-ip", "192.0.2.1", "--log-level", "info"}, st.flags()...)
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "PATH="+recDir+":/usr/bin:/bin", argvRecEnv+"="+recFile)
	var stderr testutil.SyncBuffer
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		return cmd.Wait()
	}
	t.Cleanup(func() {
		if !stopped {
			_ = cmd.Process.Kill()
			_ = stop()
		}
		if t.Failed() {
			t.Logf("daemon log (tail):\n%s", tail(stderr.String(), 60))
		}
	})

	valid := map[string]hostileLease{}
	for _, h := range storm {
		if h.reason == "" {
			valid[strings.ReplaceAll(h.key, "-", "/")] = h
		}
	}
	readRec := func() []recorded {
		data, err := os.ReadFile(recFile)
		if os.IsNotExist(err) {
			return nil
		}
		require.NoError(t, err)
		var out []recorded
		for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			if line == "" {
				continue
			}
			var r recorded
			require.NoError(t, json.Unmarshal([]byte(line), &r), line)
			out = append(out, r)
		}
		return out
	}
	added := func(recs []recorded) map[string]int {
		m := map[string]int{}
		for _, r := range recs {
			if (kind == "vxlan" && r.Name == "bridge") || (kind == "quoted" && r.Name == "rec" && len(r.Args) > 0 && r.Args[0] == "add") {
				m[r.Subnet]++
			}
		}
		return m
	}
	require.Eventually(t, func() bool { return len(added(readRec())) >= len(valid) },
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
		status, err = runner.ReadStatus(stateDir)
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

	own := status.Subnet.String()

	// A valid lease after the storm is applied.
	start := time.Now()
	after := hostileLease{key: "10.202.0.0-24", ip: "192.0.2.250", data: "82:87:fe:ff:00:01"}
	if own == "10.202.0.0/24" {
		after.key = "10.202.1.0-24"
	}
	after.value = fmt.Sprintf(`{"PublicIP":%q,"PublicIPv6":null,"BackendType":"extension","BackendData":%q}`, after.ip, after.data)
	st.put(t, after.key, after.value)
	afterSubnet := strings.ReplaceAll(after.key, "-", "/")
	valid[afterSubnet] = after
	require.Eventually(t, func() bool { return added(readRec())[afterSubnet] > 0 },
		2*time.Minute, 20*time.Millisecond, "the lease written after the storm was never applied")
	t.Logf("%s: the lease written after the storm was applied %s after its write", kind, time.Since(start).Round(time.Millisecond))

	require.NoError(t, stop(), "the daemon stayed up and stopped cleanly on SIGTERM")

	// What the hooks saw.
	recs := readRec()
	for s, n := range added(recs) {
		assert.Equal(t, 1, n, "%s added %d times (flapping between keys?)", s, n)
	}
	ifName := "flannel-vxlan"
	for _, r := range recs {
		if r.Subnet == "" || r.Subnet == own { // PreStartup, PostStartup, Shutdown: our own hooks
			continue
		}
		v, ok := valid[r.Subnet]
		if !assert.True(t, ok, "a hook ran for %s, which is not a valid lease: %q %q", r.Subnet, r.Name, r.Args) {
			continue
		}
		ip, subnetIP := v.ip, strings.TrimSuffix(r.Subnet, "/24")
		var want []string
		switch {
		case kind == "quoted":
			want = []string{r.Args[0], r.Subnet, ip, v.data}
		case r.Name == "ip":
			want = []string{"route", "add", r.Subnet, "nexthop", "via", subnetIP, "dev", ifName, "onlink"}
		case r.Name == "arp":
			want = []string{"-s", subnetIP, v.data, "dev", ifName}
		case r.Name == "bridge":
			want = []string{"fdb", "add", v.data, "dev", ifName, "self", "dst", ip}
		}
		assert.Equal(t, want, r.Args, "%s argv for %s: exactly the lease's fields", r.Name, r.Subnet)
	}
	ents, err := os.ReadDir(canary)
	require.NoError(t, err)
	assert.Empty(t, ents, "a payload ran")
	for _, s := range []string{"/sub", "/tick", "/semi"} {
		assert.NoFileExists(t, filepath.Join(stateDir, filepath.Base(s)))
	}
	// One warning per refused lease, not one per snapshot.
	warnings := strings.Count(stderr.String(), `msg="lease refused"`)
	assert.Equal(t, len(refusedKeys), warnings, "one warning per refused lease")
	assert.Len(t, status.Refused, len(refusedKeys))
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
