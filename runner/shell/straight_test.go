package shell

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/presets"
)

// The straight runner (straight.go) must do what the interpreter does. These
// tests run each hook both ways, on Shells alike but for interpretAll,
// and compare everything a hook's run shows: the trace (argv, status,
// skips), stdout (where `env` and `printenv` show the environment a
// command got, and `cat` what was left of stdin), stderr, and the error.

// recorder keeps the trace events, in order.
type recorder struct {
	mu  sync.Mutex
	evs []string
}

func (r *recorder) Trace(ev TraceEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.evs = append(r.evs, fmt.Sprintf("%q status=%d skipped=%v redirect=%v err=%v",
		ev.Argv, ev.Status, ev.Skipped, ev.Redirect, ev.Err))
}

// outcome is what one run showed.
type outcome struct {
	Trace          []string
	Stdout, Stderr string
	Err            string
}

func runBoth(t testing.TB, dir string, dryRun bool, h hooks.Hook, env []string, stdin string) (straightRun, interpreted outcome) {
	t.Helper()
	run := func(interpretAll bool) outcome {
		rec := &recorder{}
		opts := []Option{Dir(dir), Trace(rec), Logger(slog.New(slog.NewTextHandler(io.Discard, nil))),
			Environ([]string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C", "PWD=/elsewhere"})}
		if dryRun {
			opts = append(opts, DryRun(true))
		}
		sh, err := New(opts...)
		require.NoError(t, err)
		sh.interpretAll = interpretAll
		res, err := sh.Run(context.Background(), Request{Hook: h, Env: env, Stdin: stdin, Subnet: "10.50.2.0/24"})
		o := outcome{Trace: rec.evs, Stdout: res.Stdout, Stderr: res.Stderr}
		if err != nil {
			o.Err = err.Error()
		}
		return o
	}
	return run(false), run(true)
}

// sortedLines is out with its lines sorted: `env` prints the variables
// in the order of a map's iteration, under either runner. (The order of
// the commands is the trace's.) The table's rows that run env print
// whole lines; the fuzzer's fragments use printenv with names, whose
// output is in order, and compare stdout as it is.
func sortedLines(out string) string {
	lines := strings.SplitAfter(out, "\n")
	slices.Sort(lines)
	return strings.Join(lines, "")
}

func TestStraightParity(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"a.txt", "b.txt"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), nil, 0o600))
	}
	env := []string{"SUBNET=10.50.2.0/24", "PUBLIC_IP=192.0.2.2", "NETWORK=10.50.0.0/16"}
	for _, tc := range []struct {
		name, src, stdin string
	}{
		{"vxlan", "export SUBNET_IP=`echo $SUBNET | cut -d'/' -f 1`; export IF_NAME=flannel-vxlan; read VTEP; " +
			"printenv SUBNET_IP IF_NAME && expr $SUBNET_IP : '.*' && printenv VTEP || echo-less-status", "b2:d1:fc:40:8d:2f\n"},
		{"env seen by a command", `export A=1; B=2; read C; env`, "x\n"},
		{"stdin left for a command", `read A; read B; cat`, "one\ntwo\nthree\nfour"},
		{"read at EOF fails", `read A`, "no newline"},
		{"read splits and joins", `read A B; printenv A; expr "$B" : '.*'`, "  a  b   c \\\n d\\ e \n"},
		{"and or", `expr 0 && printenv NONE || expr 5 + 1; expr 0 || expr 0`, ""},
		{"status of the last", `expr 0; expr 1`, ""},
		{"failing last", `expr 1; expr 0`, ""},
		{"not found", `no-such-command-here x; expr 2`, ""},
		{"missing file", `ls /no/such/path`, ""},
		{"glob in the dir", `X='*.txt'; ls $X; ls "$X"`, ""},
		{"assignment takes the substitution's status", "A=`expr 0`", ""},
		{"export does not", "export A=`expr 0`", ""},
		{"params", `A=${SUBNET%/*} B=${SUBNET#*.} C=${NONE:-dflt} D=${SUBNET:+set}; export E=$A F=x; env`, ""},
		{"lone command substitution", "X=$(printenv SUBNET) Y=$(echo -n a b) Z=$(echo -e 'q\\tr'); export X=$X Y=$Y Z=$Z; env", ""},
		{"substitution reads stdin", "read A; X=$(cat); printenv A; expr \"$X\" : '.*'", "a\nbcd\n"},
		{"field splitting", `X="a  b c"; expr $X : 'a'; expr "$X" : '.*'`, ""},
		// Found in review: read took all of stdin, and the interpreter's
		// commands still get its (empty) pipe, not /dev/null.
		{"stdin read to its end is still a pipe", `read A; stat -L -c %F /dev/stdin`, "x\n"},
		{"stdin read to its end, no newline", `read A; stat -L -c %F /dev/stdin`, "x"},
		// Rows that pass, for forms the rows above do not cover:
		{"read into an exported name", `read SUBNET; env; export SUBNET=$SUBNET; printenv SUBNET`, "x y\n"},
		{"read at EOF after a backslash", `read A; expr "$A" : '.*'`, "a\\"},
		{"read more names than fields", `read A B C; printenv A B C; expr "$C" : '.*'`, "  x  \n"},
		{"read keeps blanks inside the last field", `read A B; expr "$B" : '.*'`, "  a  b \\  c  \n"},
		{"echo options", `A=$(echo -n) B=$(echo -e 'a\cb' c) C=$(echo -- -n) D=$(echo -ne 'x\n\n') E=$(echo -E 'a\tb'); ` +
			`export A=$A B=$B C=$C D=$D E=$E; env`, ""},
		{"echo of a hostile SUBNET into a pipe", `X=$(echo $SUBNET | cut -c1-30); expr "$X" : '.*'; Y=$(echo -e $SUBNET); export Y=$Y; printenv Y`, ""},
		{"the last substitution's status", `A=$(expr 0) B=$(expr 1); A=$(expr 1) B=x || expr 3`, ""},
		{"a substitution that cannot start", `A=$(no-such-cmd) || expr 4; export B=$(no-such-cmd) && expr 5`, ""},
		{"a substitution in a default word", `A=${NONE:-$(expr 0)} || A=${SUBNET:+$(cat)}; expr "$A" : '.*'`, "in\n"},
		{"brace expansion error drops the command", `expr 1 {1..99999}; expr 6`, ""},
		{"words like keywords", `in x; else`, ""},
		{"backquote escapes", "X=`echo \\$SUBNET` Y=`echo \\\\$SUBNET`; export X=$X Y=$Y; printenv X Y", ""},
		{"variables the interpreter sets", `expr "$UID$EUID$GID" : '.*'; expr "$PWD" "$OPTIND" "$IFS" "$HOME" : '.*'; printenv PWD HOME`, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := hooks.ParseHook(hooks.SubnetAdd, tc.src)
			require.NoError(t, err)
			require.True(t, straight(h.File), "the case must run straight to compare anything")
			for _, dry := range []bool{false, true} {
				got, want := runBoth(t, dir, dry, h, env, tc.stdin)
				got.Stdout, want.Stdout = sortedLines(got.Stdout), sortedLines(want.Stdout)
				require.Equal(t, want, got, "dry-run=%v", dry)
			}
		})
	}
}

