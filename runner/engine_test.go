package runner_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/pathmtu"
	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/file"
	"github.com/flexhook/flexhook/leases/leasestest"
	"github.com/flexhook/flexhook/runner"
	"github.com/flexhook/flexhook/runner/shell"
)

const (
	waitFor = 20 * time.Second // a hang guard, not a timing assertion
	tick    = 10 * time.Millisecond
)

var ownIP = netip.MustParseAddr("192.0.2.1")

// recorder hooks append what they get to files in the state dir: "events"
// (one line per hook) and "stdin" (the raw stdin of Add and Remove).
// recorder's Add and Remove write their event with one printf, one
// write(2): under Parallel, hooks append to events at once, and the
// interpreter's echo writes its argument and its newline separately, so
// two echoes' lines could interleave (printf '%s\n' is one write, which
// O_APPEND keeps whole).
var recorder = map[hooks.Kind]string{
	hooks.PreStartup:   `echo "pre net=$NETWORK ip=$PUBLIC_IP ip6=[$PUBLIC_IPV6] subnet=[$SUBNET]" >> events; echo "  node-data  "`,
	hooks.PostStartup:  `echo "post $SUBNET $PUBLIC_IP stdin=[$(cat)]" >> events`,
	hooks.SubnetAdd:    `read D; printf '%s\n' "add $SUBNET $PUBLIC_IP $D" >> events`,
	hooks.SubnetRemove: `cat >> stdin; printf '%s\n' "remove $SUBNET $PUBLIC_IP" >> events`,
	hooks.Shutdown:     `echo "shutdown $SUBNET $PUBLIC_IP" >> events`,
}

// config returns a parsed net-conf.json with the given hooks.
func config(t *testing.T, hs map[hooks.Kind]string) *hooks.Config {
	t.Helper()
	be := map[string]string{"Type": "extension"}
	for k, src := range hs {
		be[k.String()] = src
	}
	data, err := json.Marshal(map[string]any{"Network": "10.50.0.0/16", "Backend": be})
	require.NoError(t, err)
	cfg, err := hooks.Parse(data)
	require.NoError(t, err)
	return cfg
}

func without(hs map[hooks.Kind]string, k hooks.Kind) map[hooks.Kind]string {
	out := map[hooks.Kind]string{}
	for kk, v := range hs {
		if kk != k {
			out[kk] = v
		}
	}
	return out
}

func with(hs map[hooks.Kind]string, k hooks.Kind, src string) map[hooks.Kind]string {
	out := without(hs, k)
	out[k] = src
	return out
}

func newStore(t *testing.T, dir string, opts ...file.Option) *file.Store {
	t.Helper()
	s, err := file.New(dir, append([]file.Option{file.Resync(100 * time.Millisecond), file.Logger(testLogger(t))}, opts...)...)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// node is one running engine.
type node struct {
	t      *testing.T
	dir    string
	eng    *runner.Engine
	cancel context.CancelFunc
	done   chan error
	once   sync.Once // receives from done
	err    error
}

// start runs an engine for cfg on store with state dir dir.
func start(t *testing.T, cfg *hooks.Config, store leases.Store, dir string, opts ...runner.Option) *node {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o700))
	sh, err := shell.New(shell.Dir(dir), shell.Logger(testLogger(t)))
	require.NoError(t, err)
	opts = append([]runner.Option{
		runner.PublicIP(ownIP), runner.StateDir(dir), runner.Logger(testLogger(t)),
		runner.Retry(10*time.Millisecond, 200*time.Millisecond),
	}, opts...)
	eng, err := runner.New(cfg, store, sh, opts...)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{t: t, dir: dir, eng: eng, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- eng.Run(ctx) }()
	t.Cleanup(func() { n.stop() })
	return n
}

// stop cancels the engine and returns Run's result.
func (n *node) stop() error {
	n.cancel()
	return n.wait()
}

// wait returns Run's result without cancelling it.
func (n *node) wait() error {
	n.once.Do(func() {
		select {
		case n.err = <-n.done:
		case <-time.After(waitFor):
			n.err = errors.New("Run did not return")
		}
	})
	return n.err
}

func (n *node) lease() leases.Lease {
	n.t.Helper()
	var l leases.Lease
	require.Eventually(n.t, func() bool {
		var ok bool
		l, ok = n.eng.Lease()
		return ok
	}, waitFor, tick, "no lease acquired")
	return l
}

func (n *node) events() []string { return readLines(n.t, filepath.Join(n.dir, "events")) }

// waitEvent waits until an events line equals want.
func (n *node) waitEvent(want string) {
	n.t.Helper()
	require.Eventually(n.t, func() bool { return slices.Contains(n.events(), want) },
		waitFor, tick, "no event %q", want)
}

func readLines(t *testing.T, path string) []string {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	require.NoError(t, err)
	return strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
}

// peer creates a remote lease in store, as another node would.
func peer(t *testing.T, cfg *hooks.Config, store leases.Store, ip, data string) leases.Lease {
	t.Helper()
	l, err := store.Acquire(context.Background(), cfg.Range, leases.Attrs{
		PublicIP: netip.MustParseAddr(ip), BackendType: leases.BackendType, BackendData: data,
	})
	require.NoError(t, err)
	return l
}

// rewriteLease replaces a lease file in a file store directory the way
// another node on the same subnet would (the file's mtime is its
// expiration), which the store's own API refuses for a new PublicIP.
func rewriteLease(t *testing.T, storeDir string, l leases.Lease) {
	t.Helper()
	data, err := leases.MarshalAttrs(l.Attrs)
	require.NoError(t, err)
	dir := filepath.Join(storeDir, "subnets")
	tmp := filepath.Join(dir, ".tmp-test")
	require.NoError(t, os.WriteFile(tmp, data, 0o600))
	exp := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(tmp, exp, exp))
	require.NoError(t, os.Rename(tmp, filepath.Join(dir, leases.SubnetKey(l.Subnet, l.IPv6Subnet))))
}

