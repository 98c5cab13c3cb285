package leases

import (
	"encoding/base64"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strings"
)

// Shape is the form a backend's BackendData must have, so that a peer
// cannot hand the hooks more than the one value they expect (the
// published recipes expand it unquoted).
type Shape struct {
	Name    string
	pattern *regexp.Regexp // whole-string match
	check   func(string) error
	// identity, when set, says the data names one node (a VTEP MAC, a
	// WireGuard key) and returns its canonical form: two leases with the
	// same identity cannot both be admitted.
	identity func(string) string
}

// Identity returns the node identity data of this shape names, or "" when
// the shape names none (or s is nil).
func (s *Shape) Identity(data string) string {
	if s == nil || s.identity == nil || data == "" {
		return ""
	}
	return s.identity(data)
}

// Check reports why data does not have the shape.
func (s *Shape) Check(data string) error {
	if s.pattern != nil && !s.pattern.MatchString(data) {
		return fmt.Errorf("BackendData %s is not %s", quoteData(data, 60), s.Name)
	}
	if s.check != nil {
		return s.check(data)
	}
	return nil
}

func (s *Shape) String() string { return s.Name }

// The shapes of the presets' BackendData.
var (
	// ShapeMAC is a VTEP: a unicast, non-zero MAC address in the
	// colon-separated form `ip link` prints. The all-zero MAC is the
	// vxlan device's default destination, and a multicast one would take
	// BUM traffic: neither may come from a peer.
	ShapeMAC = &Shape{Name: "a unicast MAC address such as 82:87:fe:a4:a9:55",
		pattern: regexp.MustCompile(`^[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}$`),
		check: func(s string) error {
			mac, err := net.ParseMAC(s)
			switch {
			case err != nil:
				return fmt.Errorf("BackendData: %w", err)
			case mac[0]&1 != 0:
				return fmt.Errorf("BackendData %s is a multicast MAC address", s)
			case slices.Equal(mac, make(net.HardwareAddr, 6)):
				return fmt.Errorf("BackendData %s is the all-zero MAC address", s)
			}
			return nil
		},
		identity: strings.ToLower}
	// ShapeWireguardKey is a base64 (standard, padded) 32-byte key.
	ShapeWireguardKey = &Shape{Name: "a base64 32-byte WireGuard key",
		pattern: regexp.MustCompile(`^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$`),
		check: func(s string) error {
			if b, err := base64.StdEncoding.Strict().DecodeString(s); err != nil || len(b) != 32 {
				return fmt.Errorf("BackendData %s is not a base64 32-byte key", quoteData(s, 60))
			}
			return nil
		},
		identity: func(s string) string { return s }}
	// ShapeEmpty is no BackendData at all (host-gw has no PreStartup).
	ShapeEmpty = &Shape{Name: "empty", pattern: regexp.MustCompile(`^$`)}
)

// Shapes are the named shapes, as presets declare them.
var Shapes = map[string]*Shape{"mac": ShapeMAC, "wireguard-key": ShapeWireguardKey, "empty": ShapeEmpty}

// PatternShape returns a shape from an operator's regular expression
// (RE2 syntax), matched against the whole BackendData.
func PatternShape(expr string) (*Shape, error) {
	if expr == "" {
		return nil, fmt.Errorf("empty pattern")
	}
	re, err := regexp.Compile(`^(?:` + expr + `)$`)
	if err != nil {
		return nil, fmt.Errorf("pattern %q: %w", expr, err)
	}
	name := "matching " + strings.TrimSpace(expr)
	return &Shape{Name: name, pattern: re}, nil
}