// TestStraightForms: what runs straight, and what the interpreter keeps.
func TestStraightForms(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want bool
	}{
		{`ip route add $SUBNET via $PUBLIC_IP`, true},
		{`read K; wg set flannel-wg peer "$K" endpoint $PUBLIC_IP:51820 allowed-ips $SUBNET`, true},
		{`export A=$(echo $SUBNET | cut -d/ -f1); ip neigh add $A dev x`, true},
		{`ip route add $SUBNET via $PUBLIC_IP 2>/dev/null`, false}, // redirection
		{`echo $SUBNET`, false},                            // a builtin
		{`ip route get 1.1.1.1 | grep -q via`, false},      // a pipeline
		{`cat; read A`, false},                             // read after stdin was handed on
		{`X=$(cat); read A`, false},                        // the same, in a substitution
		{`A=1 ip route add $SUBNET via $PUBLIC_IP`, false}, // a prefix assignment
		{`IFS=: ; ip x`, false},                            // the interpreter's own variable
		{`ip x $RANDOM`, false},                            // a dynamic parameter
		{`ip x $LINENO`, false},                            // expand works it out from the word's position (found in review)
		{`LINENO=5; ip x`, false},
		{`ip x $1`, false},                // a special one
		{`ip x ${A:=b}`, false},           // an expansion that assigns
		{`ip x $(echo $(cat))`, false},    // nested substitution
		{`ip x $((1+1))`, false},          // arithmetic
		{`/sbin/ip x`, false},             // a path
		{`if true; then ip x; fi`, false}, // compound
		{`! ip x`, false},
		{`ip x &`, false},
		{`read -r A`, false},
		{`export A`, false},
	} {
		h, err := hooks.ParseHook(hooks.SubnetAdd, tc.src)
		require.NoError(t, err)
		require.Equal(t, tc.want, straight(h.File), tc.src)
	}
}

