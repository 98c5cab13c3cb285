package hooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"

	"mvdan.cc/sh/v3/syntax"

	"github.com/flexhook/flexhook/internal/ipmath"
)

// ExtensionType is the only Backend.Type flexhook runs.
const ExtensionType = "extension"

// presetTypes maps flannel backend types to the flexhook preset that
// reproduces them. hooks must not import presets, so the names are kept in
// step by the presets tests.
var presetTypes = []string{"host-gw", "vxlan", "wireguard"}

// topKeys are flannel's net-conf.json keys flexhook reads, in flannel's
// spelling. encoding/json matches them case-insensitively, as flannel does.
var topKeys = []string{
	"Network", "SubnetLen", "SubnetMin", "SubnetMax",
	"EnableIPv4", "EnableIPv6",
	"IPv6Network", "IPv6SubnetLen", "IPv6SubnetMin", "IPv6SubnetMax",
	"Backend",
}

// ignoredKeys are flannel keys flexhook accepts and does not use.
var ignoredKeys = []string{"EnableNFTables"}

// backendKeys are the keys allowed in Backend: Type, the five hooks, MTU
// and DirectRouting (flannel's vxlan keys).
var backendKeys = []string{
	"Type",
	PreStartup.String(), PostStartup.String(),
	SubnetAdd.String(), SubnetRemove.String(), Shutdown.String(),
	"MTU", "DirectRouting",
}

// Load reads and parses the net-conf.json at path. Errors about the
// content are *Error and carry the file's base name; an unreadable file is
// reported as the wrapped os error.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load config: %w", err)
	}
	return parse(data, path)
}

// Parse parses and validates a flannel net-conf.json for the extension
// backend, applies flannel's defaults and parses every hook into a shell
// AST. Every error it returns is an *Error; positions in the JSON name the
// file "net-conf.json".
func Parse(data []byte) (*Config, error) {
	return parse(data, DefaultFile)
}

// member is one key of a JSON object with its raw value and the byte
// offset of that value in the whole document.
type member struct {
	key string
	raw json.RawMessage
	off int
}

type parser struct {
	data []byte
	file string
}

func parse(data []byte, file string) (*Config, error) {
	p := &parser{data: data, file: file}
	if err := json.Unmarshal(data, new(json.RawMessage)); err != nil {
		return nil, p.jsonErr(err)
	}
	top, err := p.topLevel()
	if err != nil {
		return nil, err
	}
	fields := map[string]member{}
	for _, m := range top {
		if k, ok := canonical(m.key, topKeys); ok {
			fields[k] = m // the last one wins, as in encoding/json
		}
	}

	cfg := &Config{EnableIPv4: true, Raw: bytes.Clone(data)}
	if err := p.boolField(fields, "EnableIPv4", &cfg.EnableIPv4); err != nil {
		return nil, err
	}
	if err := p.boolField(fields, "EnableIPv6", &cfg.EnableIPv6); err != nil {
		return nil, err
	}
	if !cfg.EnableIPv4 {
		return nil, &Error{Field: "EnableIPv4", Msg: "false is not supported: flexhook needs IPv4, " +
			"a node's IPv4 PublicIP identifies its lease"}
	}
	v4, err := p.family(fields, ipv4, true)
	if err != nil {
		return nil, err
	}
	cfg.Network, cfg.SubnetLen, cfg.SubnetMin, cfg.SubnetMax = v4.network, v4.subnetLen, v4.min, v4.max
	v6, err := p.family(fields, ipv6, cfg.EnableIPv6)
	if err != nil {
		return nil, err
	}
	cfg.IPv6Network, cfg.IPv6SubnetLen, cfg.IPv6SubnetMin, cfg.IPv6SubnetMax = v6.network, v6.subnetLen, v6.min, v6.max

	if err := p.backend(fields, &cfg.Backend); err != nil {
		return nil, err
	}
	return cfg, nil
}

// canonical returns the known key that key stands for: an exact match, or
// else a case-insensitive one, as encoding/json matches struct fields.
func canonical(key string, known []string) (string, bool) {
	for _, k := range known {
		if k == key {
			return k, true
		}
	}
	for _, k := range known {
		if strings.EqualFold(k, key) {
			return k, true
		}
	}
	return "", false
}

func (p *parser) jsonErr(err error) *Error {
	e := &Error{File: p.file, Msg: err.Error(), Err: err}
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		off := int(syn.Offset)
		if off > 0 && off < len(p.data) || off == len(p.data) && !strings.Contains(syn.Error(), "unexpected end") {
			off-- // Offset counts the offending byte itself.
		}
		e.Line, e.Col = lineCol(p.data, off)
	case errors.As(err, &typ):
		e.Line, e.Col = lineCol(p.data, int(typ.Offset))
	}
	return e
}

