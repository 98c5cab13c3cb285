package file_test

import (
	"context"
	"io/fs"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/file"
)

var (
	pfx  = netip.MustParsePrefix
	addr = netip.MustParseAddr
)

// rangeOf returns the n subnets 10.50.1.0/24 .. 10.50.n.0/24.
func rangeOf(n int) leases.Range {
	return leases.Range{
		Network: pfx("10.50.0.0/16"), SubnetLen: 24,
		SubnetMin: addr("10.50.1.0"), SubnetMax: netip.AddrFrom4([4]byte{10, 50, byte(n), 0}),
	}
}

func dualRangeOf(n int) leases.Range {
	r := rangeOf(n)
	r.IPv6Network, r.IPv6SubnetLen = pfx("fd00::/56"), 64
	r.IPv6SubnetMin, r.IPv6SubnetMax = addr("fd00:0:0:1::"), addr("fd00:0:0:ff::")
	return r
}

func attrs(ip, data string) leases.Attrs {
	return leases.Attrs{PublicIP: addr(ip), BackendType: leases.BackendType, BackendData: data}
}

func open(t testing.TB, dir string, opts ...file.Option) (*file.Store, *testutil.SyncBuffer) {
	t.Helper()
	lb := &testutil.SyncBuffer{}
	opts = append([]file.Option{file.Logger(slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})))}, opts...)
	s, err := file.New(dir, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close() })
	return s, lb
}

func leasePath(dir string, l leases.Lease) string {
	return filepath.Join(dir, "subnets", leases.SubnetKey(l.Subnet, l.IPv6Subnet))
}

func subnets(ls []leases.Lease) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.Subnet.String()
	}
	return out
}

// expire moves a lease file's expiration (its mtime) into the past.
func expire(t *testing.T, path string) {
	t.Helper()
	past := time.Now().Add(-time.Minute)
	require.NoError(t, os.Chtimes(path, past, past))
}

func TestAcquireWritesFlannelValue(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir)
	ctx := t.Context()
	before := time.Now()
	l, err := s.Acquire(ctx, rangeOf(255), attrs("192.0.2.2", "e2:0f:cf:6a:41:69"))
	require.NoError(t, err)
	assert.True(t, rangeOf(255).Fits(l.Subnet, l.IPv6Subnet), l.Subnet)
	assert.Equal(t, attrs("192.0.2.2", "e2:0f:cf:6a:41:69"), l.Attrs)

	p := leasePath(dir, l)
	b, err := os.ReadFile(p)
	require.NoError(t, err)
	assert.Equal(t, `{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"extension","BackendData":"e2:0f:cf:6a:41:69"}`, string(b))
	fi, err := os.Stat(p)
	require.NoError(t, err)
	assert.Equal(t, fs.FileMode(0o600), fi.Mode().Perm())
	assert.True(t, fi.ModTime().Equal(l.Expiration), "mtime %s is the expiration %s", fi.ModTime(), l.Expiration)
	assert.False(t, l.Expiration.Before(before.Add(leases.DefaultTTL)), "expires a TTL from now")

	ls, err := s.List(ctx)
	require.NoError(t, err)
	require.Len(t, ls, 1)
	assert.Equal(t, l.Subnet, ls[0].Subnet)
	assert.True(t, l.Expiration.Equal(ls[0].Expiration))
	assert.Equal(t, l.Attrs, ls[0].Attrs)
}

func TestAcquireDistinctAndReuse(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir)
	ctx := t.Context()
	r := rangeOf(255)
	a, err := s.Acquire(ctx, r, attrs("192.0.2.1", "a"))
	require.NoError(t, err)
	b, err := s.Acquire(ctx, r, attrs("192.0.2.2", "b"))
	require.NoError(t, err)
	assert.NotEqual(t, a.Subnet, b.Subnet)

	// A restarted node (a new Store on the same dir) takes its lease back,
	// with its new BackendData.
	s2, _ := open(t, dir)
	a2, err := s2.Acquire(ctx, r, attrs("192.0.2.1", "a2"))
	require.NoError(t, err)
	assert.Equal(t, a.Subnet, a2.Subnet)
	assert.False(t, a2.Expiration.Before(a.Expiration))

	ls, err := s.List(ctx)
	require.NoError(t, err)
	require.Len(t, ls, 2)
	assert.True(t, ls[0].Subnet.Addr().Less(ls[1].Subnet.Addr()), "sorted: %v", subnets(ls))
	got := map[netip.Prefix]string{}
	for _, l := range ls {
		got[l.Subnet] = l.Attrs.BackendData
	}
	assert.Equal(t, map[netip.Prefix]string{a.Subnet: "a2", b.Subnet: "b"}, got)
}

