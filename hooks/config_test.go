package hooks

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"mvdan.cc/sh/v3/syntax"
)

// conf builds a config with the given top-level members (JSON text
// without braces) and an extension Backend with the given members.
func conf(top, backend string) []byte {
	if top != "" {
		top += ", "
	}
	if backend != "" {
		backend = ", " + backend
	}
	return []byte(`{` + top + `"Backend": {"Type": "extension"` + backend + `}}`)
}

func TestParseNetworkDefaults(t *testing.T) {
	tests := []struct {
		top      string
		net      string
		len      int
		min, max string
	}{
		{`"Network": "10.50.0.0/16"`, "10.50.0.0/16", 24, "10.50.1.0", "10.50.255.0"},
		{`"Network": "10.50.0.0/22"`, "10.50.0.0/22", 24, "10.50.1.0", "10.50.3.0"},
		{`"Network": "10.50.0.0/23"`, "10.50.0.0/23", 25, "10.50.0.128", "10.50.1.128"},
		{`"Network": "10.50.0.0/28"`, "10.50.0.0/28", 30, "10.50.0.4", "10.50.0.12"},
		{`"Network": "10.50.1.7/16"`, "10.50.0.0/16", 24, "10.50.1.0", "10.50.255.0"},
		{`"Network": "10.50.0.0/16", "SubnetLen": 20`, "10.50.0.0/16", 20, "10.50.16.0", "10.50.240.0"},
		{`"Network": "10.50.0.0/16", "SubnetLen": 0`, "10.50.0.0/16", 24, "10.50.1.0", "10.50.255.0"},
		{`"Network": "10.50.0.0/16", "SubnetLen": 18`, "10.50.0.0/16", 18, "10.50.64.0", "10.50.192.0"},
		{`"Network": "10.50.0.0/16", "SubnetMin": "10.50.10.0", "SubnetMax": "10.50.20.0"`, "10.50.0.0/16", 24, "10.50.10.0", "10.50.20.0"},
		{`"Network": "10.50.0.0/16", "SubnetMin": "10.50.7.0", "SubnetMax": "10.50.7.0"`, "10.50.0.0/16", 24, "10.50.7.0", "10.50.7.0"},
		{`"Network": "10.50.0.0/16", "SubnetMin": null, "SubnetLen": null`, "10.50.0.0/16", 24, "10.50.1.0", "10.50.255.0"},
		{`"network": "10.60.0.0/16"`, "10.60.0.0/16", 24, "10.60.1.0", "10.60.255.0"}, // case-insensitive, as flannel
		{`"Network": "10.60.0.0/16", "Network": "10.70.0.0/16"`, "10.70.0.0/16", 24, "10.70.1.0", "10.70.255.0"},
	}
	for _, tt := range tests {
		t.Run(tt.top, func(t *testing.T) {
			cfg, err := Parse(conf(tt.top, ""))
			if err != nil {
				t.Fatal(err)
			}
			got := []string{cfg.Network.String(), cfg.SubnetMin.String(), cfg.SubnetMax.String()}
			want := []string{tt.net, tt.min, tt.max}
			if strings.Join(got, " ") != strings.Join(want, " ") || cfg.SubnetLen != tt.len {
				t.Errorf("got %v /%d, want %v /%d", got, cfg.SubnetLen, want, tt.len)
			}
			if err := cfg.Range.Validate(); err != nil || cfg.Range.DualStack() {
				t.Errorf("the parsed range is not what a store allocates from: %v (dual stack %v)", err, cfg.Range.DualStack())
			}
			if !cfg.EnableIPv4 || cfg.EnableIPv6 || cfg.IPv6Network.IsValid() {
				t.Errorf("EnableIPv4=%v EnableIPv6=%v IPv6Network=%v", cfg.EnableIPv4, cfg.EnableIPv6, cfg.IPv6Network)
			}
		})
	}
}