func storeLease(t *testing.T, store leases.Store, ip netip.Addr) (leases.Lease, bool) {
	ls, err := store.List(context.Background())
	require.NoError(t, err)
	return leases.FindByPublicIP(ls, ip)
}

func TestLifecycle(t *testing.T) {
	cfg := config(t, recorder)
	store := newStore(t, t.TempDir())
	p := peer(t, cfg, store, "192.0.2.2", "peer-data")
	other, err := store.Acquire(t.Context(), cfg.Range, leases.Attrs{
		PublicIP: netip.MustParseAddr("192.0.2.9"), BackendType: "vxlan", BackendData: "x"})
	require.NoError(t, err)

	n := start(t, cfg, store, t.TempDir())
	own := n.lease()
	addP := fmt.Sprintf("add %s 192.0.2.2 peer-data", p.Subnet)
	n.waitEvent(addP)

	l, ok := storeLease(t, store, ownIP)
	require.True(t, ok)
	assert.Equal(t, own.Subnet, l.Subnet)
	assert.Equal(t, "node-data", l.Attrs.BackendData, "PreStartup's trimmed stdout is the BackendData")
	assert.Equal(t, leases.BackendType, l.Attrs.BackendType)

	require.NoError(t, n.stop())
	assert.Equal(t, []string{
		"pre net=10.50.0.0/16 ip=192.0.2.1 ip6=[] subnet=[]",
		fmt.Sprintf("post %s 192.0.2.1 stdin=[]", own.Subnet),
		addP,
		fmt.Sprintf("shutdown %s 192.0.2.1", own.Subnet),
	}, n.events(), "own lease and %s (BackendType vxlan) are not added", other.Subnet)
}

func TestStdinOfRemove(t *testing.T) {
	cfg := config(t, recorder)
	store := newStore(t, t.TempDir())
	p := peer(t, cfg, store, "192.0.2.2", "b2:d1:fc:40:8d:2f")
	n := start(t, cfg, store, t.TempDir())
	n.waitEvent(fmt.Sprintf("add %s 192.0.2.2 b2:d1:fc:40:8d:2f", p.Subnet))

	require.NoError(t, store.Remove(t.Context(), p.Subnet))
	n.waitEvent(fmt.Sprintf("remove %s 192.0.2.2", p.Subnet))
	data, err := os.ReadFile(filepath.Join(n.dir, "stdin"))
	require.NoError(t, err)
	assert.Equal(t, "b2:d1:fc:40:8d:2f\n", string(data), "Remove reads the old BackendData and a newline")
}

func TestChangedLeaseIsRemovedThenAdded(t *testing.T) {
	cfg := config(t, recorder)
	storeDir := t.TempDir()
	store := newStore(t, storeDir)
	p := peer(t, cfg, store, "192.0.2.2", "old")
	n := start(t, cfg, store, t.TempDir())
	n.waitEvent(fmt.Sprintf("add %s 192.0.2.2 old", p.Subnet))

	p.Attrs.BackendData = "new"
	_, err := store.Renew(t.Context(), p)
	require.NoError(t, err)
	addNew := fmt.Sprintf("add %s 192.0.2.2 new", p.Subnet)
	n.waitEvent(addNew)

	p.Attrs.PublicIP = netip.MustParseAddr("192.0.2.22")
	rewriteLease(t, storeDir, p)
	addMoved := fmt.Sprintf("add %s 192.0.2.22 new", p.Subnet)
	n.waitEvent(addMoved)

	require.NoError(t, store.Remove(t.Context(), p.Subnet))
	rmMoved := fmt.Sprintf("remove %s 192.0.2.22", p.Subnet)
	n.waitEvent(rmMoved)

	ev := n.events()
	assert.Equal(t, []string{
		fmt.Sprintf("add %s 192.0.2.2 old", p.Subnet),
		fmt.Sprintf("remove %s 192.0.2.2", p.Subnet), addNew,
		fmt.Sprintf("remove %s 192.0.2.2", p.Subnet), addMoved,
		rmMoved,
	}, ev[2:])
}

