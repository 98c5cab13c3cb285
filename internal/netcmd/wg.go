package netcmd

import (
	"encoding/base64"
	"path/filepath"
)

// parseWg reads wireguard-tools' `wg set IFACE [listen-port P] [fwmark
// M] [private-key FILE] [peer KEY [remove] [endpoint E] [allowed-ips L]
// [persistent-keepalive N] [preshared-key FILE]]...`. Its objects are the
// peers it names (remove: Del, else Set), or the device itself when it
// names none. wg set is never fast.
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
		case t == "remove" && inPeer:
			removes++
			sets--
		case !inPeer && (t == "listen-port" || t == "fwmark" || t == "private-key"),
			inPeer && (t == "endpoint" || t == "allowed-ips" || t == "persistent-keepalive" || t == "preshared-key"):
			if w.done() {
				return nil, ErrNotRead
			}
			w.next()
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
	return c, nil
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
