package runner

import (
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/netcmd"
	"github.com/flexhook/flexhook/runner/shell"
)

const (
	fdbA      = netcmd.Object("fdb b2:d1:fc:40:8d:2f dev flannel-vxlan")
	routeLAN  = netcmd.Object("route 10.50.200.0/24")
	routeB    = netcmd.Object("route 10.50.9.0/24")
	peerKey   = netcmd.Object("wg-peer KEY dev flannel-wg")
	linkVxlan = netcmd.Object("link flannel-vxlan")
	leaseA    = "10.50.2.0/24"
	leaseB    = "10.50.9.0/24"
)

// step is one command a hook runs: Claim, then (when allowed) Done.
type step struct {
	owner  string
	obj    netcmd.Object
	verb   netcmd.Verb
	ok     bool   // the command succeeded
	refuse string // the ConflictError reason Claim gives; "" lets it run
}

func runSteps(t *testing.T, o *Owners, steps []step) {
	t.Helper()
	for i, s := range steps {
		err := o.Claim(s.owner, s.obj, s.verb)
		if s.refuse != "" {
			var ce *shell.ConflictError
			require.ErrorAs(t, err, &ce, "step %d: %+v", i, s)
			assert.Equal(t, s.refuse, ce.Reason, "step %d: %v", i, err)
			continue
		}
		require.NoError(t, err, "step %d: %+v", i, s)
		o.Done(s.owner, s.obj, s.verb, s.ok)
	}
}

func TestOwnersRule(t *testing.T) {
	before := map[netcmd.Object]struct{}{routeLAN: {}}
	tests := []struct {
		name  string
		steps []step
		owns  map[string][]netcmd.Object // owner -> objects after
	}{
		{"a duplicate MAC cannot move A's fdb entry", []step{
			{owner: leaseA, obj: fdbA, verb: netcmd.Add, ok: true},
			{owner: leaseB, obj: fdbA, verb: netcmd.Add, refuse: shell.ConflictLease},
			{owner: leaseB, obj: fdbA, verb: netcmd.Replace, refuse: shell.ConflictLease},
			{owner: leaseB, obj: fdbA, verb: netcmd.Del, refuse: shell.ConflictLease},
		}, map[string][]netcmd.Object{leaseA: {fdbA}}},
		{"a lease replaces its own (an earlier version's) object", []step{
			{owner: leaseA, obj: fdbA, verb: netcmd.Add, ok: true},
			{owner: leaseA, obj: fdbA, verb: netcmd.Add, ok: false},
			{owner: leaseA, obj: fdbA, verb: netcmd.Replace, ok: true},
		}, map[string][]netcmd.Object{leaseA: {fdbA}}},
		{"the node's connected route is never replaced or deleted", []step{
			{owner: "10.50.200.0/24", obj: routeLAN, verb: netcmd.Add, ok: false},
			{owner: "10.50.200.0/24", obj: routeLAN, verb: netcmd.Replace, refuse: shell.ConflictPreexisting},
			{owner: "10.50.200.0/24", obj: routeLAN, verb: netcmd.Del, refuse: shell.ConflictPreexisting},
		}, map[string][]netcmd.Object{}},
		{"an add that failed leaves no claim", []step{
			{owner: leaseB, obj: routeB, verb: netcmd.Add, ok: false},
			{owner: leaseA, obj: routeB, verb: netcmd.Add, ok: true},
		}, map[string][]netcmd.Object{leaseA: {routeB}}},
		{"a del releases; the object is free again", []step{
			{owner: leaseA, obj: peerKey, verb: netcmd.Set, ok: true},
			{owner: leaseA, obj: peerKey, verb: netcmd.Del, ok: true},
			{owner: leaseB, obj: peerKey, verb: netcmd.Set, ok: true},
		}, map[string][]netcmd.Object{leaseB: {peerKey}}},
		{"leases keep off the node's own hooks' objects", []step{
			{owner: shell.NodeOwner, obj: linkVxlan, verb: netcmd.Add, ok: true},
			{owner: leaseA, obj: linkVxlan, verb: netcmd.Set, refuse: shell.ConflictNode},
			{owner: leaseA, obj: linkVxlan, verb: netcmd.Del, refuse: shell.ConflictNode},
			{owner: shell.NodeOwner, obj: linkVxlan, verb: netcmd.Del, ok: true},
		}, map[string][]netcmd.Object{}},
		{"the node's hooks may change what the node had", []step{
			{owner: shell.NodeOwner, obj: routeLAN, verb: netcmd.Replace, ok: true},
		}, map[string][]netcmd.Object{shell.NodeOwner: {routeLAN}}},
		{"a racing claim of the same object loses", []step{
			{owner: leaseA, obj: routeB, verb: netcmd.Add, ok: true},
			{owner: leaseB, obj: routeB, verb: netcmd.Add, refuse: shell.ConflictLease},
		}, map[string][]netcmd.Object{leaseA: {routeB}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := openOwners(newMemFS(), before, slog.New(slog.DiscardHandler))
			require.NoError(t, err)
			runSteps(t, o, tt.steps)
			for _, who := range []string{leaseA, leaseB, shell.NodeOwner} {
				assert.Equal(t, tt.owns[who], o.Of(who), who)
			}
		})
	}
}