func TestParseIPv6Defaults(t *testing.T) {
	tests := []struct {
		top      string
		net      string
		len      int
		min, max string
	}{
		{`"IPv6Network": "fd50::/56"`, "fd50::/56", 64, "fd50:0:0:1::", "fd50:0:0:ff::"},
		{`"IPv6Network": "fd50::/62"`, "fd50::/62", 64, "fd50:0:0:1::", "fd50:0:0:3::"},
		{`"IPv6Network": "fd50::/64"`, "fd50::/64", 66, "fd50::4000:0:0:0", "fd50::c000:0:0:0"},
		{`"IPv6Network": "fd50::/124"`, "fd50::/124", 126, "fd50::4", "fd50::c"},
		{`"IPv6Network": "fd50::/48", "IPv6SubnetLen": 56, "IPv6SubnetMin": "fd50:0:0:200::"`, "fd50::/48", 56, "fd50:0:0:200::", "fd50:0:0:ff00::"},
	}
	for _, tt := range tests {
		t.Run(tt.top, func(t *testing.T) {
			cfg, err := Parse(conf(`"Network": "10.50.0.0/16", "EnableIPv6": true, `+tt.top, ""))
			if err != nil {
				t.Fatal(err)
			}
			got := []string{cfg.IPv6Network.String(), cfg.IPv6SubnetMin.String(), cfg.IPv6SubnetMax.String()}
			want := []string{tt.net, tt.min, tt.max}
			if strings.Join(got, " ") != strings.Join(want, " ") || cfg.IPv6SubnetLen != tt.len {
				t.Errorf("got %v /%d, want %v /%d", got, cfg.IPv6SubnetLen, want, tt.len)
			}
			if err := cfg.Range.Validate(); err != nil || !cfg.Range.DualStack() {
				t.Errorf("the parsed range is not what a store allocates from: %v (dual stack %v)", err, cfg.Range.DualStack())
			}
		})
	}
}

func TestParseBackendMTU(t *testing.T) {
	for _, tt := range []struct {
		backend string
		want    int
	}{
		{``, 0},
		{`"MTU": null`, 0},
		{`"MTU": 0`, 0},
		{`"MTU": 1400`, 1400},
		{`"MTU": 68`, 68},
		{`"MTU": 9000`, 9000},
	} {
		cfg, err := Parse(conf(`"Network": "10.50.0.0/16"`, tt.backend))
		if err != nil {
			t.Fatalf("%s: %v", tt.backend, err)
		}
		if cfg.Backend.MTU != tt.want {
			t.Errorf("%s: MTU %d, want %d", tt.backend, cfg.Backend.MTU, tt.want)
		}
	}
}

func TestParseBackendDirectRouting(t *testing.T) {
	for _, tt := range []struct {
		backend string
		want    bool
		err     string
	}{
		{``, false, ""},
		{`"DirectRouting": null`, false, ""},
		{`"DirectRouting": false`, false, ""},
		{`"DirectRouting": true`, true, ""},
		{`"DirectRouting": "true"`, false, "Backend.DirectRouting: must be true or false, got string"},
	} {
		cfg, err := Parse(conf(`"Network": "10.50.0.0/16"`, tt.backend))
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error %v, want %q", tt.backend, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tt.backend, err)
		}
		if cfg.Backend.DirectRouting != tt.want {
			t.Errorf("%s: DirectRouting %v, want %v", tt.backend, cfg.Backend.DirectRouting, tt.want)
		}
	}
}

func TestParseIPv6DisabledIsIgnored(t *testing.T) {
	cfg, err := Parse(conf(`"Network": "10.50.0.0/16", "IPv6Network": "fd50::/127"`, ""))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.IPv6Network.IsValid() || cfg.IPv6SubnetLen != 0 {
		t.Errorf("IPv6 fields filled while disabled: %v /%d", cfg.IPv6Network, cfg.IPv6SubnetLen)
	}
	if _, err := Parse(conf(`"Network": "10.50.0.0/16", "IPv6Network": 6`, "")); err == nil {
		t.Error("a number for IPv6Network was accepted")
	}
}

