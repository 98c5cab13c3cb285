package shell

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"mvdan.cc/sh/v3/syntax"

	"github.com/flexhook/flexhook/hooks"
)

// Through the interpreter: the tools run in-process only under their
// system name, the trace shows them as any command, and a hook's output
// is the real tools' (the vxlan recipe's `cut`).
func TestInprocessMiddleware(t *testing.T) {
	for _, on := range []bool{true, false} {
		dir := t.TempDir()
		var trace bytes.Buffer
		sh, err := New(Dir(dir), InprocessTools(on), Trace(NewTextTracer(&trace)))
		require.NoError(t, err)
		f, err := syntax.NewParser(syntax.Variant(syntax.LangBash)).Parse(strings.NewReader(
			"export SUBNET_IP=`echo $SUBNET | cut -d'/' -f 1`; read D; echo \"$SUBNET_IP $D\" | tr a-z A-Z | tail -n 1"), "")
		require.NoError(t, err)
		res, err := sh.Run(context.Background(), Request{
			Hook: hooks.Hook{Kind: hooks.SubnetAdd, File: f}, Env: []string{"SUBNET=10.50.2.0/24"}, Stdin: "ab:cd\n"})
		require.NoError(t, err)
		assert.Equal(t, "10.50.2.0 AB:CD\n", res.Stdout, "in-process %v", on)
		assert.Contains(t, trace.String(), "+ cut -d/ -f 1\n")
		assert.Contains(t, trace.String(), "+ tr a-z A-Z\n")
	}
}

// A tool that is not the system's, first in PATH, runs as itself.
func TestInprocessOnlySystemBinaries(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	require.NoError(t, os.MkdirAll(bin, 0o755))
	// A copy of the real cat under the name head: a binary outside the
	// system directories (`head -` prints all twelve lines).
	cat, err := exec.LookPath("cat")
	require.NoError(t, err)
	data, err := os.ReadFile(cat)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(bin, "head"), data, 0o755))
	sh, err := New(Dir(dir), Environ([]string{"PATH=" + bin + ":/usr/bin:/bin"}))
	require.NoError(t, err)
	f, err := syntax.NewParser().Parse(strings.NewReader(`printf '%s\n' 1 2 3 4 5 6 7 8 9 10 11 12 | head -`), "")
	require.NoError(t, err)
	res, err := sh.Run(context.Background(), Request{Hook: hooks.Hook{Kind: hooks.PostStartup, File: f}})
	require.NoError(t, err)
	assert.Equal(t, "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n", res.Stdout, "the PATH's own head (a cat) ran, not the in-process head")
}