// topLevel returns the members of the document's top-level object.
func (p *parser) topLevel() ([]member, error) {
	start := len(p.data) - len(bytes.TrimLeft(p.data, jsonSpace))
	return p.object("", bytes.TrimRight(p.data[start:], jsonSpace), start)
}

const jsonSpace = " \t\r\n"

// at returns an error positioned at the value of m.
func (p *parser) at(m member, field, msg string) *Error {
	line, col := lineCol(p.data, m.off)
	return &Error{File: p.file, Line: line, Col: col, Field: field, Msg: msg}
}

func jsonKind(raw json.RawMessage) string {
	switch c := raw[0]; {
	case c == '"':
		return "string"
	case c == '{':
		return "object"
	case c == '[':
		return "array"
	case c == 't' || c == 'f':
		return "boolean"
	case c == 'n':
		return "null"
	}
	return "number"
}

// object returns the members of the JSON object raw, which starts at byte
// offset base of the document.
func (p *parser) object(field string, raw json.RawMessage, base int) ([]member, error) {
	if kind := jsonKind(raw); kind != "object" {
		line, col := lineCol(p.data, base)
		e := &Error{File: p.file, Line: line, Col: col, Field: field, Msg: "must be a JSON object, got " + kind}
		if field == "" {
			e.Msg = "the config " + e.Msg
		}
		return nil, e
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil {
		return nil, p.jsonErr(err)
	}
	var out []member
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, p.jsonErr(err)
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, p.jsonErr(err)
		}
		out = append(out, member{key: key, raw: v, off: base + int(dec.InputOffset()) - len(v)})
	}
	return out, nil
}

// str decodes a JSON string member; null counts as absent.
func (p *parser) str(m member, field string) (s string, ok bool, err error) {
	switch jsonKind(m.raw) {
	case "null":
		return "", false, nil
	case "string":
		if err := json.Unmarshal(m.raw, &s); err != nil {
			return "", false, p.at(m, field, err.Error())
		}
		return s, true, nil
	}
	return "", false, p.at(m, field, "must be a JSON string, got "+jsonKind(m.raw))
}

func (p *parser) strField(f map[string]member, field string) (string, bool, error) {
	m, ok := f[field]
	if !ok {
		return "", false, nil
	}
	return p.str(m, field)
}

func (p *parser) boolField(f map[string]member, field string, dst *bool) error {
	m, ok := f[field]
	if !ok || jsonKind(m.raw) == "null" {
		return nil
	}
	if jsonKind(m.raw) != "boolean" {
		return p.at(m, field, "must be true or false, got "+jsonKind(m.raw))
	}
	*dst = m.raw[0] == 't'
	return nil
}

func (p *parser) intField(f map[string]member, field string) (int, error) {
	m, ok := f[field]
	if !ok || jsonKind(m.raw) == "null" {
		return 0, nil
	}
	var n int
	if jsonKind(m.raw) != "number" || json.Unmarshal(m.raw, &n) != nil {
		return 0, p.at(m, field, fmt.Sprintf("must be an integer, got %s %s", jsonKind(m.raw), m.raw))
	}
	return n, nil
}

// ipFamily holds the field names and limits of one address family.
type ipFamily struct {
	v6                              bool
	network, subnetLen, min, max    string
	bits, maxLen, bigPrefix, defLen int
	example                         string
}

var (
	ipv4 = ipFamily{false, "Network", "SubnetLen", "SubnetMin", "SubnetMax", 32, 30, 22, 24, "10.50.0.0/16"}
	ipv6 = ipFamily{true, "IPv6Network", "IPv6SubnetLen", "IPv6SubnetMin", "IPv6SubnetMax", 128, 126, 62, 64, "fd50::/56"}
)

type subnetRange struct {
	network   netip.Prefix
	subnetLen int
	min, max  netip.Addr
}