func TestAcquireReusesExpiredLeaseOfSameNode(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir)
	ctx := t.Context()
	r := rangeOf(255)
	a, err := s.Acquire(ctx, r, attrs("192.0.2.1", "a"))
	require.NoError(t, err)
	expire(t, leasePath(dir, a))
	ls, err := s.List(ctx)
	require.NoError(t, err)
	assert.Empty(t, ls, "expired leases are not listed")

	a2, err := s.Acquire(ctx, r, attrs("192.0.2.1", "a"))
	require.NoError(t, err)
	assert.Equal(t, a.Subnet, a2.Subnet)
	assert.True(t, a2.Expiration.After(time.Now()))
}

func TestAcquireTakesExpiredSubnetOfOtherNode(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir)
	ctx := t.Context()
	r := rangeOf(1)
	a, err := s.Acquire(ctx, r, attrs("192.0.2.1", "a"))
	require.NoError(t, err)
	_, err = s.Acquire(ctx, r, attrs("192.0.2.2", "b"))
	require.ErrorIs(t, err, leases.ErrNoFreeSubnet, "the only subnet is live")

	expire(t, leasePath(dir, a))
	b, err := s.Acquire(ctx, r, attrs("192.0.2.2", "b"))
	require.NoError(t, err)
	assert.Equal(t, a.Subnet, b.Subnet)

	// The old owner cannot take it back, and its renewal says so.
	_, err = s.Acquire(ctx, r, attrs("192.0.2.1", "a"))
	require.ErrorIs(t, err, leases.ErrNoFreeSubnet)
	_, err = s.Renew(ctx, a)
	require.ErrorIs(t, err, leases.ErrLeaseGone)
	assert.ErrorContains(t, err, "192.0.2.2")
}

func TestAcquireReplacesLeaseOutsideRange(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir)
	ctx := t.Context()
	a, err := s.Acquire(ctx, rangeOf(1), attrs("192.0.2.1", "a"))
	require.NoError(t, err)
	require.Equal(t, "10.50.1.0/24", a.Subnet.String())

	// The operator moved SubnetMin: the old lease no longer fits.
	r := rangeOf(4)
	r.SubnetMin = addr("10.50.2.0")
	b, err := s.Acquire(ctx, r, attrs("192.0.2.1", "a"))
	require.NoError(t, err)
	assert.True(t, r.Fits(b.Subnet, b.IPv6Subnet), b.Subnet)
	ls, err := s.List(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{b.Subnet.String()}, subnets(ls), "the old lease is gone")
}

func TestAcquireDualStack(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir)
	ctx := t.Context()
	r := dualRangeOf(2)
	a, err := s.Acquire(ctx, r, attrs("192.0.2.1", "a"))
	require.NoError(t, err)
	require.True(t, a.IPv6Subnet.IsValid())
	assert.True(t, r.Fits(a.Subnet, a.IPv6Subnet))
	_, err = os.Stat(filepath.Join(dir, "subnets", leases.SubnetKey(a.Subnet, a.IPv6Subnet)))
	require.NoError(t, err, "key carries &<ipv6>-<len>")

	b, err := s.Acquire(ctx, r, attrs("192.0.2.2", "b"))
	require.NoError(t, err)
	assert.NotEqual(t, a.Subnet, b.Subnet)
	assert.NotEqual(t, a.IPv6Subnet, b.IPv6Subnet)

	a2, err := s.Acquire(ctx, r, attrs("192.0.2.1", "a"))
	require.NoError(t, err)
	assert.Equal(t, a.IPv6Subnet, a2.IPv6Subnet)

	require.NoError(t, s.Remove(ctx, a.Subnet), "removed by its IPv4 subnet")
	ls, err := s.List(ctx)
	require.NoError(t, err)
	assert.Equal(t, []string{b.Subnet.String()}, subnets(ls))
}

