package runner

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/pathmtu"
	"github.com/flexhook/flexhook/leases"
)

// fixedProbe answers p, or no path when p.MTU is 0, or err.
func fixedProbe(p pathmtu.Path, err error) MTUProbe {
	return func(pathmtu.Query) (pathmtu.Path, bool, error) { return p, p.MTU > 0, err }
}

func TestMTUResolve(t *testing.T) {
	vx := pathmtu.Path{MTU: 1450, Device: "flannel-vxlan", Why: "address 10.50.3.0/32"}
	plain := &hooks.Config{Range: leases.Range{Network: netip.MustParsePrefix("10.50.0.0/16")}}
	withMTU := &hooks.Config{Range: plain.Range, Backend: hooks.Backend{MTU: 1400}}
	own := leases.Lease{Subnet: netip.MustParsePrefix("10.50.3.0/24")}
	for _, r := range []struct {
		name string
		o    mtuOptions
		cfg  *hooks.Config
		mtu  int
		src  string
	}{
		{"nothing known", mtuOptions{}, plain, 1500, "default"},
		{"underlay", mtuOptions{underlay: 1500, iface: "eth0"}, plain, 1500, "underlay eth0"},
		{"probe, no path yet", mtuOptions{underlay: 9000, iface: "eth0", probe: fixedProbe(pathmtu.Path{}, nil)}, plain, 9000, "underlay eth0"},
		{"probe", mtuOptions{underlay: 1500, probe: fixedProbe(vx, nil)}, plain, 1450, "path: dev flannel-vxlan, address 10.50.3.0/32"},
		{"probe failed: underlay", mtuOptions{underlay: 1500, probe: fixedProbe(vx, errors.New("netlink"))}, plain, 1500, "underlay"},
		{"config wins over the probe", mtuOptions{probe: fixedProbe(vx, nil)}, withMTU, 1400, "Backend.MTU"},
		{"flag wins over the config", mtuOptions{fixed: 1300, probe: fixedProbe(vx, nil)}, withMTU, 1300, "--mtu"},
	} {
		f := &subnetFile{o: r.o, log: slog.New(slog.DiscardHandler)}
		_, err := f.refresh(r.cfg, own)
		require.NoError(t, err, r.name)
		mtu, src := f.mtuNow()
		assert.Equal(t, r.mtu, mtu, r.name)
		assert.Equal(t, r.src, src, r.name)
	}
}

// A failed probe keeps what an earlier one found; the file is rewritten
// only when its content changes.
func TestSubnetFileRefresh(t *testing.T) {
	cfg := &hooks.Config{Range: leases.Range{Network: netip.MustParsePrefix("10.50.0.0/16")}}
	own := leases.Lease{Subnet: netip.MustParsePrefix("10.50.3.0/24")}
	path := filepath.Join(t.TempDir(), "subnet.env")
	var p pathmtu.Path
	var perr error
	f := &subnetFile{path: path, log: slog.New(slog.DiscardHandler), o: mtuOptions{underlay: 1500, iface: "eth0",
		probe: func(pathmtu.Query) (pathmtu.Path, bool, error) { return p, p.MTU > 0, perr }}}
	read := func() string {
		b, err := os.ReadFile(path)
		require.NoError(t, err)
		return string(b)
	}
	const env = "FLANNEL_NETWORK=10.50.0.0/16\nFLANNEL_SUBNET=10.50.3.1/24\nFLANNEL_MTU=%d\nFLANNEL_IPMASQ=false\n"

	changed, err := f.refresh(cfg, own)
	require.NoError(t, err)
	assert.True(t, changed, "the first refresh sets the MTU")
	assert.Equal(t, fmt.Sprintf(env, 1500), read())

	p = pathmtu.Path{MTU: 1420, Device: "flannel-wg", Why: "route 10.50.0.0/16"}
	changed, err = f.refresh(cfg, own)
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, fmt.Sprintf(env, 1420), read())

	perr = errors.New("netlink: no buffer space")
	require.NoError(t, os.Remove(path)) // proves no rewrite happens below
	changed, err = f.refresh(cfg, own)
	require.NoError(t, err)
	assert.False(t, changed, "a failed probe keeps the MTU found before")
	assert.NoFileExists(t, path, "unchanged content is not written again")
	mtu, src := f.mtuNow()
	assert.Equal(t, 1420, mtu)
	assert.Equal(t, "path: dev flannel-wg, route 10.50.0.0/16", src)
}

// UnderlayMTU takes any interface's MTU: loopback's 65536 is more than an
// IP packet holds, so FLANNEL_MTU is 65535; below IPv4's 68 is an error.
func TestUnderlayMTUOption(t *testing.T) {
	for _, r := range []struct {
		in, want int
		err      string
	}{
		{1500, 1500, ""},
		{65535, 65535, ""},
		{65536, 65535, ""},
		{67, 0, "underlay MTU 67: want at least 68"},
	} {
		var o options
		err := UnderlayMTU(r.in, "lo")(&o)
		if r.err != "" {
			assert.EqualError(t, err, r.err)
			continue
		}
		require.NoError(t, err)
		assert.Equal(t, r.want, o.mtu.underlay, "UnderlayMTU(%d)", r.in)
	}
}
