package netcmd

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The wg set forms the fast path does through wgctrl, and near misses
// left to the real wg (runner/shell's wireguard parity suite runs both
// against wireguard-go).
func TestWgFastForms(t *testing.T) {
	for _, r := range []struct {
		cmd  string
		fast bool
	}{
		{"wg set flannel-wg peer " + key1 + " endpoint 192.0.2.2:51820 allowed-ips 10.50.2.0/24", true},
		{"wg set flannel-wg peer " + key1 + " allowed-ips 10.50.2.0/24,fd00:0:0:2::/64 endpoint [fd00::2]:51820", true},
		{"wg set flannel-wg peer " + key1 + " endpoint 192.0.2.2:51820", true},
		{"wg set flannel-wg peer " + key1, true},
		{"wg set flannel-wg peer " + key1 + " allowed-ips 10.50.2.0/24 allowed-ips 10.50.3.0/24", true},
		{"wg set flannel-wg peer " + key1 + " allowed-ips 10.50.2.7", true},
		{"wg set flannel-wg peer " + key1 + " remove", true},
		{"wg set flannel-wg peer " + key1 + " remove peer " + key2 + " remove", true},
		{"wg set flannel-wg peer " + key1 + " allowed-ips 10.50.2.0/24 peer " + key2 + " allowed-ips 10.50.3.0/24", true},
		{"wg set flannel-wg listen-port 51820 private-key privatekey", true},
		{"wg set flannel-wg private-key /etc/wg/key", true},
		{"wg set flannel-wg listen-port 51820 peer " + key1 + " allowed-ips 10.50.2.0/24", true},
		{"wg set flannel-wg", false},               // wg's usage error
		{"wg set flannel-wg listen-port 0", false}, // a random port
		{"wg set flannel-wg listen-port 051820", false},
		{"wg set flannel-wg listen-port 65536", false},
		{"wg set flannel-wg listen-port https", false}, // a service name
		{"wg set flannel-wg listen-port 1 listen-port 2", false},
		{"wg set flannel-wg fwmark 0x10", false},
		{"wg set flannel-wg peer " + key1 + " persistent-keepalive 25", false},
		{"wg set flannel-wg peer " + key1 + " preshared-key psk", false},
		{"wg set flannel-wg peer " + key1 + " endpoint node2.example:51820", false}, // a hostname
		{"wg set flannel-wg peer " + key1 + " endpoint 192.0.2.2", false},
		{"wg set flannel-wg peer " + key1 + " endpoint 192.0.2.2:", false},
		{"wg set flannel-wg peer " + key1 + " endpoint 192.0.2.2:0", false},
		{"wg set flannel-wg peer " + key1 + " endpoint 192.0.2.02:51820", false},
		{"wg set flannel-wg peer " + key1 + " endpoint fd00::2:51820", false}, // IPv6 without brackets
		{"wg set flannel-wg peer " + key1 + " endpoint [192.0.2.2]:51820", false},
		{"wg set flannel-wg peer " + key1 + " endpoint [fe80::1%eth0]:51820", false},
		{"wg set flannel-wg peer " + key1 + " endpoint [::ffff:192.0.2.2]:51820", false},
		{"wg set flannel-wg peer " + key1 + " allowed-ips 10.50.2.5/24", false}, // wg warns: host bits
		{"wg set flannel-wg peer " + key1 + " allowed-ips 10.50.2.0/024", false},
		{"wg set flannel-wg peer " + key1 + " allowed-ips 10.50.2.0/24,", false},
		{"wg set flannel-wg peer " + key1 + " allowed-ips +10.50.2.0/24", false},
		{"wg set flannel-wg peer " + key1 + " allowed-ips ::ffff:10.50.2.0/120", false},
		{"wg set flannel-wg peer " + key1 + " remove endpoint 192.0.2.2:51820", false},
		{"wg set flannel-wg peer " + key1 + " endpoint 192.0.2.2:51820 remove", false},
		{"/usr/bin/wg set flannel-wg peer " + key1 + " remove", true}, // the shell runs it: a path
	} {
		c, err := Parse(strings.Fields(r.cmd))
		if !assert.NoError(t, err, r.cmd) {
			continue
		}
		assert.Equal(t, r.fast, c.Fast, r.cmd)
	}
	// An empty list clears the peer's allowed IPs.
	c, err := Parse([]string{"wg", "set", "flannel-wg", "peer", key1, "allowed-ips", ""})
	require.NoError(t, err)
	assert.True(t, c.Fast)
	c, err = Parse([]string{"wg", "set", "flannel-wg", "peer", key1, "allowed-ips", "10.50.2.0/24, fd00::/64"})
	require.NoError(t, err)
	assert.False(t, c.Fast, "wg strips the spaces: its form")
}

func TestWgValues(t *testing.T) {
	ep, ok := wgEndpoint("[fd00::2]:51820")
	require.True(t, ok)
	assert.Equal(t, "[fd00::2]:51820", ep.String())
	assert.Len(t, ep.IP, 16)
	ep, ok = wgEndpoint("192.0.2.2:1")
	require.True(t, ok)
	assert.Equal(t, "192.0.2.2:1", ep.String())
	assert.Len(t, ep.IP, 4, "an IPv4 endpoint goes out as sockaddr_in")

	ips, ok := wgAllowedIPs("10.50.2.0/24,fd00:0:0:2::/64,10.50.9.9")
	require.True(t, ok)
	var got []string
	for _, n := range ips {
		got = append(got, n.String())
	}
	assert.Equal(t, []string{"10.50.2.0/24", "fd00:0:0:2::/64", "10.50.9.9/32"}, got)
	assert.Len(t, ips[0].IP, net.IPv4len)
}

// wg's key files: a key and trailing whitespace, or nothing at all (the
// zero key); anything else is wg's to refuse in its words.
func TestWgKeyFile(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(data), 0o600))
		return p
	}
	k, err := wgKeyFile(write("a", key1+"\n"))
	require.NoError(t, err)
	assert.Equal(t, key1, k.String())
	k, err = wgKeyFile(write("b", key1+" \t\r\n\v\f"))
	require.NoError(t, err)
	assert.Equal(t, key1, k.String())
	k, err = wgKeyFile(write("c", ""))
	require.NoError(t, err)
	assert.Equal(t, [32]byte{}, [32]byte(k))
	for name, data := range map[string]string{
		"short": key1[:43], "trailing": key1 + "\nx", "bad": strings.Repeat("!", 44), "blank": "\n",
		"padbits": key1[:42] + "h=", // non-zero padding bits: wg refuses
	} {
		_, err := wgKeyFile(write(name, data))
		assert.Error(t, err, name)
	}
	_, err = wgKeyFile(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist)
	_, err = wgKeyFile(dir)
	assert.Error(t, err, "a directory")
}