// family reads and validates one address family's fields with flannel's
// rules and defaults. When the family is disabled only the JSON types are
// checked and the zero range is returned.
func (p *parser) family(f map[string]member, fam ipFamily, enabled bool) (subnetRange, error) {
	var r subnetRange
	netS, hasNet, err := p.strField(f, fam.network)
	if err != nil {
		return r, err
	}
	slen, err := p.intField(f, fam.subnetLen)
	if err != nil {
		return r, err
	}
	minS, hasMin, err := p.strField(f, fam.min)
	if err != nil {
		return r, err
	}
	maxS, hasMax, err := p.strField(f, fam.max)
	if err != nil || !enabled {
		return r, err
	}
	if !hasNet || netS == "" {
		when := "EnableIPv4"
		if fam.v6 {
			when = "EnableIPv6"
		}
		return r, &Error{Field: fam.network, Msg: fmt.Sprintf("missing; it is required when %s is true (e.g. %q)", when, fam.example)}
	}
	if r.network, err = fam.parseNetwork(netS); err != nil {
		return r, err
	}
	if r.subnetLen, err = fam.subnetLenIn(r.network, slen); err != nil {
		return r, err
	}
	r.min = ipmath.NthSubnet(r.network.Addr(), r.subnetLen, 1) // skip the first subnet, as flannel does
	r.max = ipmath.LastSubnet(r.network, r.subnetLen)
	if hasMin && minS != "" {
		if r.min, err = fam.bound(fam.min, minS, r); err != nil {
			return r, err
		}
	}
	if hasMax && maxS != "" {
		if r.max, err = fam.bound(fam.max, maxS, r); err != nil {
			return r, err
		}
	}
	if r.min.Compare(r.max) > 0 {
		return r, &Error{Field: fam.min, Msg: fmt.Sprintf("%s is after %s %s", r.min, fam.max, r.max)}
	}
	return r, nil
}

// parseNetwork parses the family's Network field, masked as flannel does
// (net.ParseCIDR), and checks that it holds at least four subnets.
func (fam ipFamily) parseNetwork(s string) (netip.Prefix, error) {
	n, err := netip.ParsePrefix(s)
	if err != nil {
		return n, &Error{Field: fam.network, Msg: fmt.Sprintf("%q is not a CIDR prefix such as %s", s, fam.example), Err: err}
	}
	if n.Addr().Is6() != fam.v6 {
		return n, &Error{Field: fam.network, Msg: fmt.Sprintf("%s is not an %s prefix", n, famName(fam.v6))}
	}
	n = n.Masked()
	if n.Bits() > fam.maxLen-2 {
		return n, &Error{Field: fam.network, Msg: fmt.Sprintf("%s is too small: it must hold at least four subnets "+
			"of /%d or larger, so its prefix must be /%d or shorter", n, fam.maxLen, fam.maxLen-2)}
	}
	return n, nil
}

// subnetLenIn checks SubnetLen against network, applying flannel's
// default when it is 0: /24 (/64), or two bits below a small network.
func (fam ipFamily) subnetLenIn(n netip.Prefix, slen int) (int, error) {
	switch {
	case slen == 0:
		if n.Bits() > fam.bigPrefix {
			return n.Bits() + 2, nil
		}
		return fam.defLen, nil
	case slen < 0:
		return 0, &Error{Field: fam.subnetLen, Msg: fmt.Sprintf("%d is negative", slen)}
	case slen > fam.maxLen:
		return 0, &Error{Field: fam.subnetLen, Msg: fmt.Sprintf("%d is larger than %d", slen, fam.maxLen)}
	case slen < n.Bits()+2:
		return 0, &Error{Field: fam.subnetLen, Msg: fmt.Sprintf("%d leaves room for fewer than four subnets "+
			"in %s %s; it must be at least %d", slen, fam.network, n, n.Bits()+2)}
	}
	return slen, nil
}

// bound parses SubnetMin or SubnetMax (field) of r's family: an address of
// the family inside r.network, aligned on r.subnetLen.
func (fam ipFamily) bound(field, s string, r subnetRange) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return a, &Error{Field: field, Msg: fmt.Sprintf("%q is not an IP address", s), Err: err}
	}
	a = a.Unmap()
	switch {
	case a.Is6() != fam.v6:
		return a, &Error{Field: field, Msg: fmt.Sprintf("%s is not an %s address", a, famName(fam.v6))}
	case !r.network.Contains(a):
		return a, &Error{Field: field, Msg: fmt.Sprintf("%s is not inside %s %s", a, fam.network, r.network)}
	}
	if start := netip.PrefixFrom(a, r.subnetLen).Masked().Addr(); start != a {
		return a, &Error{Field: field, Msg: fmt.Sprintf("%s is not aligned to %s /%d (the subnet holding it starts at %s)",
			a, fam.subnetLen, r.subnetLen, start)}
	}
	return a, nil
}

func famName(v6 bool) string {
	if v6 {
		return "IPv6"
	}
	return "IPv4"
}

