package netcmd

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// WireGuard configures WireGuard devices by name, through the kernel's
// wireguard generic netlink family or wireguard-go's UAPI socket
// (*wgctrl.Client is one).
type WireGuard interface {
	ConfigureDevice(name string, cfg wgtypes.Config) error
}

// uapiDir is where wireguard-go serves its UAPI sockets, NAME.sock, as
// wg and wgctrl look for them (/var/run is /run on Debian).
const uapiDir = "/var/run/wireguard"

// parseWg reads wireguard-tools' `wg set IFACE [listen-port P] [fwmark
// M] [private-key FILE] [peer KEY [remove] [endpoint E] [allowed-ips L]
// [persistent-keepalive N] [preshared-key FILE]]...`. Its objects are the
// peers it names (remove: Del, else Set), or the device itself when it
// names none.
//
// It is fast (wgctrl sends what wg sends) for peers given as `peer KEY
// remove` or `peer KEY [endpoint IP:PORT|[IPv6]:PORT] [allowed-ips L]`,
// and for the device's `listen-port P` and `private-key FILE`, where every
// value is one wg reads to the same bytes without a word: numeric
// addresses in their canonical form, allowed IPs with no host bits and no
// spaces, ports in plain decimal. Hostnames, fwmark, keepalives, preshared
// keys and anything else are the real wg's.
func parseWg(argv []string) (*Cmd, error) {
	if filepath.Base(argv[0]) != "wg" || len(argv) < 3 || argv[1] != "set" {
		return nil, ErrNotRead
	}
	dev, ok := devName(argv[2])
	if !ok {
		return nil, ErrNotRead
	}
	w := &words{argv[3:]}
	var peers []Object
	removes, sets := 0, 0
	inPeer := false
	set := &wgSet{dev: dev}
	fast := !w.done() // a bare `wg set IFACE` is wg's usage error
	for !w.done() {
		t := w.next()
		switch {
		case t == "peer":
			key := w.next()
			if !wgKey(key) {
				return nil, ErrNotRead
			}
			peers = append(peers, PeerObject(key, dev))
			inPeer = true
			sets++
			fast = fast && set.peer(key)
		case t == "remove" && inPeer:
			removes++
			sets--
			fast = fast && set.remove()
		case !inPeer && (t == "listen-port" || t == "fwmark" || t == "private-key"),
			inPeer && (t == "endpoint" || t == "allowed-ips" || t == "persistent-keepalive" || t == "preshared-key"):
			if w.done() {
				return nil, ErrNotRead
			}
			fast = fast && set.option(t, w.next())
		default:
			return nil, ErrNotRead
		}
	}
	c := &Cmd{Verb: Set, verbAt: -1}
	switch {
	case len(peers) == 0:
		c.Objects = []Object{LinkObject(dev)}
	case removes > 0 && sets > 0:
		return nil, ErrNotRead // one command both removing and setting peers
	case removes > 0:
		c.Verb, c.Objects = Del, peers
	default:
		c.Objects = peers
	}
	if fast {
		c.Fast, c.wgOp = true, set.apply
	}
	return c, nil
}

// wgSet is a `wg set` the fast path does: the device's listen port and
// private key file, and its peers in order.
type wgSet struct {
	dev     string
	port    *int
	keyFile string
	peers   []wgtypes.PeerConfig
	// valued marks the peers given a value (endpoint, allowed-ips):
	// remove must follow the key directly, with nothing after it.
	valued []bool
}

// peer starts a peer; false when it cannot be fast.
func (s *wgSet) peer(key string) bool {
	k, err := wgtypes.ParseKey(key)
	if err != nil {
		return false
	}
	s.peers = append(s.peers, wgtypes.PeerConfig{PublicKey: k})
	s.valued = append(s.valued, false)
	return true
}

// remove marks the current peer for removal; false unless nothing else
// was given for it (wg would still send those values to the kernel).
func (s *wgSet) remove() bool {
	i := len(s.peers) - 1
	if s.valued[i] || s.peers[i].Remove {
		return false
	}
	s.peers[i].Remove = true
	return true
}

// option reads one keyword's value as wg does; false when the form is
// not one the fast path reproduces.
func (s *wgSet) option(key, value string) bool {
	if len(s.peers) == 0 {
		switch key {
		case "listen-port":
			port, ok := wgPort(value)
			if !ok || s.port != nil {
				return false
			}
			s.port = &port
			return true
		case "private-key":
			if value == "" || s.keyFile != "" {
				return false
			}
			s.keyFile = value
			return true
		}
		return false // fwmark
	}
	i := len(s.peers) - 1
	p := &s.peers[i]
	if p.Remove {
		return false
	}
	s.valued[i] = true
	switch key {
	case "endpoint":
		ep, ok := wgEndpoint(value)
		if !ok {
			return false
		}
		p.Endpoint = ep // wg keeps the last one given
		return true
	case "allowed-ips":
		ips, ok := wgAllowedIPs(value)
		if !ok {
			return false
		}
		// wg appends a second list to the first, both replacing the
		// peer's.
		p.ReplaceAllowedIPs = true
		p.AllowedIPs = append(p.AllowedIPs, ips...)
		return true
	}
	return false // persistent-keepalive, preshared-key
}