func TestAcquireFullRange(t *testing.T) {
	s, _ := open(t, t.TempDir())
	ctx := t.Context()
	r := rangeOf(3)
	seen := map[netip.Prefix]bool{}
	for i := range 3 {
		l, err := s.Acquire(ctx, r, attrs("192.0.2."+strconv.Itoa(i+1), ""))
		require.NoError(t, err)
		seen[l.Subnet] = true
	}
	assert.Len(t, seen, 3)
	_, err := s.Acquire(ctx, r, attrs("192.0.2.9", ""))
	require.ErrorIs(t, err, leases.ErrNoFreeSubnet)
	assert.ErrorContains(t, err, "10.50.1.0/24..10.50.3.0/24")
}

func TestAcquireRejects(t *testing.T) {
	s, _ := open(t, t.TempDir())
	_, err := s.Acquire(t.Context(), leases.Range{}, attrs("192.0.2.1", ""))
	require.ErrorIs(t, err, leases.ErrInvalidRange)
	_, err = s.Acquire(t.Context(), rangeOf(3), leases.Attrs{BackendType: leases.BackendType})
	require.ErrorContains(t, err, "PublicIP")
}

func TestAcquireHonoursContextWhileLocked(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir)
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, syscall.Flock(int(f.Fd()), syscall.LOCK_EX))

	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	_, err = s.Acquire(ctx, rangeOf(3), attrs("192.0.2.1", ""))
	require.ErrorIs(t, err, context.DeadlineExceeded)

	require.NoError(t, syscall.Flock(int(f.Fd()), syscall.LOCK_UN))
	_, err = s.Acquire(t.Context(), rangeOf(3), attrs("192.0.2.1", ""))
	require.NoError(t, err)
}

func TestRenew(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir, file.TTL(time.Hour))
	ctx := t.Context()
	l, err := s.Acquire(ctx, rangeOf(9), attrs("192.0.2.1", "old"))
	require.NoError(t, err)
	expire(t, leasePath(dir, l))

	l.Attrs.BackendData = "new"
	nl, err := s.Renew(ctx, l)
	require.NoError(t, err)
	assert.Equal(t, l.Subnet, nl.Subnet)
	assert.Equal(t, "new", nl.Attrs.BackendData)
	assert.True(t, nl.Expiration.After(time.Now()), "expiration moved to the future")
	ls, err := s.List(ctx)
	require.NoError(t, err)
	require.Len(t, ls, 1)
	assert.Equal(t, "new", ls[0].Attrs.BackendData)

	require.NoError(t, s.Remove(ctx, l.Subnet))
	_, err = s.Renew(ctx, l)
	require.ErrorIs(t, err, leases.ErrLeaseGone)

	// A file that is no longer a lease is gone too.
	require.NoError(t, os.Symlink(filepath.Join(dir, "config"), leasePath(dir, l)))
	_, err = s.Renew(ctx, l)
	require.ErrorIs(t, err, leases.ErrLeaseGone)
}

func TestTTLExpiry(t *testing.T) {
	s, _ := open(t, t.TempDir(), file.TTL(300*time.Millisecond))
	ctx := t.Context()
	l, err := s.Acquire(ctx, rangeOf(9), attrs("192.0.2.1", ""))
	require.NoError(t, err)
	ls, err := s.List(ctx)
	require.NoError(t, err)
	require.Len(t, ls, 1)
	require.Eventually(t, func() bool {
		ls, err := s.List(ctx)
		return err == nil && len(ls) == 0
	}, 10*time.Second, 20*time.Millisecond)
	assert.False(t, l.Expiration.After(time.Now()))
}

func TestRemove(t *testing.T) {
	s, _ := open(t, t.TempDir())
	ctx := t.Context()
	l, err := s.Acquire(ctx, rangeOf(9), attrs("192.0.2.1", ""))
	require.NoError(t, err)
	require.NoError(t, s.Remove(ctx, l.Subnet))
	ls, err := s.List(ctx)
	require.NoError(t, err)
	assert.Empty(t, ls)
	require.ErrorIs(t, s.Remove(ctx, l.Subnet), leases.ErrNotFound)
	require.ErrorIs(t, s.Remove(ctx, pfx("10.99.0.0/24")), leases.ErrNotFound)
}