// TestPresetHooksRunStraight: the published presets' per-lease hooks run
// without the interpreter (their speed depends on it).
func TestPresetHooksRunStraight(t *testing.T) {
	for _, name := range []string{"host-gw", "vxlan", "wireguard"} {
		data, err := presets.Get(name)
		require.NoError(t, err)
		cfg, err := hooks.Parse(data)
		require.NoError(t, err)
		for _, k := range []hooks.Kind{hooks.SubnetAdd, hooks.SubnetRemove} {
			if h := cfg.Backend.Hook(k); !h.Empty() {
				require.True(t, straight(h.File), "%s %s", name, k)
			}
		}
	}
}

// straightFragments are the pieces FuzzStraightParity builds hooks of:
// each a straight statement with harmless commands.
var straightFragments = []string{
	`export A=x`, `export B="$SUBNET"`, `C=${SUBNET%/*}`, "D=`echo $SUBNET | cut -d/ -f1`",
	`E=$(printenv A)`, `read V`, `read V W`, `printenv A C D V W`, `printenv SUBNET PUBLIC_IP HOME PWD IFS UID`, `cat`, `expr 1`, `expr 0`,
	`ls $SUBNET`, `expr "$V" : '.*'`, `F=$(echo -e "$SUBNET")`, `export G=${V:-$SUBNET}`, `expr $V`,
	`H=$(expr 0)`, `head -c 3`, `tr a-z A-Z`, `X=${W#?}`,
}

var straightJoins = []string{"; ", " && ", " || ", "\n"}

// FuzzStraightParity builds hooks from fragments and runs each both ways
// with a hostile SUBNET and stdin.
func FuzzStraightParity(f *testing.F) {
	f.Add([]byte{0, 0, 5, 1, 3, 2, 7}, "10.50.2.0/24", "b2:d1:fc:40:8d:2f\n")
	f.Add([]byte{6, 3, 8, 0, 9}, "a  b*", "x y\\\nz\nrest")
	f.Add([]byte{17, 2, 12, 1, 20, 3, 18}, "-n", "\\")
	f.Add([]byte{8, 0, 12, 3, 13, 1, 16}, "x\\y [z] {a,b} ~", "p q\n")
	dir := f.TempDir()
	require.NoError(f, os.WriteFile(filepath.Join(dir, "a b"), nil, 0o600))
	f.Fuzz(func(t *testing.T, shape []byte, subnet, stdin string) {
		if len(shape) > 16 || strings.ContainsRune(subnet, 0) {
			return
		}
		var b strings.Builder
		for i, c := range shape {
			if i%2 == 1 {
				b.WriteString(straightJoins[int(c)%len(straightJoins)])
				continue
			}
			b.WriteString(straightFragments[int(c)%len(straightFragments)])
		}
		if len(shape)%2 == 0 && len(shape) > 0 {
			b.WriteString("expr 2")
		}
		h, err := hooks.ParseHook(hooks.SubnetAdd, b.String())
		if err != nil || h.Empty() || !straight(h.File) {
			return // a read after a command: the interpreter's
		}
		env := []string{"SUBNET=" + subnet, "PUBLIC_IP=192.0.2.2"}
		for _, dry := range []bool{false, true} {
			got, want := runBoth(t, dir, dry, h, env, stdin)
			if !equalOutcome(got, want) {
				t.Fatalf("hook %q (SUBNET=%q, stdin=%q, dry-run=%v):\nstraight:    %+v\ninterpreter: %+v", b.String(), subnet, stdin, dry, got, want)
			}
		}
	})
}

func equalOutcome(a, b outcome) bool {
	return slices.Equal(a.Trace, b.Trace) && a.Stdout == b.Stdout && a.Stderr == b.Stderr && a.Err == b.Err
}
