package wgkey_test

import (
	"bytes"
	"encoding/base64"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/internal/wgkey"
)

const (
	privKey = "4O1Vhzg4tAMYw/JD+THcNcXivOeZ8Rv0drqzpjXgnF4="
	pubKey  = "9Hmf3B44SpQQvycIyqRq9LMpTRdij8CRkfmVL5Em8yo=" // wg pubkey of privKey
	// unclamped: a private key wg genkey would not make (low bits of the
	// first byte set, top bit of the last); wg pubkey clamps it.
	unclamped = "////////////////////////////////////////////8="
)

// result is what one run of a command did.
type result struct {
	Status         int
	Stdout, Stderr string
}

// realWg returns the path of the real wg, or skips (fails under CI=true).
func realWg(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("wg")
	if err != nil {
		testutil.SkipOrFail(t, "no wg to compare with (Debian: wireguard-tools)")
	}
	return p
}

// runReal runs the real `wg SUB` as a shell would (argv[0] "wg") with
// stdin, and its stdout going to out when not nil.
func runReal(t *testing.T, sub, stdin string, out *os.File) result {
	t.Helper()
	cmd := exec.Command(realWg(t), sub)
	cmd.Args[0] = "wg"
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if out != nil {
		cmd.Stdout = out
	}
	err := cmd.Run()
	r := result{Stdout: stdout.String(), Stderr: stderr.String()}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.Status = ee.ExitCode()
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			r.Status = 128 + int(ws.Signal())
		}
	case err != nil:
		t.Fatalf("wg %s: %v", sub, err)
	}
	return r
}

func runOurs(t *testing.T, sub, stdin string) result {
	t.Helper()
	run, ok := wgkey.Command([]string{"wg", sub})
	require.True(t, ok, sub)
	var stdout, stderr bytes.Buffer
	st := run(strings.NewReader(stdin), &stdout, &stderr)
	return result{Status: st, Stdout: stdout.String(), Stderr: stderr.String()}
}

// pubkeyInputs are stdin contents for wg pubkey: the forms a key file
// takes, and the ways wg refuses one.
var pubkeyInputs = []string{
	privKey + "\n",
	privKey,                       // no newline
	privKey + "\r\n",              // CRLF
	privKey + " \t\v\f\r\n  \n\n", // trailing whitespace
	privKey + "\x00\x00\n",        // NULs after the key are skipped
	privKey + "\n" + strings.Repeat(" ", 10000) + "\n", // past one stdio buffer
	unclamped + "\n",
	strings.Repeat("A", 43) + "=\n", // the zero key
	"",                              // empty
	"\n",
	"short\n",
	privKey[:43] + "\n",             // 43 characters and a newline: 44 bytes, no '='
	privKey[:43],                    // too short
	" " + privKey + "\n",            // leading space
	privKey + "\n" + privKey + "\n", // two lines
	privKey + " x\n",                // trailing word
	privKey + "\n" + strings.Repeat(" ", 10000) + "x",             // a trailing character past one buffer
	privKey[:42] + "5=\n",                                         // stray low bits in the last character
	privKey[:43] + "A\n",                                          // no '='
	privKey[:20] + "!" + privKey[21:] + "\n",                      // not base64
	privKey[:20] + "=" + privKey[21:] + "\n",                      // '=' inside
	privKey[:20] + "-" + privKey[21:] + "\n",                      // URL alphabet
	privKey[:20] + "\x00" + privKey[21:] + "\n",                   // a NUL in the key
	privKey[:20] + "\n" + privKey[20:] + "\n",                     // a newline in the key
	privKey[:20] + "\xc3" + privKey[21:] + "\n",                   // a high byte
	base64.StdEncoding.EncodeToString(make([]byte, 33)) + "\n",    // 33 bytes
	base64.RawStdEncoding.EncodeToString(make([]byte, 32)) + "\n", // no padding
	"not a key at all, but forty-four bytes long!",
	"not a key at all, but forty-four bytes long!\n",
}

// TestPubkeyParity feeds each input, and inputs derived from a key by
// random edits, to the real wg pubkey and to Pubkey: same status, stdout
// and stderr.
func TestPubkeyParity(t *testing.T) {
	realWg(t)
	inputs := append([]string(nil), pubkeyInputs...)
	rng := rand.New(rand.NewPCG(23, 2))
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \t\n\r\x00!-_\xff"
	for range 200 {
		b := []byte(privKey + "\n")
		for range 1 + rng.IntN(3) {
			i := rng.IntN(len(b) + 1)
			c := alphabet[rng.IntN(len(alphabet))]
			switch rng.IntN(3) {
			case 0: // replace
				if i < len(b) {
					b[i] = c
				}
			case 1: // insert
				b = append(b[:i], append([]byte{c}, b[i:]...)...)
			case 2: // delete
				if i < len(b) {
					b = append(b[:i], b[i+1:]...)
				}
			}
		}
		inputs = append(inputs, string(b))
	}
	ok := 0
	for _, in := range inputs {
		want := runReal(t, "pubkey", in, nil)
		got := runOurs(t, "pubkey", in)
		assert.Equal(t, want, got, "stdin %q", in)
		if want.Status == 0 {
			ok++
		}
	}
	assert.Equal(t, result{Stdout: pubKey + "\n"}, runOurs(t, "pubkey", privKey+"\n"))
	t.Logf("%d inputs (%d fixed), %d keys wg read, %d refused", len(inputs), len(pubkeyInputs), ok, len(inputs)-ok)
}