func TestFailingHookIsRetried(t *testing.T) {
	hs := with(recorder, hooks.SubnetAdd, `read D
if test "$PUBLIC_IP" = 192.0.2.2 && ! test -e marker; then
	echo "fail $SUBNET" >> attempts
	echo "no marker yet" >&2
	exit 3
fi
echo "add $SUBNET $PUBLIC_IP $D" >> events`)
	cfg := config(t, hs)
	store := newStore(t, t.TempDir())
	bad := peer(t, cfg, store, "192.0.2.2", "a")
	good := peer(t, cfg, store, "192.0.2.3", "b")
	n := start(t, cfg, store, t.TempDir())

	n.waitEvent(fmt.Sprintf("add %s 192.0.2.3 b", good.Subnet)) // not blocked by bad
	var st runner.Status
	require.Eventually(t, func() bool {
		var err error
		st, err = runner.ReadStatus(n.dir)
		return err == nil && len(st.Failing) == 1 && st.Failing[0].Attempts >= 3
	}, waitFor, tick, "failure not in status.json")
	f := st.Failing[0]
	assert.Equal(t, bad.Subnet, f.Subnet)
	assert.Equal(t, "SubnetAddCommand", f.Hook)
	assert.Contains(t, f.Error, "SubnetAddCommand (SUBNET="+bad.Subnet.String()+"): exit status 3")
	assert.Contains(t, st.Applied, good.Subnet)
	fi, err := os.Stat(filepath.Join(n.dir, runner.StatusFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	require.NoError(t, os.WriteFile(filepath.Join(n.dir, "marker"), nil, 0o600))
	n.waitEvent(fmt.Sprintf("add %s 192.0.2.2 a", bad.Subnet))
	require.Eventually(t, func() bool {
		st, err := runner.ReadStatus(n.dir)
		return err == nil && len(st.Failing) == 0 && len(st.Applied) == 2
	}, waitFor, tick, "recovery not in status.json")
}

func TestFailedRemoveHoldsBackAdd(t *testing.T) {
	hs := with(recorder, hooks.SubnetRemove, `if ! test -e marker; then exit 1; fi; echo "remove $SUBNET $PUBLIC_IP" >> events`)
	cfg := config(t, hs)
	store := newStore(t, t.TempDir())
	p := peer(t, cfg, store, "192.0.2.2", "old")
	n := start(t, cfg, store, t.TempDir())
	n.waitEvent(fmt.Sprintf("add %s 192.0.2.2 old", p.Subnet))

	p.Attrs.BackendData = "new"
	_, err := store.Renew(t.Context(), p)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		st, err := runner.ReadStatus(n.dir)
		return err == nil && len(st.Failing) == 1 && st.Failing[0].Hook == "SubnetRemoveCommand" && st.Failing[0].Attempts >= 2
	}, waitFor, tick)
	assert.NotContains(t, n.events(), fmt.Sprintf("add %s 192.0.2.2 new", p.Subnet), "Add only after Remove succeeded")

	require.NoError(t, os.WriteFile(filepath.Join(n.dir, "marker"), nil, 0o600))
	n.waitEvent(fmt.Sprintf("add %s 192.0.2.2 new", p.Subnet))
	ev := n.events()
	assert.Equal(t, fmt.Sprintf("remove %s 192.0.2.2", p.Subnet), ev[len(ev)-2])
}

// A lease deleted while the daemon is down still gets its Remove after the
// restart, and a lease still there is added again even without startup
// hooks (host-gw): after a reboot its route is gone though the journal
// says applied. The kernel, not the journal, is the truth.
func TestJournalAcrossRestart(t *testing.T) {
	cfg := config(t, without(without(without(recorder, hooks.Shutdown), hooks.PreStartup), hooks.PostStartup))
	storeDir, state := t.TempDir(), t.TempDir()
	store := newStore(t, storeDir)
	gone := peer(t, cfg, store, "192.0.2.2", "g")
	stays := peer(t, cfg, store, "192.0.2.3", "s")
	addStays := fmt.Sprintf("add %s 192.0.2.3 s", stays.Subnet)

	n := start(t, cfg, store, state)
	n.waitEvent(fmt.Sprintf("add %s 192.0.2.2 g", gone.Subnet))
	n.waitEvent(addStays)
	require.NoError(t, n.stop())
	fi, err := os.Stat(filepath.Join(state, runner.JournalFile))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())

	require.NoError(t, store.Remove(t.Context(), gone.Subnet))
	n2 := start(t, cfg, newStore(t, storeDir), state)
	n2.waitEvent(fmt.Sprintf("remove %s 192.0.2.2", gone.Subnet))
	adds := func() int {
		var n int
		for _, e := range n2.events() { // one events file for both runs
			if e == addStays {
				n++
			}
		}
		return n
	}
	require.Eventually(t, func() bool { return adds() == 2 }, waitFor, tick, "the restart adds the lease again")
	require.NoError(t, n2.stop())
	assert.Equal(t, 2, adds(), "once per start")
}

// failingAdd fails SubnetAddCommand for a peer until the file "ok" is in
// the state dir, after writing down what it got.
var failingAdd = with(recorder, hooks.SubnetAdd, `read D; echo "try $SUBNET $PUBLIC_IP $D" >> events; test -e ok && echo "add $SUBNET $PUBLIC_IP $D" >> events`)

// A lease removed while its Add keeps failing gets its Remove, once, with
// the data the failed Add had: what the half-done Add set up goes.
func TestRemoveWhileAddFails(t *testing.T) {
	cfg := config(t, with(failingAdd, hooks.SubnetRemove, `read D; echo "remove $SUBNET $PUBLIC_IP $D" >> events`))
	store := newStore(t, t.TempDir())
	p := peer(t, cfg, store, "192.0.2.2", "d1")
	other := peer(t, cfg, store, "192.0.2.3", "d3") // fails all along too
	n := start(t, cfg, store, t.TempDir())
	n.waitEvent(fmt.Sprintf("try %s 192.0.2.2 d1", p.Subnet))
	require.NoError(t, store.Remove(t.Context(), p.Subnet))
	rm := fmt.Sprintf("remove %s 192.0.2.2 d1", p.Subnet)
	n.waitEvent(rm)
	// A Remove retried would come within the retry backoff (10-200ms):
	// watch another peer whose Add keeps failing be retried three more
	// times, so the window surely held such a retry, then count.
	tries := func() (k int) {
		for _, e := range n.events() {
			if strings.HasPrefix(e, "try "+other.Subnet.String()+" ") {
				k++
			}
		}
		return k
	}
	seen := tries()
	require.Eventually(t, func() bool { return tries() >= seen+3 }, waitFor, tick, "the other peer's Add is retried")
	require.NoError(t, n.stop())
	var rms int
	for _, e := range n.events() {
		if strings.HasPrefix(e, "remove ") {
			rms++
		}
	}
	assert.Equal(t, 1, rms, "one Remove: %q", n.events())
	st, err := runner.ReadStatus(n.dir)
	require.NoError(t, err)
	require.Len(t, st.Failing, 1, "only the other peer fails: %+v", st.Failing)
	assert.Equal(t, other.Subnet, st.Failing[0].Subnet)
}

