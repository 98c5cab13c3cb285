package hooks

import (
	"strings"
	"testing"
)

func lintHookStrings(t *testing.T, k Kind, src string) []string {
	t.Helper()
	h, err := ParseHook(k, src)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, w := range lintHook(k, h.File) {
		out = append(out, w.String())
	}
	return out
}

func TestLintHook(t *testing.T) {
	tests := []struct {
		kind Kind
		src  string
		want string // warnings joined by "\n"
	}{
		{SubnetAdd, `read VTEP; bridge fdb add "$VTEP" dev x dst $PUBLIC_IP`, ``},
		{SubnetAdd, `read VTEP; bridge fdb add $VTEP dev x dst $PUBLIC_IP`,
			`SubnetAddCommand:1:27: warning: $VTEP holds lease data (read from stdin) and is expanded unquoted: spaces or a leading '-' in a peer's data become more arguments; quote it: "$VTEP"`},
		{SubnetRemove, `read K; wg set wg0 peer ${K} remove`,
			`SubnetRemoveCommand:1:25: warning: $K holds lease data (read from stdin) and is expanded unquoted: spaces or a leading '-' in a peer's data become more arguments; quote it: "$K"`},
		{SubnetAdd, `read D; M=$(echo "$D" | cut -d, -f1); arp -s 10.0.0.1 $M`,
			`SubnetAddCommand:1:55: warning: $M holds lease data (derived from $D) and is expanded unquoted: spaces or a leading '-' in a peer's data become more arguments; quote it: "$M"`},
		{SubnetAdd, `read D; echo "$D" | read A B; ip link show $B`,
			`SubnetAddCommand:1:44: warning: $B holds lease data (derived from $D) and is expanded unquoted: spaces or a leading '-' in a peer's data become more arguments; quote it: "$B"`},
		{SubnetAdd, `read D; read A <<< "$D"; for W in $A; do echo "$W"; done; X=$W; ip link show $X`,
			`SubnetAddCommand:1:78: warning: $X holds lease data (derived from $W) and is expanded unquoted: spaces or a leading '-' in a peer's data become more arguments; quote it: "$X"`},
		{SubnetAdd, `D=$(cat); ip link show $D; E=$(cut -d, -f2); echo "$E"`,
			`SubnetAddCommand:1:24: warning: $D holds lease data (read from stdin) and is expanded unquoted: spaces or a leading '-' in a peer's data become more arguments; quote it: "$D"`},
		{SubnetAdd, `read D; ip link show $(echo "$D")`,
			`SubnetAddCommand:1:22: warning: $D holds lease data (read from stdin) and is expanded unquoted: spaces or a leading '-' in a peer's data become more arguments; quote it: "$D"`},
		{SubnetAdd, `read CMD; $CMD -x`,
			`SubnetAddCommand:1:11: error: $CMD holds lease data (read from stdin) and is run as a command name: a peer chooses the program`},
		{SubnetAdd, `read A < /etc/hostname; D=$(cat /etc/x); X=$SUBNET; ip route add $X via $PUBLIC_IP; echo $A $D`, ``},
		{PostStartup, `D=$(cat); ip link show $D`, ``}, // no stdin, no lease data
		{PostStartup, `umask 077; kill -HUP 1; /usr/bin/kill -0 1`,
			"PostStartupCommand:1:1: error: umask is a builtin flexhook's shell interpreter does not support: the hook fails here when it runs (call a program by its path, such as /usr/bin/umask, if there is one)\n" +
				"PostStartupCommand:1:12: error: kill is a builtin flexhook's shell interpreter does not support: the hook fails here when it runs (call a program by its path, such as /usr/bin/kill, if there is one)"},
		{PreStartup, `read KEY; echo $KEY`,
			`PreStartupCommand:1:1: warning: read gets nothing: PreStartupCommand is run with an empty stdin; only SubnetAddCommand and SubnetRemoveCommand read the peer's BackendData`},
		{Shutdown, `mapfile LINES`,
			`ShutdownCommand:1:1: warning: mapfile gets nothing: ShutdownCommand is run with an empty stdin; only SubnetAddCommand and SubnetRemoveCommand read the peer's BackendData`},
		{PostStartup, `echo a | read X; read Y < file; while read Z; do :; done <<< "$NETWORK"; echo $X$Y$Z`, ``},
		{PreStartup, `ip addr add $SUBNET dev x`,
			`PreStartupCommand:1:13: warning: $SUBNET is not set for PreStartupCommand; it is given only NETWORK, PUBLIC_IP, PUBLIC_IPV6, DIRECT_ROUTING`},
		{PreStartup, `SUBNET=10.0.0.0/8; echo $SUBNET ${IPV6SUBNET:-none} ${X+set} ${Y:=1} ${Z?}`, ``},
		{PreStartup, `echo ${SUBNET%/*}`,
			`PreStartupCommand:1:6: warning: $SUBNET is not set for PreStartupCommand; it is given only NETWORK, PUBLIC_IP, PUBLIC_IPV6, DIRECT_ROUTING`},
		{Shutdown, `ip link del $IF_NAME; ip link del $IF_NAME`,
			`ShutdownCommand:1:13: info: $IF_NAME is never assigned in this hook and is not part of its contract; it is empty unless the daemon's environment sets it`},
		{Shutdown, `export IF_NAME=x; ip link del $IF_NAME; echo $HOME $PATH $1 $? $@ $#`, ``},
		{PostStartup, `for i in a b; do echo $i; done; read -r -p prompt -a ARR < f; echo ${ARR[0]}; printf -v P %s x; echo $P`, ``},
		{SubnetAdd, `read; echo "$REPLY"; local L=1; echo $L`, ``},
		{SubnetAdd, `read DATA; eval "$DATA"`,
			`SubnetAddCommand:1:12: error: eval of $DATA runs data as code; pass values to commands as arguments instead`},
		{SubnetRemove, `. /etc/hooks/$(cat)`,
			`SubnetRemoveCommand:1:1: error: . of a command substitution runs data as code; pass values to commands as arguments instead`},
		{PostStartup, `source /etc/flexhook/common.sh; eval 'echo hi'`, ``},
	}
	for _, tt := range tests {
		t.Run(tt.src, func(t *testing.T) {
			got := strings.Join(lintHookStrings(t, tt.kind, tt.src), "\n")
			if got != tt.want {
				t.Errorf("got\n%s\nwant\n%s", got, tt.want)
			}
		})
	}
}