// TestGenkey checks Genkey's keys: one line of standard base64 holding
// 32 bytes clamped for Curve25519, each new; the real wg pubkey agrees
// with Pubkey on them, and Pubkey with the real wg on the real genkey's.
func TestGenkey(t *testing.T) {
	realWg(t)
	seen := map[string]bool{}
	for range 20 {
		g := runOurs(t, "genkey", "")
		require.Zero(t, g.Status)
		require.Empty(t, g.Stderr)
		require.True(t, strings.HasSuffix(g.Stdout, "\n"), "%q", g.Stdout)
		key := strings.TrimSuffix(g.Stdout, "\n")
		b, err := base64.StdEncoding.Strict().DecodeString(key)
		require.NoError(t, err, key)
		require.Len(t, b, 32)
		assert.Zero(t, b[0]&7, "%s: the low 3 bits cleared", key)
		assert.Equal(t, byte(0x40), b[31]&0xc0, "%s: bit 255 cleared, bit 254 set", key)
		assert.False(t, seen[key], "%s twice", key)
		seen[key] = true
		assert.Equal(t, runReal(t, "pubkey", g.Stdout, nil), runOurs(t, "pubkey", g.Stdout), "pubkey of our %s", key)

		r := runReal(t, "genkey", "", nil)
		require.Zero(t, r.Status, r.Stderr)
		assert.Equal(t, runReal(t, "pubkey", r.Stdout, nil), runOurs(t, "pubkey", r.Stdout), "pubkey of wg's %s", r.Stdout)
	}
}

// TestGenkeyWorldAccessible: writing to a regular file whose mode lets
// others at it, genkey warns as wg does; to a private file or a pipe it
// does not.
func TestGenkeyWorldAccessible(t *testing.T) {
	realWg(t)
	dir := t.TempDir()
	open := func(mode os.FileMode) *os.File {
		path := filepath.Join(dir, "key")
		_ = os.Remove(path)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
		require.NoError(t, err)
		require.NoError(t, f.Chmod(mode))
		t.Cleanup(func() { f.Close() })
		return f
	}
	warned := 0
	for _, mode := range []os.FileMode{0o600, 0o640, 0o644, 0o604, 0o602, 0o601, 0o666, 0o400} {
		f := open(mode)
		want := runReal(t, "genkey", "", f)
		f = open(mode)
		var stderr bytes.Buffer
		st := wgkey.Genkey(nil, f, &stderr)
		assert.Equal(t, want.Status, st, "mode %v", mode)
		assert.Equal(t, want.Stderr, stderr.String(), "mode %v", mode)
		data, err := os.ReadFile(f.Name())
		require.NoError(t, err)
		assert.Len(t, data, 45, "mode %v: a key and a newline in the file", mode)
		if want.Stderr != "" {
			warned++
		}
	}
	assert.Equal(t, 5, warned, "the modes with bits for others")

	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	defer pr.Close()
	var stderr bytes.Buffer
	assert.Zero(t, wgkey.Genkey(nil, pw, &stderr))
	pw.Close()
	assert.Empty(t, stderr.String(), "a pipe")
}

// TestBrokenPipe: with no reader left on its stdout, the real wg dies of
// SIGPIPE, and the in-process commands return its status.
func TestBrokenPipe(t *testing.T) {
	realWg(t)
	for _, sub := range []string{"genkey", "pubkey"} {
		pr, pw, err := os.Pipe()
		require.NoError(t, err)
		pr.Close()
		want := runReal(t, sub, privKey+"\n", pw)
		run, _ := wgkey.Command([]string{"wg", sub})
		var stderr bytes.Buffer
		got := run(strings.NewReader(privKey+"\n"), pw, &stderr)
		pw.Close()
		assert.Equal(t, wgkey.StatusBrokenPipe, want.Status, "the real wg %s", sub)
		assert.Equal(t, want.Status, got, sub)
		assert.Empty(t, stderr.String())
	}
}

// TestCommand: only the bare forms are taken.
func TestCommand(t *testing.T) {
	for _, argv := range [][]string{{"wg", "genkey"}, {"wg", "pubkey"}} {
		_, ok := wgkey.Command(argv)
		assert.True(t, ok, "%q", argv)
	}
	for _, argv := range [][]string{
		{"wg"}, {"wg", "genkey", "x"}, {"wg", "pubkey", "--help"}, {"wg", "genpsk"}, {"wg", "show"},
		{"/usr/bin/wg", "genkey"}, {"wg-quick", "genkey"}, {"wg", "set", "wg0"}, {"wg", "Genkey"},
	} {
		_, ok := wgkey.Command(argv)
		assert.False(t, ok, "%q", argv)
	}
}

func TestParseKey(t *testing.T) {
	k, ok := wgkey.ParseKey(privKey)
	require.True(t, ok)
	assert.Equal(t, pubKey, k.PublicKey().String())
	for _, s := range []string{"", privKey + "\n", privKey[:43] + "A", privKey[:42] + "5=", strings.Repeat("A", 44),
		privKey[:10] + "\n" + privKey[11:]} {
		_, ok := wgkey.ParseKey(s)
		assert.False(t, ok, "%q", s)
	}
}