// A lease changed while its Add keeps failing: Remove with the old data,
// then Add of the new one at once, not after the old backoff.
func TestChangeWhileAddFails(t *testing.T) {
	cfg := config(t, with(failingAdd, hooks.SubnetRemove, `read D; echo "remove $SUBNET $PUBLIC_IP $D" >> events`))
	store := newStore(t, t.TempDir())
	p := peer(t, cfg, store, "192.0.2.2", "d1")
	// A long backoff: only a reset makes the new Add run soon.
	n := start(t, cfg, store, t.TempDir(), runner.Retry(time.Hour, time.Hour))
	n.waitEvent(fmt.Sprintf("try %s 192.0.2.2 d1", p.Subnet))
	require.NoError(t, os.WriteFile(filepath.Join(n.dir, "ok"), nil, 0o600))
	p.Attrs.BackendData = "d2"
	_, err := store.Renew(t.Context(), p)
	require.NoError(t, err)
	n.waitEvent(fmt.Sprintf("add %s 192.0.2.2 d2", p.Subnet))
	ev := n.events()
	assert.Less(t, slices.Index(ev, fmt.Sprintf("remove %s 192.0.2.2 d1", p.Subnet)), slices.Index(ev, fmt.Sprintf("add %s 192.0.2.2 d2", p.Subnet)),
		"the failed Add's data is removed first: %q", ev)
	assert.NotContains(t, ev, fmt.Sprintf("add %s 192.0.2.2 d1", p.Subnet))
}

// ShutdownCommand runs whenever PreStartupCommand ran, whatever stops the
// start-up: here SIGTERM (a cancelled context) while PreStartup sleeps
// after making its device.
func TestShutdownAfterInterruptedPreStartup(t *testing.T) {
	cfg := config(t, with(recorder, hooks.PreStartup, `echo "device made" >> events; sleep 30; echo mac`))
	n := start(t, cfg, newStore(t, t.TempDir()), t.TempDir())
	n.waitEvent("device made")
	require.NoError(t, n.stop())
	assert.Equal(t, []string{"device made", "shutdown  192.0.2.1"}, n.events())
}

// ... and when the lease cannot be had before the stop.
func TestShutdownWhenStoppedBeforeALease(t *testing.T) {
	cfg := config(t, recorder)
	storeDir := filepath.Join(t.TempDir(), "store")
	store := newStore(t, storeDir)
	require.NoError(t, os.RemoveAll(storeDir))
	require.NoError(t, os.WriteFile(storeDir, nil, 0o600)) // a file where the store dir was: Acquire fails
	var logs testutil.SyncBuffer
	n := start(t, cfg, store, t.TempDir(), runner.Logger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.Eventually(t, func() bool { return strings.Count(logs.String(), "acquire lease failed; retrying") >= 2 },
		waitFor, tick, "two Acquires fail")
	require.NoError(t, n.stop())
	ev := n.events()
	require.Len(t, ev, 2, "%q", ev)
	assert.True(t, strings.HasPrefix(ev[0], "pre "))
	assert.Equal(t, "shutdown  192.0.2.1", ev[1])
}

// With startup hooks (which rebuild the device, as the vxlan and wireguard
// presets do) a restart adds every lease still in the store again, and a
// lease that vanished while the daemon was down gets its Remove.
func TestStartupHooksReapplyJournal(t *testing.T) {
	cfg := config(t, recorder)
	storeDir, state := t.TempDir(), t.TempDir()
	store := newStore(t, storeDir)
	p := peer(t, cfg, store, "192.0.2.2", "d")
	gone := peer(t, cfg, store, "192.0.2.3", "g")
	add := fmt.Sprintf("add %s 192.0.2.2 d", p.Subnet)

	n := start(t, cfg, store, state)
	n.waitEvent(add)
	n.waitEvent(fmt.Sprintf("add %s 192.0.2.3 g", gone.Subnet))
	require.NoError(t, n.stop())
	require.NoError(t, store.Remove(t.Context(), gone.Subnet))

	n2 := start(t, cfg, newStore(t, storeDir), state)
	require.Eventually(t, func() bool {
		var adds int
		for _, e := range n2.events() {
			if e == add {
				adds++
			}
		}
		return adds == 2
	}, waitFor, tick)
	n2.waitEvent(fmt.Sprintf("remove %s 192.0.2.3", gone.Subnet))
}

func TestSubnetFile(t *testing.T) {
	cfg := config(t, recorder)
	store := newStore(t, t.TempDir())
	path := filepath.Join(t.TempDir(), "run", "flannel", "subnet.env")
	n := start(t, cfg, store, t.TempDir(), runner.SubnetFile(path), runner.MTU(1450))
	own := n.lease()
	n.waitEvent(fmt.Sprintf("post %s 192.0.2.1 stdin=[]", own.Subnet))

	host := own.Subnet.Addr().Next()
	want := fmt.Sprintf("FLANNEL_NETWORK=10.50.0.0/16\nFLANNEL_SUBNET=%s/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n", host)
	require.Eventually(t, func() bool {
		data, err := os.ReadFile(path)
		return err == nil && string(data) == want
	}, waitFor, tick, "subnet.env never became %q", want)
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o644), fi.Mode().Perm())
}

