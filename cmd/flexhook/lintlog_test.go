package main

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/presets"
)

// A published recipe run as published says once how many lint findings it
// has, not each one as a warning on every start; the same hooks changed by
// the operator warn as before.
func TestLogLintQuietForPublished(t *testing.T) {
	raw, err := presets.Get("vxlan")
	require.NoError(t, err)
	cfg, err := hooks.Parse(raw)
	require.NoError(t, err)
	n := len(hooks.Lint(cfg))
	require.Positive(t, n, "the published vxlan recipe has findings (unquoted $VTEP)")

	var b strings.Builder
	logLint(slog.New(slog.NewTextHandler(&b, nil)), "vxlan", cfg)
	assert.Contains(t, b.String(), `msg="config has the published recipe's hooks, run as published" config=vxlan preset=vxlan lint_findings=`)
	assert.NotContains(t, b.String(), "level=WARN")

	edited, err := hooks.Parse([]byte(strings.Replace(string(raw), "read VTEP;", "read VTEP; true;", 1)))
	require.NoError(t, err)
	b.Reset()
	logLint(slog.New(slog.NewTextHandler(&b, nil)), "net-conf.json", edited)
	assert.Equal(t, len(hooks.Lint(edited)), strings.Count(b.String(), "level=WARN")+strings.Count(b.String(), "level=INFO msg=config"))
	assert.Contains(t, b.String(), "level=WARN")
	assert.NotContains(t, b.String(), "run as published")
}