// apply configures the device through e's WireGuard. A relative key file
// is read from e.Dir, as wg reads it from its working directory.
func (s *wgSet) apply(e Env) error {
	cfg := wgtypes.Config{ListenPort: s.port, Peers: s.peers}
	if s.keyFile != "" {
		path := s.keyFile
		if !filepath.IsAbs(path) {
			path = filepath.Join(e.Dir, path)
		}
		k, err := wgKeyFile(path)
		if err != nil {
			return err
		}
		cfg.PrivateKey = &k
	}
	if err := s.sameDevice(e); err != nil {
		return err
	}
	wg, err := e.WireGuard()
	if err != nil {
		return err
	}
	if err := wg.ConfigureDevice(s.dev, cfg); err != nil {
		return fmt.Errorf("configure %s: %w", s.dev, err)
	}
	return nil
}

// sameDevice refuses the one case where wg and wgctrl would configure
// different devices: wg prefers a UAPI socket of the name, wgctrl a
// kernel WireGuard link of the name, and both exist.
func (s *wgSet) sameDevice(e Env) error {
	if !isSocket(filepath.Join(uapiDir, s.dev+".sock")) {
		return nil // both go to the kernel
	}
	h, err := e.Route()
	if err != nil {
		return err
	}
	link, err := h.LinkByName(s.dev)
	var notFound netlink.LinkNotFoundError
	switch {
	case errors.As(err, &notFound):
		return nil
	case err != nil:
		return err
	case link.Type() == "wireguard":
		return fmt.Errorf("%s: a kernel link and a UAPI socket: %w", s.dev, ErrNotRead)
	}
	return nil
}

func isSocket(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.Mode()&os.ModeSocket != 0
}

// wgKeyFile reads a key file as wg's parse_keyfile does, for the files
// it reads without complaint: empty (the zero key: none), or a key and
// nothing but whitespace after it.
func wgKeyFile(path string) (wgtypes.Key, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return wgtypes.Key{}, err
	}
	if len(b) == 0 {
		return wgtypes.Key{}, nil
	}
	if len(b) < 44 || strings.TrimLeft(string(b[44:]), " \t\n\v\f\r") != "" || !wgKey(string(b[:44])) {
		return wgtypes.Key{}, fmt.Errorf("key file %s: %w", path, ErrNotRead)
	}
	return wgtypes.ParseKey(string(b[:44]))
}

// wgPort reads a port as wg's getaddrinfo does for plain decimal: 1 to
// 65535, no sign, no leading zero (0 picks a random port: the real wg's).
func wgPort(s string) (int, bool) {
	if s == "" || s[0] == '0' || len(s) > 5 || strings.Trim(s, "0123456789") != "" {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil && n <= 65535
}

// wgEndpoint reads IPv4:PORT or [IPv6]:PORT with numeric, canonical
// addresses; hostnames and other spellings are wg's to resolve.
func wgEndpoint(s string) (*net.UDPAddr, bool) {
	var host, port string
	bracket := strings.HasPrefix(s, "[")
	if bracket {
		var found bool
		if host, port, found = strings.Cut(s[1:], "]:"); !found {
			return nil, false
		}
	} else {
		i := strings.LastIndexByte(s, ':')
		if i < 0 {
			return nil, false
		}
		host, port = s[:i], s[i+1:]
	}
	a, ok := addr(host, 0)
	if !ok || a.Is4() == bracket {
		return nil, false
	}
	p, ok := wgPort(port)
	if !ok {
		return nil, false
	}
	return &net.UDPAddr{IP: a.AsSlice(), Port: p}, true
}

// wgAllowedIPs reads wg's comma-separated list of ADDR[/LEN]: an empty
// list clears the peer's; entries with host bits set (wg warns) or in
// a spelling netip does not read are the real wg's.
func wgAllowedIPs(s string) ([]net.IPNet, bool) {
	if s == "" {
		return nil, true
	}
	if strings.ContainsAny(s, " \t\n\v\f\r") {
		return nil, false // wg strips them: its form
	}
	var out []net.IPNet
	for e := range strings.SplitSeq(s, ",") {
		p, ok := prefix(e, 0)
		if !ok || p != p.Masked() {
			return nil, false
		}
		out = append(out, net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())})
	}
	return out, true
}

// wgKey reports whether s is a WireGuard key as wg reads it: 32 bytes in
// standard base64 (44 characters, one '=').
func wgKey(s string) bool {
	if len(s) != 44 {
		return false
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	return err == nil && len(b) == 32
}