// subnet.env is written once PostStartupCommand is done, with the MTU the
// probe finds then (the device PostStartup made), and rewritten when a
// batch of hooks changes the path; status.json shows the MTU and where it
// came from. The probe here reads a file the hooks write, standing in for
// the kernel (internal/pathmtu reads the real one).
func TestSubnetFileFollowsPathMTU(t *testing.T) {
	hs := maps.Clone(recorder)
	hs[hooks.PostStartup] += "; echo 1450 > mtu"
	hs[hooks.SubnetAdd] += "; echo 1420 > mtu"
	cfg := config(t, hs)
	store := newStore(t, t.TempDir())
	dir := t.TempDir()
	path := filepath.Join(t.TempDir(), "subnet.env")
	var mu sync.Mutex
	var lastQuery pathmtu.Query
	probe := func(q pathmtu.Query) (pathmtu.Path, bool, error) {
		mu.Lock()
		lastQuery = q
		mu.Unlock()
		b, err := os.ReadFile(filepath.Join(dir, "mtu"))
		if errors.Is(err, fs.ErrNotExist) {
			return pathmtu.Path{}, false, nil
		}
		mtu, err := strconv.Atoi(strings.TrimSpace(string(b)))
		return pathmtu.Path{MTU: mtu, Device: "dev0", Why: "the mtu file"}, err == nil, err
	}
	n := start(t, cfg, store, dir, runner.SubnetFile(path), runner.UnderlayMTU(1500, "eth0"), runner.ProbeMTU(probe))
	own := n.lease()
	n.waitEvent(fmt.Sprintf("post %s 192.0.2.1 stdin=[]", own.Subnet))
	mtuIn := func() string {
		b, _ := os.ReadFile(path)
		for _, line := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "FLANNEL_MTU="); ok {
				return v
			}
		}
		return ""
	}
	require.Eventually(t, func() bool { return mtuIn() != "" }, waitFor, tick)
	assert.Equal(t, "1450", mtuIn(), "written after PostStartupCommand, not with the underlay's 1500")
	mu.Lock()
	assert.Equal(t, []netip.Prefix{cfg.Network}, lastQuery.Networks)
	assert.Equal(t, []netip.Prefix{own.Subnet}, lastQuery.Own)
	mu.Unlock()

	p := peer(t, cfg, store, "192.0.2.2", "peer-data")
	n.waitEvent(fmt.Sprintf("add %s 192.0.2.2 peer-data", p.Subnet))
	require.Eventually(t, func() bool { return mtuIn() == "1420" }, waitFor, tick, "subnet.env follows the path after a batch")
	require.Eventually(t, func() bool {
		st, err := runner.ReadStatus(dir)
		return err == nil && st.MTU == 1420 && st.MTUSource == "path: dev dev0, the mtu file"
	}, waitFor, tick, "status shows the MTU and its source")
}

func TestLeaseDeletedBySomeoneElse(t *testing.T) {
	cfg := config(t, recorder)
	store := newStore(t, t.TempDir())
	n := start(t, cfg, store, t.TempDir())
	own := n.lease()
	n.waitEvent(fmt.Sprintf("post %s 192.0.2.1 stdin=[]", own.Subnet))

	require.NoError(t, store.Remove(t.Context(), own.Subnet))
	err := n.wait()
	require.Error(t, err)
	assert.ErrorIs(t, err, leases.ErrLeaseGone)
	assert.Contains(t, err.Error(), fmt.Sprintf("lease for %s was deleted by someone else", own.Subnet))
	ev := n.events()
	assert.Equal(t, fmt.Sprintf("shutdown %s 192.0.2.1", own.Subnet), ev[len(ev)-1])
}

func TestLeaseIsRenewed(t *testing.T) {
	cfg := config(t, recorder)
	store := newStore(t, t.TempDir(), file.TTL(2*time.Second))
	n := start(t, cfg, store, t.TempDir())
	first := n.lease()
	require.Eventually(t, func() bool {
		l, ok := storeLease(t, store, ownIP)
		return ok && l.Expiration.After(first.Expiration)
	}, waitFor, tick, "lease never renewed")
	l, _ := n.eng.Lease()
	assert.Equal(t, first.Subnet, l.Subnet)
}

// traceLog collects trace events.
type traceLog struct {
	mu sync.Mutex
	ev []string
}

func (tl *traceLog) Trace(ev shell.TraceEvent) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	tl.ev = append(tl.ev, fmt.Sprintf("%s %s", ev.Hook, strings.Join(ev.Argv, " ")))
}

func (tl *traceLog) has(s string) bool {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	return slices.Contains(tl.ev, s)
}