// A claim is on disk before its command runs: after the daemon dies in
// the middle of a hook, the object that hook made is its lease's, not
// the node's, at the next start (the kernel lists it then).
func TestOwnersSurviveACrash(t *testing.T) {
	fsys := newMemFS()
	log := slog.New(slog.DiscardHandler)
	o, err := openOwners(fsys, nil, log)
	require.NoError(t, err)
	require.NoError(t, o.Claim(leaseA, routeB, netcmd.Add)) // the daemon dies while ip runs
	fsys.crash(1)                                           // a process crash: the page cache stays

	kernel := map[netcmd.Object]struct{}{routeB: {}, routeLAN: {}}
	o, err = openOwners(fsys, kernel, log)
	require.NoError(t, err)
	runSteps(t, o, []step{
		{owner: leaseA, obj: routeB, verb: netcmd.Add, ok: false}, // exists
		{owner: leaseA, obj: routeB, verb: netcmd.Replace, ok: true},
		{owner: leaseB, obj: routeLAN, verb: netcmd.Replace, refuse: shell.ConflictPreexisting},
	})
	o.Release(leaseA)
	assert.Empty(t, o.Of(leaseA))

	// Released, and compacted by the next open: free for anyone.
	o, err = openOwners(fsys, map[netcmd.Object]struct{}{}, log)
	require.NoError(t, err)
	runSteps(t, o, []step{{owner: leaseB, obj: routeB, verb: netcmd.Add, ok: true}})
	assert.Equal(t, []netcmd.Object{routeB}, o.Of(leaseB))
}

// A torn last line of owners.log is dropped, the lines before it kept.
func TestOwnersTornLog(t *testing.T) {
	fsys := newMemFS()
	log := slog.New(slog.DiscardHandler)
	o, err := openOwners(fsys, nil, log)
	require.NoError(t, err)
	runSteps(t, o, []step{{owner: leaseA, obj: fdbA, verb: netcmd.Add, ok: true}})
	fsys.visible[OwnersLogFile] = append(fsys.visible[OwnersLogFile], []byte(`{"Object":"route 10.5`)...)
	o, err = openOwners(fsys, map[netcmd.Object]struct{}{fdbA: {}}, log)
	require.NoError(t, err)
	assert.Equal(t, []netcmd.Object{fdbA}, o.Of(leaseA))
}

// A state dir with a journal and no ownership table is an earlier
// version's: its leases' objects are in the kernel, unowned, so for this
// run leases may take them over; a fresh state dir gives no such leave.
func TestOwnersAdoptAfterUpgrade(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	kernel := map[netcmd.Object]struct{}{routeB: {}}
	for _, upgraded := range []bool{true, false} {
		fsys := newMemFS()
		if upgraded {
			fsys.visible[JournalFile] = []byte(`{"Version":2}`)
		}
		o, err := openOwners(fsys, kernel, log)
		require.NoError(t, err)
		err = o.Claim(leaseB, routeB, netcmd.Replace)
		if upgraded {
			assert.NoError(t, err)
		} else {
			assert.Error(t, err)
		}
	}
}

// An object a lease's Remove left in the kernel (a recipe without
// SubnetRemoveCommand) stays known as free when the lease is released:
// after a restart it is nobody's, not the node's, so the next lease for
// that subnet may replace it.
func TestOwnersReleasedStayFree(t *testing.T) {
	fsys := newMemFS()
	log := slog.New(slog.DiscardHandler)
	o, err := openOwners(fsys, nil, log)
	require.NoError(t, err)
	runSteps(t, o, []step{{owner: leaseB, obj: routeB, verb: netcmd.Add, ok: true}})
	o.Release(leaseB)
	o, err = openOwners(fsys, map[netcmd.Object]struct{}{routeB: {}}, log)
	require.NoError(t, err)
	runSteps(t, o, []step{
		{owner: leaseB, obj: routeB, verb: netcmd.Add, ok: false}, // exists
		{owner: leaseB, obj: routeB, verb: netcmd.Replace, ok: true},
	})
	assert.Equal(t, []netcmd.Object{routeB}, o.Of(leaseB))
}