func (p *parser) backend(f map[string]member, be *Backend) error {
	bm, ok := f["Backend"]
	if !ok || jsonKind(bm.raw) == "null" {
		return &Error{Field: "Backend", Msg: `missing; flexhook needs a Backend of Type "extension" with hook commands`}
	}
	members, err := p.object("Backend", bm.raw, bm.off)
	if err != nil {
		return err
	}
	for k := range be.Hooks {
		be.Hooks[k] = Hook{Kind: Kind(k)}
	}

	// Type first: a config for another backend has keys of its own, and the
	// preset to use is the more useful message.
	var typ member
	hasType := false
	for _, m := range members {
		if m.key == "Type" {
			typ, hasType = m, true
		}
	}
	if hasType {
		t, _, err := p.str(typ, "Backend.Type")
		if err != nil {
			return err
		}
		if t != "" && t != ExtensionType {
			return &Error{Field: "Backend.Type", Msg: typeAdvice(t)}
		}
		be.Type = t
	}

	for _, m := range members {
		if slices.Contains(backendKeys, m.key) {
			continue
		}
		msg := fmt.Sprintf("unknown key %q", m.key)
		if c, ok := closest(m.key, backendKeys); ok {
			msg += fmt.Sprintf(" (did you mean %q?)", c)
		} else {
			msg += " (known keys: " + strings.Join(backendKeys, ", ") + ")"
		}
		return &Error{Field: "Backend", Msg: msg}
	}
	if be.Type == "" {
		return &Error{Field: "Backend.Type", Msg: `missing; set "Type": "extension"`}
	}

	fields := map[string]member{} // by "Backend.KEY", the last one winning as in encoding/json
	for _, m := range members {
		fields["Backend."+m.key] = m
	}
	if err := p.mtu(fields, be); err != nil {
		return err
	}
	if err := p.boolField(fields, "Backend.DirectRouting", &be.DirectRouting); err != nil {
		return err
	}
	for _, m := range members {
		for _, k := range Kinds {
			if m.key != k.String() {
				continue
			}
			src, _, err := p.str(m, "Backend."+m.key)
			if err != nil {
				return err
			}
			h, err := ParseHook(k, src)
			if err != nil {
				return err
			}
			be.Hooks[k] = h // the last one wins, as in encoding/json
		}
	}
	return nil
}

// MTU limits: IPv4's minimum (RFC 791) and the most a link carries.
const (
	minMTU = 68
	maxMTU = 65535
)

// mtu reads Backend.MTU (null or absent: 0) from the Backend's fields.
func (p *parser) mtu(f map[string]member, be *Backend) error {
	n, err := p.intField(f, "Backend.MTU")
	if err != nil || n == 0 {
		return err
	}
	if n < minMTU || n > maxMTU {
		return p.at(f["Backend.MTU"], "Backend.MTU", fmt.Sprintf("%d is out of range %d..%d", n, minMTU, maxMTU))
	}
	be.MTU = n
	return nil
}

// typeAdvice explains what to use instead of Backend.Type t.
func typeAdvice(t string) string {
	msg := fmt.Sprintf("%q is not supported; flexhook runs only %q backends", t, ExtensionType)
	if strings.EqualFold(t, ExtensionType) {
		return msg + ` (the type is case-sensitive: write "extension")`
	}
	for _, name := range presetTypes {
		if strings.EqualFold(t, name) {
			return msg + fmt.Sprintf(": use --preset %s for the documented %s recipe", name, name)
		}
	}
	return msg + ": write its hooks as an extension backend, or start from a preset (--preset NAME, one of " +
		strings.Join(presetTypes, ", ") + ")"
}

// ParseHook parses one hook command with the Bash variant of the shell
// parser. An empty or blank src gives a Hook with Source "" and no File. A
// syntax error is an *Error such as "SubnetAddCommand:1:42: <message>",
// with Line and Col inside src.
func ParseHook(k Kind, src string) (Hook, error) {
	h := Hook{Kind: k}
	if strings.TrimSpace(src) == "" {
		return h, nil
	}
	f, err := syntax.NewParser().Parse(strings.NewReader(src), "")
	if err != nil {
		e := &Error{Field: k.String(), Msg: err.Error(), Err: err}
		var pe syntax.ParseError
		var le syntax.LangError
		switch {
		case errors.As(err, &pe):
			e.Line, e.Col, e.Msg = int(pe.Pos.Line()), int(pe.Pos.Col()), pe.Text
		case errors.As(err, &le):
			e.Line, e.Col = int(le.Pos.Line()), int(le.Pos.Col())
			e.Msg = strings.TrimPrefix(le.Error(), le.Pos.String()+": ")
		}
		return h, e
	}
	f.Name = k.String()
	h.Source, h.File = src, f
	return h, nil
}