func TestReadOnly(t *testing.T) {
	cfg := config(t, map[hooks.Kind]string{
		hooks.PreStartup:  `touch pre-ran; echo real-data`,
		hooks.PostStartup: `ip addr add $SUBNET dev flannel0`,
		hooks.SubnetAdd:   `read D; ip route add $SUBNET via $PUBLIC_IP; touch $D`,
		hooks.Shutdown:    `ip link del flannel0`,
	})
	storeDir := t.TempDir()
	store := newStore(t, storeDir)
	p := peer(t, cfg, store, "192.0.2.2", "peerdata")
	before, err := os.ReadDir(storeDir)
	require.NoError(t, err)

	var tl traceLog
	cwd := t.TempDir()
	sh, err := shell.New(shell.Dir(cwd), shell.DryRun(true), shell.Trace(&tl), shell.Logger(testLogger(t)))
	require.NoError(t, err)
	state := filepath.Join(t.TempDir(), "state")
	eng, err := runner.New(cfg, store, sh, runner.PublicIP(ownIP), runner.ReadOnly(true),
		runner.StateDir(state), runner.SubnetFile(filepath.Join(state, "subnet.env")),
		runner.BackendData("given"), runner.Logger(testLogger(t)))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- eng.Run(ctx) }()

	add := fmt.Sprintf("SubnetAddCommand ip route add %s via 192.0.2.2", p.Subnet)
	require.Eventually(t, func() bool { return tl.has(add) }, waitFor, tick)
	own, ok := eng.Lease()
	require.True(t, ok)
	assert.Equal(t, "given", own.Attrs.BackendData)
	assert.True(t, tl.has(fmt.Sprintf("PostStartupCommand ip addr add %s dev flannel0", own.Subnet)))
	assert.True(t, tl.has("SubnetAddCommand touch peerdata"))
	cancel()
	require.NoError(t, <-done)
	assert.True(t, tl.has("ShutdownCommand ip link del flannel0"))

	_, ok = storeLease(t, store, ownIP)
	assert.False(t, ok, "dry-run writes no lease")
	after, err := os.ReadDir(storeDir)
	require.NoError(t, err)
	assert.Equal(t, len(before), len(after))
	assert.NoDirExists(t, state)
	entries, err := os.ReadDir(cwd)
	require.NoError(t, err)
	assert.Empty(t, entries, "no file written by hooks")
}

func TestNewValidates(t *testing.T) {
	cfg := config(t, recorder)
	store := newStore(t, t.TempDir())
	sh, err := shell.New(shell.DryRun(true))
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		opts []runner.Option
		want string
	}{
		{"no public IP", []runner.Option{runner.StateDir(t.TempDir())}, "public IP is required"},
		{"no state dir", []runner.Option{runner.PublicIP(ownIP)}, "state dir is required"},
		{"v6 as public IP", []runner.Option{runner.PublicIP(netip.MustParseAddr("::1"))}, "not an IPv4"},
		{"bad retry", []runner.Option{runner.PublicIP(ownIP), runner.Retry(time.Second, time.Millisecond)}, "retry"},
		{"bad MTU", []runner.Option{runner.PublicIP(ownIP), runner.MTU(10)}, "MTU 10"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runner.New(cfg, store, sh, tc.opts...)
			assert.ErrorContains(t, err, tc.want)
		})
	}
}

func TestStateDirCreated0700(t *testing.T) {
	cfg := config(t, recorder)
	store := newStore(t, t.TempDir())
	sh, err := shell.New(shell.DryRun(true))
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), "a", "state")
	_, err = runner.New(cfg, store, sh, runner.PublicIP(ownIP), runner.StateDir(dir))
	require.NoError(t, err)
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
}

func TestSimulateOrder(t *testing.T) {
	cfg := config(t, recorder)
	dir := t.TempDir()
	sh, err := shell.New(shell.Dir(dir), shell.Logger(testLogger(t)))
	require.NoError(t, err)
	own := leases.Lease{Subnet: netip.MustParsePrefix("10.50.1.0/24"), Attrs: leases.Attrs{PublicIP: ownIP}}
	a := leases.Lease{Subnet: netip.MustParsePrefix("10.50.2.0/24"), Attrs: leases.Attrs{PublicIP: netip.MustParseAddr("192.0.2.2"), BackendData: "da"}}
	b := leases.Lease{Subnet: netip.MustParsePrefix("10.50.3.0/24"), Attrs: leases.Attrs{PublicIP: netip.MustParseAddr("192.0.2.3"), BackendData: "db"}}
	require.NoError(t, runner.Simulate(t.Context(), cfg, sh, own, []leases.Lease{a, b}, nil))
	assert.Equal(t, []string{
		"pre net=10.50.0.0/16 ip=192.0.2.1 ip6=[] subnet=[]",
		"post 10.50.1.0/24 192.0.2.1 stdin=[]",
		"add 10.50.2.0/24 192.0.2.2 da",
		"add 10.50.3.0/24 192.0.2.3 db",
		"remove 10.50.3.0/24 192.0.2.3",
		"remove 10.50.2.0/24 192.0.2.2",
		"shutdown 10.50.1.0/24 192.0.2.1",
	}, readLines(t, filepath.Join(dir, "events")))
	stdin, err := os.ReadFile(filepath.Join(dir, "stdin"))
	require.NoError(t, err)
	assert.Equal(t, "db\nda\n", string(stdin))
}

func TestSimulateReportsFailures(t *testing.T) {
	cfg := config(t, with(recorder, hooks.SubnetAdd, "exit 4"))
	sh, err := shell.New(shell.Dir(t.TempDir()), shell.Logger(testLogger(t)))
	require.NoError(t, err)
	own := leases.Lease{Subnet: netip.MustParsePrefix("10.50.1.0/24"), Attrs: leases.Attrs{PublicIP: ownIP}}
	a := leases.Lease{Subnet: netip.MustParsePrefix("10.50.2.0/24"), Attrs: leases.Attrs{PublicIP: netip.MustParseAddr("192.0.2.2")}}
	err = runner.Simulate(t.Context(), cfg, sh, own, []leases.Lease{a}, nil)
	assert.ErrorContains(t, err, "SubnetAddCommand (SUBNET=10.50.2.0/24)")
}

// writeRaw writes a lease file with any name and content into a file
// store directory, live for an hour, as a hostile node could.
func writeRaw(t *testing.T, storeDir, name, content string) {
	t.Helper()
	dir := filepath.Join(storeDir, "subnets")
	require.NoError(t, os.MkdirAll(dir, 0o700))
	tmp := filepath.Join(dir, ".tmp-raw")
	require.NoError(t, os.WriteFile(tmp, []byte(content), 0o600))
	exp := time.Now().Add(time.Hour)
	require.NoError(t, os.Chtimes(tmp, exp, exp))
	require.NoError(t, os.Rename(tmp, filepath.Join(dir, name)))
}