// The node's objects are taken when the engine says (after
// PostStartupCommand), not when the table is opened: what the node's
// hooks rebuilt at start is as it is then.
func TestOwnersTakeBaseline(t *testing.T) {
	o, err := openOwners(newMemFS(), nil, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	require.NoError(t, o.Claim(leaseB, routeLAN, netcmd.Replace), "nothing is the node's before the baseline")
	o.Done(leaseB, routeLAN, netcmd.Replace, false)
	o.kernel = func() (map[netcmd.Object]struct{}, error) {
		return map[netcmd.Object]struct{}{routeLAN: {}}, nil
	}
	require.NoError(t, o.TakeBaseline())
	runSteps(t, o, []step{{owner: leaseB, obj: routeLAN, verb: netcmd.Replace, refuse: shell.ConflictPreexisting}})
}

// owners.json, written one entry at a time, is what json.MarshalIndent
// writes for the whole table, and the next open reads it back.
func TestOwnersEncode(t *testing.T) {
	fsys := newMemFS()
	log := slog.New(slog.DiscardHandler)
	o, err := openOwners(fsys, nil, log)
	require.NoError(t, err)
	want, err := json.MarshalIndent(ownersFile{Version: 1, Owners: map[netcmd.Object]string{}}, "", "  ")
	require.NoError(t, err)
	assert.Equal(t, string(want)+"\n", string(fsys.visible[OwnersFile]), "an empty table")

	odd := netcmd.Object(`link "a<b>&c"`)
	runSteps(t, o, []step{
		{owner: leaseA, obj: routeB, verb: netcmd.Add, ok: true},
		{owner: leaseB, obj: fdbA, verb: netcmd.Add, ok: true},
		{owner: shell.NodeOwner, obj: odd, verb: netcmd.Add, ok: true},
	})
	require.NoError(t, o.compact())
	want, err = json.MarshalIndent(ownersFile{Version: 1, Owners: map[netcmd.Object]string{
		routeB: leaseA, fdbA: leaseB, odd: shell.NodeOwner}}, "", "  ")
	require.NoError(t, err)
	assert.Equal(t, string(want)+"\n", string(fsys.visible[OwnersFile]))

	again, err := openOwners(fsys, nil, log)
	require.NoError(t, err)
	assert.Equal(t, []netcmd.Object{routeB}, again.Of(leaseA))
	assert.Equal(t, []netcmd.Object{odd}, again.Of(shell.NodeOwner))
}

// On disk, owners.log stays open between changes, its compaction hands
// the next change a fresh log, Close closes it, and a change after Close
// is still recorded: the next open knows every one.
func TestOwnersLogOnDisk(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	logPath := filepath.Join(dir, OwnersLogFile)
	o, err := OpenOwners(dir, log)
	require.NoError(t, err)
	runSteps(t, o, []step{{owner: leaseA, obj: routeB, verb: netcmd.Add, ok: true}})
	assert.Equal(t, 1, openFDs(t, logPath))

	o.mu.Lock()
	o.lines = ownersCompactEvery - 1 // the next change compacts
	o.mu.Unlock()
	runSteps(t, o, []step{{owner: leaseB, obj: fdbA, verb: netcmd.Add, ok: true}})
	fi, err := os.Stat(logPath)
	require.NoError(t, err)
	assert.Zero(t, fi.Size(), "compacted")
	runSteps(t, o, []step{{owner: leaseA, obj: linkVxlan, verb: netcmd.Add, ok: true}})
	b, err := os.ReadFile(logPath)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(string(b), `{"Object":"link flannel-vxlan"`), "the next change starts the log: %q", b)

	require.NoError(t, o.Close())
	assert.Zero(t, openFDs(t, logPath), "Close closes owners.log")
	runSteps(t, o, []step{{owner: leaseB, obj: peerKey, verb: netcmd.Add, ok: true}})
	assert.Zero(t, openFDs(t, logPath))

	again, err := openOwners(&osFS{dir: dir}, nil, log)
	require.NoError(t, err)
	assert.Equal(t, []netcmd.Object{linkVxlan, routeB}, again.Of(leaseA))
	assert.Equal(t, []netcmd.Object{fdbA, peerKey}, again.Of(leaseB))
	require.NoError(t, again.Close())
}