func TestParseErrors(t *testing.T) {
	const n = `"Network": "10.50.0.0/16"`
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"trailing comma", "{\n  \"Network\": \"10.50.0.0/16\",\n  \"Backend\": {\"Type\": \"extension\",}\n}",
			`net-conf.json:3:35: invalid character '}' looking for beginning of object key string`},
		{"empty", ``, `net-conf.json:1:1: unexpected end of JSON input`},
		{"truncated", "{\n  \"Network\": ", `net-conf.json:2:14: unexpected end of JSON input`},
		{"not an object", ` [1]`, `net-conf.json:1:2: the config must be a JSON object, got array`},
		{"type vxlan", `{` + n + `, "Backend": {"Type": "vxlan", "VNI": 1}}`,
			`Backend.Type: "vxlan" is not supported; flexhook runs only "extension" backends: use --preset vxlan for the documented vxlan recipe`},
		{"type host-gw", `{` + n + `, "Backend": {"Type": "host-gw"}}`,
			`Backend.Type: "host-gw" is not supported; flexhook runs only "extension" backends: use --preset host-gw for the documented host-gw recipe`},
		{"type wireguard", `{` + n + `, "Backend": {"Type": "wireguard"}}`,
			`Backend.Type: "wireguard" is not supported; flexhook runs only "extension" backends: use --preset wireguard for the documented wireguard recipe`},
		{"type udp", `{` + n + `, "Backend": {"Type": "udp"}}`,
			`Backend.Type: "udp" is not supported; flexhook runs only "extension" backends: write its hooks as an extension backend, or start from a preset (--preset NAME, one of host-gw, vxlan, wireguard)`},
		{"type case", `{` + n + `, "Backend": {"Type": "Extension"}}`,
			`Backend.Type: "Extension" is not supported; flexhook runs only "extension" backends (the type is case-sensitive: write "extension")`},
		{"type missing", `{` + n + `, "Backend": {"SubnetAddCommand": "true"}}`, `Backend.Type: missing; set "Type": "extension"`},
		{"type number", `{` + n + `, "Backend": {"Type": 1}}`, `net-conf.json:1:49: Backend.Type: must be a JSON string, got number`},
		{"backend missing", `{` + n + `}`, `Backend: missing; flexhook needs a Backend of Type "extension" with hook commands`},
		{"backend array", `{` + n + `, "Backend": []}`, `net-conf.json:1:40: Backend: must be a JSON object, got array`},
		{"typo", string(conf(n, `"SubnetAddComand": "true"`)), `Backend: unknown key "SubnetAddComand" (did you mean "SubnetAddCommand"?)`},
		{"key case", string(conf(n, `"subnetaddcommand": "true"`)), `Backend: unknown key "subnetaddcommand" (did you mean "SubnetAddCommand"?)`},
		{"key unrelated", string(conf(n, `"VNI": 1`)),
			`Backend: unknown key "VNI" (known keys: Type, PreStartupCommand, PostStartupCommand, SubnetAddCommand, SubnetRemoveCommand, ShutdownCommand, MTU, DirectRouting)`},
		{"mtu small", string(conf(n, `"MTU": 67`)), `net-conf.json:1:69: Backend.MTU: 67 is out of range 68..65535`},
		{"mtu large", string(conf(n, `"MTU": 65536`)), `net-conf.json:1:69: Backend.MTU: 65536 is out of range 68..65535`},
		{"mtu string", string(conf(n, `"MTU": "1450"`)), `net-conf.json:1:69: Backend.MTU: must be an integer, got string "1450"`},
		{"mtu fraction", string(conf(n, `"MTU": 1450.5`)), `net-conf.json:1:69: Backend.MTU: must be an integer, got number 1450.5`},
		{"hook not string", string(conf(n, `"SubnetAddCommand": ["ip"]`)),
			`net-conf.json:1:82: Backend.SubnetAddCommand: must be a JSON string, got array`},
		{"unterminated quote", string(conf(n, `"SubnetAddCommand": "ip route add $SUBNET via $PUBLIC_IP; echo 'x"`)),
			"SubnetAddCommand:1:43: reached EOF without closing quote `'`"},
		{"second line", string(conf(n, `"PostStartupCommand": "true\nif"`)),
			"PostStartupCommand:2:1: `if` must be followed by a statement list"},
		{"dangling and", string(conf(n, `"ShutdownCommand": "ip link del x &&"`)),
			"ShutdownCommand:1:15: `&&` must be followed by a statement"},
		{"network missing", string(conf(``, "")), `Network: missing; it is required when EnableIPv4 is true (e.g. "10.50.0.0/16")`},
		{"network bogus", string(conf(`"Network": "bogus"`, "")), `Network: "bogus" is not a CIDR prefix such as 10.50.0.0/16`},
		{"network v6", string(conf(`"Network": "fd00::/16"`, "")), `Network: fd00::/16 is not an IPv4 prefix`},
		{"network number", string(conf(`"Network": 10`, "")), `net-conf.json:1:13: Network: must be a JSON string, got number`},
		{"network /29", string(conf(`"Network": "10.50.0.0/29"`, "")),
			`Network: 10.50.0.0/29 is too small: it must hold at least four subnets of /30 or larger, so its prefix must be /28 or shorter`},
		{"subnetlen 31", string(conf(n+`, "SubnetLen": 31`, "")), `SubnetLen: 31 is larger than 30`},
		{"subnetlen negative", string(conf(n+`, "SubnetLen": -2`, "")), `SubnetLen: -2 is negative`},
		{"subnetlen string", string(conf(n+`, "SubnetLen": "24"`, "")), `net-conf.json:1:42: SubnetLen: must be an integer, got string "24"`},
		{"subnetlen float", string(conf(n+`, "SubnetLen": 24.5`, "")), `net-conf.json:1:42: SubnetLen: must be an integer, got number 24.5`},
		{"subnetlen 17", string(conf(n+`, "SubnetLen": 17`, "")),
			`SubnetLen: 17 leaves room for fewer than four subnets in Network 10.50.0.0/16; it must be at least 18`},
		{"min outside", string(conf(n+`, "SubnetMin": "10.51.0.0"`, "")), `SubnetMin: 10.51.0.0 is not inside Network 10.50.0.0/16`},
		{"max outside", string(conf(n+`, "SubnetMax": "10.49.0.0"`, "")), `SubnetMax: 10.49.0.0 is not inside Network 10.50.0.0/16`},
		{"min unaligned", string(conf(n+`, "SubnetMin": "10.50.0.5"`, "")),
			`SubnetMin: 10.50.0.5 is not aligned to SubnetLen /24 (the subnet holding it starts at 10.50.0.0)`},
		{"min not ip", string(conf(n+`, "SubnetMin": "ten"`, "")), `SubnetMin: "ten" is not an IP address`},
		{"min v6", string(conf(n+`, "SubnetMin": "fd00::"`, "")), `SubnetMin: fd00:: is not an IPv4 address`},
		{"min after max", string(conf(n+`, "SubnetMin": "10.50.9.0", "SubnetMax": "10.50.2.0"`, "")),
			`SubnetMin: 10.50.9.0 is after SubnetMax 10.50.2.0`},
		{"ipv4 off", string(conf(n+`, "EnableIPv4": false, "EnableIPv6": true, "IPv6Network": "fd50::/56"`, "")),
			`EnableIPv4: false is not supported: flexhook needs IPv4, a node's IPv4 PublicIP identifies its lease`},
		{"enable not bool", string(conf(n+`, "EnableIPv6": "yes"`, "")), `net-conf.json:1:43: EnableIPv6: must be true or false, got string`},
		{"ipv6 missing", string(conf(n+`, "EnableIPv6": true`, "")),
			`IPv6Network: missing; it is required when EnableIPv6 is true (e.g. "fd50::/56")`},
		{"ipv6 v4", string(conf(n+`, "EnableIPv6": true, "IPv6Network": "10.0.0.0/8"`, "")), `IPv6Network: 10.0.0.0/8 is not an IPv6 prefix`},
		{"ipv6 /125", string(conf(n+`, "EnableIPv6": true, "IPv6Network": "fd50::/125"`, "")),
			`IPv6Network: fd50::/125 is too small: it must hold at least four subnets of /126 or larger, so its prefix must be /124 or shorter`},
		{"ipv6 len 127", string(conf(n+`, "EnableIPv6": true, "IPv6Network": "fd50::/56", "IPv6SubnetLen": 127`, "")),
			`IPv6SubnetLen: 127 is larger than 126`},
		{"ipv6 len 57", string(conf(n+`, "EnableIPv6": true, "IPv6Network": "fd50::/56", "IPv6SubnetLen": 57`, "")),
			`IPv6SubnetLen: 57 leaves room for fewer than four subnets in IPv6Network fd50::/56; it must be at least 58`},
		{"ipv6 max unaligned", string(conf(n+`, "EnableIPv6": true, "IPv6Network": "fd50::/56", "IPv6SubnetMax": "fd50:0:0:2::1"`, "")),
			`IPv6SubnetMax: fd50:0:0:2::1 is not aligned to IPv6SubnetLen /64 (the subnet holding it starts at fd50:0:0:2::)`},
		{"ipv6 min outside", string(conf(n+`, "EnableIPv6": true, "IPv6Network": "fd50::/56", "IPv6SubnetMin": "fd51::"`, "")),
			`IPv6SubnetMin: fd51:: is not inside IPv6Network fd50::/56`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.in))
			if err == nil {
				t.Fatalf("no error; got %+v", cfg)
			}
			if err.Error() != tt.want {
				t.Errorf("got  %s\nwant %s", err, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("%T is not *Error", err)
			}
		})
	}
}