func TestAdmissionRefusesHostileLeases(t *testing.T) {
	cfg := config(t, recorder)
	storeDir := t.TempDir()
	store := newStore(t, storeDir)
	v := func(ip, data string) string {
		return fmt.Sprintf(`{"PublicIP":%q,"PublicIPv6":null,"BackendType":"extension","BackendData":%q}`, ip, data)
	}
	hostile := map[string]leases.Reason{
		"0.0.0.0-0":     leases.ReasonOutsideNetwork,
		"10.50.0.0-16":  leases.ReasonOutsideNetwork,
		"10.51.3.0-24":  leases.ReasonOutsideNetwork,
		"10.50.3.0-024": leases.ReasonBadKey,
		"10.50.4.0-24":  leases.ReasonPublicIP,    // 127.0.0.1
		"10.50.5.0-24":  leases.ReasonDataShape,   // spaces
		"10.50.6.0-24":  leases.ReasonBackendData, // a newline
		"10.50.7.0-24":  leases.ReasonOwnPublicIP, // 192.0.2.1
		"10.50.8.0-24":  leases.ReasonBadValue,    // not JSON
		"10.50.9.0-24":  leases.ReasonBackendType, // vxlan
		"junk":          leases.ReasonBadKey,
	}
	writeRaw(t, storeDir, "0.0.0.0-0", v("192.0.2.66", "82:87:fe:a4:a9:66"))
	writeRaw(t, storeDir, "10.50.0.0-16", v("192.0.2.66", "82:87:fe:a4:a9:66"))
	writeRaw(t, storeDir, "10.51.3.0-24", v("192.0.2.66", "82:87:fe:a4:a9:66"))
	writeRaw(t, storeDir, "10.50.3.0-024", v("192.0.2.66", "82:87:fe:a4:a9:66"))
	writeRaw(t, storeDir, "10.50.4.0-24", v("127.0.0.1", "82:87:fe:a4:a9:66"))
	writeRaw(t, storeDir, "10.50.5.0-24", v("192.0.2.66", "82:87:fe:a4:a9:66 dev lo"))
	writeRaw(t, storeDir, "10.50.6.0-24", v("192.0.2.66", "82:87:fe:a4:a9:66\n$(touch pwned)"))
	writeRaw(t, storeDir, "10.50.8.0-24", "$(touch pwned)")
	writeRaw(t, storeDir, "10.50.9.0-24", `{"PublicIP":"192.0.2.66","BackendType":"vxlan"}`)
	writeRaw(t, storeDir, "junk", "x")
	// The good peer comes after the hostile files, so it cannot draw a
	// subnet one of them then overwrites.
	good := peer(t, cfg, store, "192.0.2.2", "82:87:fe:a4:a9:55")

	var logs testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	// The hostile leases must not take 10.50.1.0/24 from us: only it and
	// the good peer's subnet are free of them in SubnetMin..SubnetMax.
	n := start(t, cfg, store, t.TempDir(), runner.Logger(log), runner.DataShape(leases.ShapeMAC))
	own := n.lease()
	n.waitEvent(fmt.Sprintf("add %s 192.0.2.2 82:87:fe:a4:a9:55", good.Subnet))
	stale := "10.50.7.0-24"
	if own.Subnet.String() == "10.50.7.0/24" { // the node drew it (1 in ~250)
		stale = "10.50.2.0-24"
		delete(hostile, "10.50.7.0-24")
		hostile[stale] = leases.ReasonOwnPublicIP
	}
	if good.Subnet.String() == strings.ReplaceAll(stale, "-", "/") {
		stale = "10.50.250.0-24"
		delete(hostile, "10.50.2.0-24")
		hostile[stale] = leases.ReasonOwnPublicIP
	}
	// A stale lease of ours, written once we run (at start the store
	// would take it back as our own).
	writeRaw(t, storeDir, stale, v("192.0.2.1", "82:87:fe:a4:a9:66"))

	var st runner.Status
	require.Eventually(t, func() bool {
		var err error
		st, err = runner.ReadStatus(n.dir)
		return err == nil && len(st.Refused) == len(hostile)
	}, waitFor, tick, "status lists every refusal")
	got := map[string]leases.Reason{}
	for _, r := range st.Refused {
		got[r.Key] = leases.Reason(r.Reason)
		assert.NotEmpty(t, r.Detail, r.Key)
	}
	assert.Equal(t, hostile, got)
	assert.Equal(t, 3, st.RefusedNow[string(leases.ReasonOutsideNetwork)])

	// Later snapshots (the store re-lists every 100ms) warn no more: two
	// later valid leases, each applied in turn, prove the engine took at
	// least two more snapshots before the warnings are counted.
	later := 0
	for k := 30; later < 2; k++ {
		sub := fmt.Sprintf("10.50.%d.0/24", k)
		if sub == own.Subnet.String() || sub == good.Subnet.String() {
			continue
		}
		later++
		mac := fmt.Sprintf("82:87:fe:a4:a9:%02x", k)
		writeRaw(t, storeDir, fmt.Sprintf("10.50.%d.0-24", k), v(fmt.Sprintf("192.0.2.%d", k), mac))
		n.waitEvent(fmt.Sprintf("add %s 192.0.2.%d %s", sub, k, mac))
	}
	for key := range hostile {
		assert.Equal(t, 1, strings.Count(logs.String(), "key="+strconv.Quote(key)+" ")+strings.Count(logs.String(), "key="+key+" "),
			"one warning for %s:\n%s", key, logs.String())
	}

	// A later valid write admits the lease.
	writeRaw(t, storeDir, "10.50.5.0-24", v("192.0.2.5", "82:87:fe:a4:a9:05"))
	n.waitEvent("add 10.50.5.0/24 192.0.2.5 82:87:fe:a4:a9:05")
	require.NoError(t, n.stop())
	for _, e := range n.events() {
		assert.NotContains(t, e, "192.0.2.66", "no refused lease reached a hook")
		assert.NotContains(t, e, "127.0.0.1")
	}
	assert.NoFileExists(t, filepath.Join(n.dir, "pwned"))
}

