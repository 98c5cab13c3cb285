// Package wgkey runs wireguard-tools' `wg genkey` and `wg pubkey` in the
// daemon (the shell's fast path), as wg 1.0.20210914 does them: the same
// output (the key in standard base64, one '=', then a newline), the same
// clamping, the same messages on stderr and exit statuses for input wg
// refuses, and genkey's warning when its stdout is a regular file others
// may access. Only the bare forms are taken (`wg genkey`, `wg pubkey`);
// anything else, a usage error included, is the real wg's.
package wgkey

import (
	"bufio"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"syscall"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"
)

// Func runs a command on its streams and returns its exit status.
type Func func(stdin io.Reader, stdout, stderr io.Writer) int

// StatusBrokenPipe is the status of a command whose stdout's reader went
// away: wg is killed by SIGPIPE when it flushes its output at exit, which
// a shell reports as 128+13.
const StatusBrokenPipe = 128 + int(syscall.SIGPIPE)

// The messages wg prints, its PROG_NAME being "wg" (argv[0] as the shell
// gives it for a command found in PATH).
const (
	msgFormat   = "wg: Key is not the correct length or format\n"
	msgTrailing = "wg: Trailing characters found after key\n"
	msgWorld    = "Warning: writing to world accessible file.\nConsider setting the umask to 077 and trying again.\n"
)

// keyLen64 is the length of a key in base64: 43 characters and one '='.
const keyLen64 = 44

// stdioBuf is the size of the stdio buffer wg reads stdin through (glibc
// reads st_blksize, a page for pipes and files): on a refused key, wg has
// consumed its input up to the end of the block that held the error.
const stdioBuf = 4096

// Command returns the in-process version of argv, or ok=false: argv must
// be exactly `wg genkey` or `wg pubkey`.
func Command(argv []string) (Func, bool) {
	if len(argv) != 2 || argv[0] != "wg" {
		return nil, false
	}
	switch argv[1] {
	case "genkey":
		return Genkey, true
	case "pubkey":
		return Pubkey, true
	}
	return nil, false
}

// Genkey is `wg genkey`: a new private key (32 random bytes, clamped as
// Curve25519 wants) on stdout. It reads nothing. When stdout is a
// regular file with any permission for others, it first warns on stderr,
// as wg does after fstat(1).
func Genkey(_ io.Reader, stdout, stderr io.Writer) int {
	if worldAccessible(stdout) {
		_, _ = io.WriteString(stderr, msgWorld)
	}
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		// crypto/rand does not fail on Linux (wg's perror would say
		// "getrandom: ..."); should it, this reads alike.
		fmt.Fprintf(stderr, "getrandom: %v\n", err)
		return 1
	}
	return put(stdout, k.String())
}

// Pubkey is `wg pubkey`: it reads a private key from stdin, which must
// hold exactly one key (44 characters of base64 ending in '=' with no
// stray bits) followed by nothing but whitespace and NUL bytes to EOF,
// and writes its public key on stdout. Like wg, it checks what follows
// the key before the key itself.
func Pubkey(stdin io.Reader, stdout, stderr io.Writer) int {
	r := bufio.NewReaderSize(stdin, stdioBuf)
	var b [keyLen64]byte
	if _, err := io.ReadFull(r, b[:]); err != nil {
		_, _ = io.WriteString(stderr, msgFormat)
		return 1
	}
	for {
		c, err := r.ReadByte()
		if err != nil {
			break // EOF, or a read error: getc's EOF either way
		}
		if c != 0 && !isSpace(c) {
			_, _ = io.WriteString(stderr, msgTrailing)
			return 1
		}
	}
	k, ok := ParseKey(string(b[:]))
	if !ok {
		_, _ = io.WriteString(stderr, msgFormat)
		return 1
	}
	return put(stdout, k.PublicKey().String())
}

// ParseKey reads a key as wg's key_from_base64 does: 44 characters, the
// first 43 from the standard base64 alphabet, the last '=', and the
// unused low bits of the 43rd zero.
func ParseKey(s string) (wgtypes.Key, bool) {
	if len(s) != keyLen64 || s[keyLen64-1] != '=' {
		return wgtypes.Key{}, false
	}
	for i := range keyLen64 - 1 {
		if !isBase64(s[i]) {
			return wgtypes.Key{}, false
		}
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s)
	if err != nil || len(b) != wgtypes.KeyLen {
		return wgtypes.Key{}, false
	}
	return wgtypes.Key(b), true
}

func isBase64(c byte) bool {
	return 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/'
}

// isSpace is wg's char_is_space: '\t', '\n', '\v', '\f', '\r' and ' '.
func isSpace(c byte) bool {
	return c == ' ' || '\t' <= c && c <= '\r'
}

// put writes the line wg's puts writes. wg ignores a failed write, but a
// reader gone kills it with SIGPIPE.
func put(w io.Writer, line string) int {
	if _, err := io.WriteString(w, line+"\n"); errors.Is(err, syscall.EPIPE) {
		return StatusBrokenPipe
	}
	return 0
}

// worldAccessible reports whether w is a regular file with any of the
// permission bits of others set (wg's S_ISREG && st_mode & S_IRWXO).
func worldAccessible(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false // a pipe to the shell: wg's stdout would be one too
	}
	st, err := f.Stat()
	return err == nil && st.Mode().IsRegular() && st.Mode().Perm()&0o007 != 0
}