func TestErrorUnwrap(t *testing.T) {
	_, err := Parse([]byte(`{"Network": }`))
	var syn *json.SyntaxError
	if !errors.As(err, &syn) {
		t.Errorf("invalid JSON: %v does not wrap *json.SyntaxError", err)
	}
	_, err = Parse(conf(`"Network": "10.50.0.0/16"`, `"SubnetAddCommand": "echo $("`))
	var pe syntax.ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("hook syntax: %v does not wrap syntax.ParseError", err)
	}
	var e *Error
	if errors.As(err, &e); e.Field != "SubnetAddCommand" || e.File != "" || e.Line != 1 || e.Col != 6 {
		t.Errorf("got %+v", e)
	}
}

func TestParseHooks(t *testing.T) {
	in := conf(`"Network": "10.50.0.0/16"`, `"PreStartupCommand": "  \n\t",
		"SubnetAddCommand": "read VTEP; echo \"$VTEP\" > out",
		"ShutdownCommand": "# nothing to do"`)
	cfg, err := Parse(in)
	if err != nil {
		t.Fatal(err)
	}
	if string(cfg.Raw) != string(in) || cfg.Backend.Type != "extension" {
		t.Errorf("Raw or Type not kept: %q %q", cfg.Raw, cfg.Backend.Type)
	}
	for _, k := range Kinds {
		if got := cfg.Backend.Hook(k).Kind; got != k {
			t.Errorf("Hooks[%d].Kind = %v", k, got)
		}
	}
	pre := cfg.Backend.Hook(PreStartup)
	if pre.Source != "" || pre.File != nil || !pre.Empty() {
		t.Errorf("blank PreStartupCommand: %+v", pre)
	}
	if !cfg.Backend.Hook(PostStartup).Empty() {
		t.Error("absent PostStartupCommand is not empty")
	}
	if !cfg.Backend.Hook(Shutdown).Empty() {
		t.Error("comment-only ShutdownCommand is not empty")
	}
	add := cfg.Backend.Hook(SubnetAdd)
	if add.Source != `read VTEP; echo "$VTEP" > out` || add.Empty() || len(add.File.Stmts) != 2 || add.File.Name != "SubnetAddCommand" {
		t.Errorf("SubnetAddCommand: %+v", add)
	}
}