func TestLintConfig(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"clean", `{"Network": "10.50.0.0/16", "Backend": {"Type": "extension",
			"SubnetAddCommand": "ip route add $SUBNET via $PUBLIC_IP", "SubnetRemoveCommand": "ip route del $SUBNET via $PUBLIC_IP"}}`, ``},
		{"add without remove", `{"Network": "10.50.0.0/16", "Backend": {"Type": "extension", "SubnetAddCommand": "true"}}`,
			`SubnetRemoveCommand: info: missing while SubnetAddCommand is set: what Add sets up for a peer stays after the peer is gone`},
		{"unknown top-level", `{"Network": "10.50.0.0/16", "SubnetLenn": 24, "Colour": "red", "EnableNFTables": true, "Backend": {"Type": "extension"}}`,
			"SubnetLenn: warning: unknown key; flannel and flexhook ignore it (did you mean \"SubnetLen\"?)\n" +
				"Colour: warning: unknown key; flannel and flexhook ignore it\n" +
				"EnableNFTables: info: flexhook does not use the flannel option EnableNFTables; it is ignored"},
		{"host bits", `{"Network": "10.50.3.0/16", "Backend": {"Type": "extension"}}`,
			`Network: warning: 10.50.3.0/16 has host bits set; it is used as 10.50.0.0/16`},
		{"ipv6 off", `{"Network": "10.50.0.0/16", "IPv6Network": "fd50::/56", "Backend": {"Type": "extension"}}`,
			`IPv6Network: warning: set while EnableIPv6 is not true; it is ignored`},
		{"hooks in kind order", `{"Network": "10.50.0.0/16", "Backend": {"Type": "extension",
			"ShutdownCommand": "read X", "PreStartupCommand": "echo $SUBNET"}}`,
			"PreStartupCommand:1:6: warning: $SUBNET is not set for PreStartupCommand; it is given only NETWORK, PUBLIC_IP, PUBLIC_IPV6, DIRECT_ROUTING\n" +
				"ShutdownCommand:1:1: warning: read gets nothing: ShutdownCommand is run with an empty stdin; only SubnetAddCommand and SubnetRemoveCommand read the peer's BackendData"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := Parse([]byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range Lint(cfg) {
				got = append(got, w.String())
			}
			if g := strings.Join(got, "\n"); g != tt.want {
				t.Errorf("got\n%s\nwant\n%s", g, tt.want)
			}
		})
	}
}

func TestLintWithoutRaw(t *testing.T) {
	h, err := ParseHook(PreStartup, "read X")
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{}
	cfg.Backend.Hooks[PreStartup] = h
	ws := Lint(cfg)
	if len(ws) != 1 || ws[0].Hook != PreStartup || ws[0].Severity != SeverityWarning || ws[0].Line != 1 {
		t.Errorf("got %+v", ws)
	}
}
