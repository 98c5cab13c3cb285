package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// mdLink is an inline Markdown link or image: [text](target).
var mdLink = regexp.MustCompile(`\]\(([^)\s]+)\)`)

// codeSpan is inline code, where brackets are not links.
var codeSpan = regexp.MustCompile("`[^`]*`")

// markdown is a Markdown file's links and the anchors of its headings.
type markdown struct {
	links   []string // "line N: target"
	anchors map[string]bool
}

func readMarkdown(t *testing.T, path string) markdown {
	t.Helper()
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	md := markdown{anchors: map[string]bool{}}
	seen := map[string]int{}
	fenced := false
	for i, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "```") {
			fenced = !fenced
			continue
		}
		if fenced {
			continue
		}
		if h, ok := strings.CutPrefix(line, "#"); ok {
			a := anchor(strings.TrimLeft(h, "#"))
			if n := seen[a]; n > 0 { // GitHub numbers a repeated heading's anchor
				md.anchors[fmt.Sprintf("%s-%d", a, n)] = true
			} else {
				md.anchors[a] = true
			}
			seen[a]++
		}
		for _, m := range mdLink.FindAllStringSubmatch(codeSpan.ReplaceAllString(line, ""), -1) {
			md.links = append(md.links, fmt.Sprintf("line %d: %s", i+1, m[1]))
		}
	}
	return md
}

// Every relative link in README.md, CONTRIBUTING.md and docs/*.md leads to a file that
// exists, and a #fragment to a heading of the Markdown file it names.
func TestDocLinks(t *testing.T) {
	docs, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	require.NoError(t, err)
	files := append([]string{filepath.Join(repoRoot, "README.md"), filepath.Join(repoRoot, "CONTRIBUTING.md")}, docs...)
	require.GreaterOrEqual(t, len(files), 8, "README.md, CONTRIBUTING.md and docs/: %v", files)
	parsed := map[string]markdown{}
	get := func(path string) markdown {
		if md, ok := parsed[path]; ok {
			return md
		}
		parsed[path] = readMarkdown(t, path)
		return parsed[path]
	}
	checked := 0
	for _, file := range files {
		rel, _ := filepath.Rel(repoRoot, file)
		for _, l := range get(file).links {
			where, target, _ := strings.Cut(l, ": ")
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			checked++
			path, frag, _ := strings.Cut(target, "#")
			dest := file
			if path != "" {
				dest = filepath.Join(filepath.Dir(file), filepath.FromSlash(path))
				if _, err := os.Stat(dest); err != nil {
					t.Errorf("%s %s: %s: no such file", rel, where, target)
					continue
				}
			}
			if frag == "" || !strings.HasSuffix(dest, ".md") {
				continue
			}
			assert.True(t, get(dest).anchors[frag], "%s %s: %s: no heading with that anchor", rel, where, target)
		}
	}
	assert.Greater(t, checked, 30, "relative links checked")
}

func TestAnchor(t *testing.T) {
	for heading, want := range map[string]string{
		" flexhook lab verify":                  "flexhook-lab-verify",
		" Restart, leave and reload":            "restart-leave-and-reload",
		" Which preset":                         "which-preset",
		" Lease data is untrusted: admission":   "lease-data-is-untrusted-admission",
		" `--fast-path` (opt-in)":               "--fast-path-opt-in",
		" Trace and dry-run":                    "trace-and-dry-run",
		" Metrics, health and logs":             "metrics-health-and-logs",
		" Checks not run, and what a snapshot ": "checks-not-run-and-what-a-snapshot",
	} {
		assert.Equal(t, want, anchor(heading), "%q", heading)
	}
}