func TestGarbageFilesSkipped(t *testing.T) {
	dir := t.TempDir()
	s, logs := open(t, dir)
	ctx := t.Context()
	sub := filepath.Join(dir, "subnets")
	live := time.Now().Add(time.Hour)
	write := func(name, content string) {
		p := filepath.Join(sub, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		require.NoError(t, os.Chtimes(p, live, live))
	}
	outside := filepath.Join(t.TempDir(), "secret")
	valid := `{"PublicIP":"192.0.2.7","PublicIPv6":null,"BackendType":"extension","BackendData":"x"}`
	require.NoError(t, os.WriteFile(outside, []byte(valid), 0o600))

	write("junk", "hello")
	write("10.50.1.0-24", "{not json")                                          // live, unreadable: keeps its subnet
	require.NoError(t, os.Symlink(outside, filepath.Join(sub, "10.50.2.0-24"))) // never followed
	write("10.50.3.0-024", valid)                                               // not canonical: not a lease
	require.NoError(t, os.Mkdir(filepath.Join(sub, "10.50.4.0-24"), 0o700))
	require.NoError(t, syscall.Mkfifo(filepath.Join(sub, "10.50.5.0-24"), 0o600))
	write("10.50.6.0-24", `{"PublicIP":"192.0.2.6","BackendData":"`+strings.Repeat("x", 70<<10)+`"}`)
	write("10.50.7.0-24", valid)
	write("10.50.8.0-24&fd00::-64", valid) // dual-stack key in a v4 store: listed, and it takes 10.50.8.0/24
	write("10.50.9.0-24", `{"PublicIP":"192.0.2.300"}`)

	for range 3 {
		ls, err := s.List(ctx)
		require.NoError(t, err)
		var valid []leases.Lease
		invalid := map[string]leases.Reason{}
		for _, l := range ls {
			if l.Invalid == "" {
				valid = append(valid, l)
				continue
			}
			assert.NotEmpty(t, l.Problem, l.Key)
			assert.Empty(t, l.Attrs, "an invalid lease carries no attrs: %s", l.Key)
			invalid[l.Key] = l.Invalid
		}
		assert.Equal(t, []string{"10.50.7.0/24", "10.50.8.0/24"}, subnets(valid))
		assert.Equal(t, map[string]leases.Reason{
			"junk": leases.ReasonBadKey, "10.50.3.0-024": leases.ReasonBadKey,
			"10.50.1.0-24": leases.ReasonBadValue, "10.50.2.0-24": leases.ReasonBadValue,
			"10.50.4.0-24": leases.ReasonBadValue, "10.50.5.0-24": leases.ReasonBadValue,
			"10.50.6.0-24": leases.ReasonBadValue, "10.50.9.0-24": leases.ReasonBadValue,
		}, invalid, "every file that is not a lease is listed as invalid, with why")
	}
	for _, name := range []string{"junk", "10.50.1.0-24", "10.50.2.0-24", "10.50.3.0-024", "10.50.4.0-24", "10.50.5.0-24", "10.50.6.0-24", "10.50.9.0-24"} {
		assert.Equal(t, 1, strings.Count(logs.String(), "file="+name+" "), "warned once about %s:\n%s", name, logs)
	}

	// Only 10.50.3.0/24 and 10.50.10.0/24 are free in 10.50.1.0 .. 10.50.10.0.
	r := rangeOf(10)
	got := map[string]bool{}
	for _, ip := range []string{"192.0.2.100", "192.0.2.101"} {
		l, err := s.Acquire(ctx, r, attrs(ip, ""))
		require.NoError(t, err)
		got[l.Subnet.String()] = true
	}
	assert.Equal(t, map[string]bool{"10.50.3.0/24": true, "10.50.10.0/24": true}, got)
	_, err := s.Acquire(ctx, r, attrs("192.0.2.102", ""))
	require.ErrorIs(t, err, leases.ErrNoFreeSubnet)

	b, err := os.ReadFile(outside)
	require.NoError(t, err)
	assert.Equal(t, valid, string(b), "the symlink target is untouched")
}

func TestFileModesAndConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s, _ := open(t, dir)
	ctx := t.Context()
	_, err := s.Config(ctx)
	require.ErrorIs(t, err, leases.ErrNotFound)
	conf := []byte(`{"Network":"10.50.0.0/16","Backend":{"Type":"extension"}}`)
	require.NoError(t, s.PutConfig(ctx, conf))
	got, err := s.Config(ctx)
	require.NoError(t, err)
	assert.Equal(t, conf, got)

	l, err := s.Acquire(ctx, rangeOf(9), attrs("192.0.2.1", ""))
	require.NoError(t, err)
	for _, tt := range []struct {
		path string
		mode fs.FileMode
	}{
		{dir, fs.ModeDir | 0o700},
		{filepath.Join(dir, "subnets"), fs.ModeDir | 0o700},
		{filepath.Join(dir, "config"), 0o600},
		{filepath.Join(dir, ".lock"), 0o600},
		{leasePath(dir, l), 0o600},
	} {
		fi, err := os.Stat(tt.path)
		require.NoError(t, err)
		assert.Equal(t, tt.mode, fi.Mode(), tt.path)
	}
	des, err := os.ReadDir(filepath.Join(dir, "subnets"))
	require.NoError(t, err)
	require.Len(t, des, 1, "no temporary file is left behind")
}

func TestStaleTempFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	s, _ := open(t, dir)
	sub := filepath.Join(dir, "subnets")
	old := filepath.Join(sub, ".tmp-"+strconv.FormatInt(time.Now().Add(-time.Hour).UnixNano(), 10)+"-1")
	fresh := filepath.Join(sub, ".tmp-"+strconv.FormatInt(time.Now().UnixNano(), 10)+"-2")
	require.NoError(t, os.WriteFile(old, nil, 0o600))
	require.NoError(t, os.WriteFile(fresh, nil, 0o600))
	_, err := s.Acquire(t.Context(), rangeOf(9), attrs("192.0.2.1", ""))
	require.NoError(t, err)
	assert.NoFileExists(t, old)
	assert.FileExists(t, fresh, "a write in flight is left alone")
}

func TestNewOptions(t *testing.T) {
	for _, o := range []file.Option{file.TTL(0), file.Resync(-1)} {
		_, err := file.New(t.TempDir(), o)
		require.Error(t, err)
	}
	_, err := file.New(t.TempDir(), file.Logger(nil))
	require.NoError(t, err, "a nil logger is the default one")
	_, err = file.New("")
	require.Error(t, err)
	p := filepath.Join(t.TempDir(), "f")
	require.NoError(t, os.WriteFile(p, nil, 0o600))
	_, err = file.New(p)
	require.Error(t, err, "dir is a file")
}

func TestClosed(t *testing.T) {
	s, _ := open(t, t.TempDir())
	require.NoError(t, s.Close())
	require.NoError(t, s.Close())
	_, err := s.List(t.Context())
	require.ErrorIs(t, err, file.ErrClosed)
	_, err = s.Acquire(t.Context(), rangeOf(3), attrs("192.0.2.1", ""))
	require.ErrorIs(t, err, file.ErrClosed)
}

func TestWithRandIsDeterministic(t *testing.T) {
	pick := func() netip.Prefix {
		s, _ := open(t, t.TempDir(), file.Rand(rand.New(rand.NewPCG(3, 4))))
		l, err := s.Acquire(t.Context(), rangeOf(255), attrs("192.0.2.1", ""))
		require.NoError(t, err)
		return l.Subnet
	}
	assert.Equal(t, pick(), pick())
}

func TestWipedStoreDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s, _ := open(t, dir)
	ctx := t.Context()
	l, err := s.Acquire(ctx, rangeOf(9), attrs("192.0.2.1", ""))
	require.NoError(t, err)
	require.NoError(t, os.RemoveAll(dir))

	ls, err := s.List(ctx)
	require.NoError(t, err)
	assert.Empty(t, ls)
	_, err = s.Renew(ctx, l)
	require.ErrorIs(t, err, leases.ErrLeaseGone)
	_, err = s.Acquire(ctx, rangeOf(9), attrs("192.0.2.1", ""))
	require.NoError(t, err, "the directory is recreated")
	fi, err := os.Stat(dir)
	require.NoError(t, err)
	assert.Equal(t, fs.ModeDir|0o700, fi.Mode())
}