// The Bash variant must be used: `export X=1` is a declaration there, and
// [[ ]] and arrays parse.
func TestParseHookBash(t *testing.T) {
	h, err := ParseHook(PostStartup, `export X=1; [[ -n $X ]] && a=(1 2)`)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := h.File.Stmts[0].Cmd.(*syntax.DeclClause); !ok {
		t.Errorf("export parsed as %T, want *syntax.DeclClause", h.File.Stmts[0].Cmd)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.json")
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(good, conf(`"Network": "10.50.0.0/16"`, `"SubnetAddCommand": "true"`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bad, []byte("{\n\"Network\": 10.5\n}"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Load(good)
	if err != nil || cfg.Network != netip.MustParsePrefix("10.50.0.0/16") || cfg.Backend.Hook(SubnetAdd).Empty() {
		t.Fatalf("Load(good) = %+v, %v", cfg, err)
	}
	_, err = Load(bad)
	if want := bad + ":2:12: Network: must be a JSON string, got number"; err == nil || err.Error() != want {
		t.Errorf("Load(bad) = %v, want %s", err, want)
	}
	_, err = Load(filepath.Join(dir, "missing.json"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want fs.ErrNotExist", err)
	}
}

func TestClosest(t *testing.T) {
	tests := []struct {
		in   string
		want string
		ok   bool
	}{
		{"SubnetAddComand", "SubnetAddCommand", true},
		{"SubnetRemoveCmd", "SubnetRemoveCommand", true},
		{"PreStartupCommands", "PreStartupCommand", true},
		{"tYPE", "Type", true},
		{"VNI", "", false},
		{"Port", "", false},
	}
	for _, tt := range tests {
		got, ok := closest(tt.in, backendKeys)
		if ok != tt.ok || ok && got != tt.want {
			t.Errorf("closest(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
