package leases

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"unicode/utf8"
)

// SubnetKey returns flannel's key name for a lease: "10.50.3.0-24", or
// "10.50.3.0-24&fd00:0:0:3::-64" when ipv6 is valid.
func SubnetKey(ipv4, ipv6 netip.Prefix) string {
	k := prefixKey(ipv4)
	if ipv6.IsValid() {
		k += "&" + prefixKey(ipv6)
	}
	return k
}

func prefixKey(p netip.Prefix) string {
	return p.Addr().String() + "-" + strconv.Itoa(p.Bits())
}

// ParseSubnetKey parses a key name written by SubnetKey (or by flanneld).
// The IPv6 prefix is zero when the key has none.
func ParseSubnetKey(s string) (ipv4, ipv6 netip.Prefix, err error) {
	v4, v6, dual := strings.Cut(s, "&")
	if ipv4, err = parsePrefixKey(v4); err != nil {
		return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("subnet key %q: %w", s, err)
	}
	if !ipv4.Addr().Is4() {
		return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("subnet key %q: %s is not IPv4", s, v4)
	}
	if dual {
		if ipv6, err = parsePrefixKey(v6); err != nil {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("subnet key %q: %w", s, err)
		}
		if !ipv6.Addr().Is6() {
			return netip.Prefix{}, netip.Prefix{}, fmt.Errorf("subnet key %q: %s is not IPv6", s, v6)
		}
	}
	return ipv4, ipv6, nil
}

func parsePrefixKey(s string) (netip.Prefix, error) {
	i := strings.LastIndexByte(s, '-')
	if i < 0 {
		return netip.Prefix{}, fmt.Errorf("missing '-' in %q", s)
	}
	addr, err := netip.ParseAddr(s[:i])
	if err != nil {
		return netip.Prefix{}, err
	}
	bits, err := strconv.Atoi(s[i+1:])
	if err != nil || bits < 0 || bits > addr.BitLen() {
		return netip.Prefix{}, fmt.Errorf("bad prefix length in %q", s)
	}
	p := netip.PrefixFrom(addr, bits)
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%s has host bits set", p)
	}
	return p, nil
}

// MaxValueSize bounds a lease value (etcd's default request limit is
// 1.5 MiB; a wireguard key or a VTEP MAC is a few dozen bytes).
const MaxValueSize = 64 << 10

// wireAttrs is flannel's JSON shape (field order matters for byte equality).
type wireAttrs struct {
	PublicIP    string          `json:"PublicIP"`
	PublicIPv6  *string         `json:"PublicIPv6"`
	BackendType string          `json:"BackendType"`
	BackendData json.RawMessage `json:"BackendData,omitempty"`
}

// MarshalAttrs encodes a lease value exactly as flanneld does.
func MarshalAttrs(a Attrs) ([]byte, error) {
	w := wireAttrs{BackendType: a.BackendType}
	if a.PublicIP.IsValid() {
		w.PublicIP = a.PublicIP.String()
	}
	if a.PublicIPv6.IsValid() {
		s := a.PublicIPv6.String()
		w.PublicIPv6 = &s
	}
	if a.BackendData != "" {
		b, err := json.Marshal(a.BackendData)
		if err != nil {
			return nil, fmt.Errorf("encode BackendData: %w", err)
		}
		w.BackendData = b
	}
	// json.Marshal, like flanneld: it escapes <, > and & as \u003c, \u003e
	// and \u0026, so the bytes match flanneld's for any BackendData.
	b, err := json.Marshal(w)
	if err != nil {
		return nil, fmt.Errorf("encode lease: %w", err)
	}
	return b, nil
}

// UnmarshalAttrs decodes a lease value written by flexhook or flanneld.
// BackendData that is a JSON string is unquoted; any other JSON value
// (flanneld's vxlan backend writes an object) is kept as its raw text.
//
// A string that is not valid UTF-8 is kept as its raw JSON text rather
// than decoded (which would silently turn the bad bytes into U+FFFD), so
// that admission sees and refuses it.
//
// Values come from other nodes and are untrusted: one larger than
// MaxValueSize is refused rather than handed to a hook's stdin.
func UnmarshalAttrs(b []byte) (Attrs, error) {
	if len(b) > MaxValueSize {
		return Attrs{}, fmt.Errorf("decode lease: value of %d bytes is larger than %d", len(b), MaxValueSize)
	}
	var w wireAttrs
	if err := json.Unmarshal(b, &w); err != nil {
		return Attrs{}, fmt.Errorf("decode lease: %w", err)
	}
	a := Attrs{BackendType: w.BackendType}
	if a.BackendType == BackendType {
		a.BackendType = BackendType // one string for every lease a store holds
	}
	var err error
	if w.PublicIP != "" {
		if a.PublicIP, err = netip.ParseAddr(w.PublicIP); err != nil {
			return Attrs{}, fmt.Errorf("decode lease: PublicIP: %w", err)
		}
	}
	if w.PublicIPv6 != nil && *w.PublicIPv6 != "" {
		if a.PublicIPv6, err = netip.ParseAddr(*w.PublicIPv6); err != nil {
			return Attrs{}, fmt.Errorf("decode lease: PublicIPv6: %w", err)
		}
	}
	if raw := bytes.TrimSpace(w.BackendData); len(raw) > 0 && !bytes.Equal(raw, []byte("null")) {
		if raw[0] == '"' && utf8.Valid(raw) {
			if err := json.Unmarshal(raw, &a.BackendData); err != nil {
				return Attrs{}, fmt.Errorf("decode lease: BackendData: %w", err)
			}
		} else {
			a.BackendData = string(raw)
		}
	}
	return a, nil
}

// Decode turns one store entry, its key name (without the subnets prefix)
// and value, into a Lease. It never fails: an entry that is not a lease
// comes back with Invalid and Problem set (and Subnet when the key
// parsed), so that stores list it and the engine refuses it with its
// reason. A key must be canonical, exactly as SubnetKey writes it, so that
// one subnet has one key (10.50.3.0-024 is not 10.50.3.0-24).
func Decode(key string, value []byte) Lease {
	l := DecodeKey(key)
	if l.Invalid != "" {
		return l
	}
	var err error
	if l.Attrs, err = UnmarshalAttrs(value); err != nil {
		l.Invalid, l.Problem = ReasonBadValue, err.Error()
	}
	return l
}

// DecodeKey is the key half of Decode: a Lease with Key and, when the key
// is a canonical subnet key, Subnet and IPv6Subnet; otherwise Invalid is
// ReasonBadKey with Problem saying why.
func DecodeKey(key string) Lease {
	l := Lease{Key: key}
	v4, v6, err := ParseSubnetKey(key)
	if err != nil {
		l.Invalid, l.Problem = ReasonBadKey, err.Error()
		return l
	}
	l.Subnet, l.IPv6Subnet = v4, v6
	if canon := SubnetKey(v4, v6); canon != key {
		l.Invalid, l.Problem = ReasonBadKey, "key is not canonical, want "+canon
	}
	return l
}