// hangingRenew is a store whose Renew hangs until its deadline, as etcd
// does behind a partition.
type hangingRenew struct {
	leases.Store
	started chan struct{}
	once    sync.Once
}

func (s *hangingRenew) Renew(ctx context.Context, l leases.Lease) (leases.Lease, error) {
	s.once.Do(func() { close(s.started) })
	<-ctx.Done()
	return leases.Lease{}, fmt.Errorf("renew: %w", ctx.Err())
}

// While a renewal hangs, hooks still run; the renewal gives up at the
// store timeout and its failure is logged with its cause.
func TestHangingRenewDoesNotStopHooks(t *testing.T) {
	cfg := config(t, recorder)
	dir := t.TempDir()
	inner := newStore(t, dir, file.TTL(2*time.Second))
	store := &hangingRenew{Store: inner, started: make(chan struct{})}
	others := newStore(t, dir) // other nodes' leases live 24h, however slow the machine
	var logs testutil.SyncBuffer
	n := start(t, cfg, store, t.TempDir(), runner.RenewMargin(1900*time.Millisecond),
		runner.StoreTimeout(3*time.Second), runner.Logger(slog.New(slog.NewTextHandler(&logs, nil))))
	n.lease()
	select {
	case <-store.started:
	case <-time.After(waitFor):
		t.Fatal("no renewal started")
	}
	p := peer(t, cfg, others, "192.0.2.2", "during")
	n.waitEvent(fmt.Sprintf("add %s 192.0.2.2 during", p.Subnet)) // while Renew hangs
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "renew lease failed; retrying") },
		waitFor, tick, "the timed-out renewal was not logged")
	assert.Contains(t, logs.String(), "context deadline exceeded")
}

// A reloaded config's hooks run for the next event; a change of the
// network is refused and the running config kept.
func TestReload(t *testing.T) {
	cfg := config(t, recorder)
	store := newStore(t, t.TempDir())
	n := start(t, cfg, store, t.TempDir())
	n.lease()
	a := peer(t, cfg, store, "192.0.2.2", "a")
	n.waitEvent(fmt.Sprintf("add %s 192.0.2.2 a", a.Subnet))

	newCfg := config(t, with(recorder, hooks.SubnetAdd, `read D; echo "new-add $SUBNET $D" >> events`))
	changed, err := n.eng.Reload(newCfg)
	require.NoError(t, err)
	assert.Equal(t, []hooks.Kind{hooks.SubnetAdd}, changed)
	b := peer(t, cfg, store, "192.0.2.3", "b")
	n.waitEvent(fmt.Sprintf("new-add %s b", b.Subnet))

	wider := config(t, recorder)
	wider.Network = netip.MustParsePrefix("10.0.0.0/8")
	_, err = n.eng.Reload(wider)
	require.ErrorContains(t, err, "a restart is needed")
	c := peer(t, cfg, store, "192.0.2.4", "c")
	n.waitEvent(fmt.Sprintf("new-add %s c", c.Subnet))
}

// --resync-interval runs SubnetAdd again for applied leases.
func TestResyncInterval(t *testing.T) {
	cfg := config(t, recorder)
	store := newStore(t, t.TempDir())
	p := peer(t, cfg, store, "192.0.2.2", "r")
	n := start(t, cfg, store, t.TempDir(), runner.ResyncInterval(100*time.Millisecond))
	add := fmt.Sprintf("add %s 192.0.2.2 r", p.Subnet)
	require.Eventually(t, func() bool {
		var adds int
		for _, e := range n.events() {
			if e == add {
				adds++
			}
		}
		return adds >= 3
	}, waitFor, tick, "the applied lease was not added again")
	require.NoError(t, n.stop())
	assert.NotContains(t, strings.Join(n.events(), "\n"), "remove", "a resync adds, never removes")
}

// Run closes applied.log, which its appends keep open, when it returns:
// also when its last rewrite fails (applied.json cannot be replaced), so
// the log's lines were appended since the last rewrite and stay open
// until then.
func TestEngineClosesJournalLog(t *testing.T) {
	cfg := config(t, recorder)
	s := leasestest.New()
	dir := t.TempDir()
	fakePeer(s, "10.50.7.0/24", "192.0.2.2", "a")
	n := start(t, cfg, s, dir)
	n.waitEvent("add 10.50.7.0/24 192.0.2.2 a")
	require.NoError(t, os.RemoveAll(filepath.Join(dir, runner.JournalFile)))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, runner.JournalFile, "in-the-way"), 0o700))
	fakePeer(s, "10.50.8.0/24", "192.0.2.3", "b")
	n.waitEvent("add 10.50.8.0/24 192.0.2.3 b")
	logPath := filepath.Join(dir, runner.JournalLogFile)
	fds, err := testutil.OpenFDs(logPath)
	require.NoError(t, err)
	assert.Equal(t, 1, fds, "open while the engine runs")
	assert.NoError(t, n.stop())
	fds, err = testutil.OpenFDs(logPath)
	require.NoError(t, err)
	assert.Zero(t, fds, "closed when Run returns")
}
