package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/flexhook/flexhook/hooks"
)

const checkSynopsis = "flexhook check (--config FILE | --preset NAME) [--host] [-o text|json]"

// cmdCheck validates a config (JSON, fields, every hook's shell syntax)
// without running anything: `ok: NAME` and lint warnings, or the error.
// A lint error (lease data run as code, a builtin the interpreter lacks)
// fails the check with exit 2 after the lint lines. With -o json the same
// verdict is one checkDoc, with the same exit codes.
func cmdCheck(ctx context.Context, args []string, stdout, _ io.Writer) error {
	var f checkFlags
	if err := parseFlags("check", &f, checkSynopsis, args, stdout); err != nil {
		return err
	}
	if f.Output != "text" && f.Output != "json" {
		return usageErrorf("check: -o %q: want text or json", f.Output)
	}
	doc, err := checkConfig(ctx, f)
	if f.Output == "json" {
		if doc.Config == "" && err != nil && errors.As(err, new(*usageError)) {
			return err // no config named: a usage error, not a verdict
		}
		if err != nil {
			doc.Error = err.Error()
			var he *hooks.Error
			if errors.As(err, &he) {
				doc.ErrorAt = &errorAtDoc{File: he.File, Field: he.Field, Line: he.Line, Col: he.Col, Message: he.Msg}
			}
		}
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if eerr := enc.Encode(doc); eerr != nil {
			return errors.Join(err, eerr)
		}
		return err
	}
	if doc.loaded && doc.lintErrors == 0 {
		fmt.Fprintf(stdout, "ok: %s\n", doc.Config)
	}
	for _, w := range doc.warnings {
		fmt.Fprintf(stdout, "lint: %s\n", w.String())
	}
	if doc.Host != nil {
		for _, p := range doc.Host.Problems {
			fmt.Fprintf(stdout, "host: %s\n", p)
		}
		if doc.Host.OK {
			fmt.Fprintln(stdout, "host: ok: every command the hooks name is on PATH; CAP_NET_ADMIN")
		}
	}
	return err
}

// checkDoc is `flexhook check -o json`.
type checkDoc struct {
	APIVersion string        `json:"api_version"`
	Kind       string        `json:"kind"`
	Config     string        `json:"config"`
	OK         bool          `json:"ok"`
	Error      string        `json:"error,omitempty"`
	ErrorAt    *errorAtDoc   `json:"error_at,omitempty"`
	Lint       []lintDoc     `json:"lint"`
	Host       *hostCheckDoc `json:"host,omitempty"`

	loaded     bool // the config parsed
	warnings   []hooks.Warning
	lintErrors int
}

type lintDoc struct {
	Hook     string `json:"hook,omitempty"`
	Field    string `json:"field,omitempty"`
	Line     int    `json:"line,omitempty"`
	Col      int    `json:"col,omitempty"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
}

// errorAtDoc places a config error: the file (for JSON errors) or the
// field or hook, and line:col where there is one.
type errorAtDoc struct {
	File    string `json:"file,omitempty"`
	Field   string `json:"field,omitempty"`
	Line    int    `json:"line,omitempty"`
	Col     int    `json:"col,omitempty"`
	Message string `json:"message"`
}

// hostCheckDoc is --host's part: every problem found, none when OK.
type hostCheckDoc struct {
	OK       bool     `json:"ok"`
	Problems []string `json:"problems"`
}

// checkConfig loads and lints f's config and, with --host, checks this
// host; the error is what the command exits with.
func checkConfig(ctx context.Context, f checkFlags) (checkDoc, error) {
	doc := checkDoc{APIVersion: statusAPIVersion, Kind: "Check", Lint: []lintDoc{}}
	cfg, name, err := requireSource(ctx, f.SourceFlags)
	doc.Config = name
	if err != nil {
		if name == "" {
			doc.Config = cfgLabel(f.SourceFlags)
		}
		return doc, err
	}
	doc.loaded = true
	doc.warnings = hooks.Lint(cfg)
	for _, w := range doc.warnings {
		ld := lintDoc{Field: w.Field, Line: w.Line, Col: w.Col, Severity: w.Severity.String(), Message: w.Msg}
		if w.Field == "" {
			ld.Hook = w.Hook.String()
		}
		doc.Lint = append(doc.Lint, ld)
		if w.Severity == hooks.SeverityError {
			doc.lintErrors++
		}
	}
	if doc.lintErrors > 0 {
		return doc, configError(fmt.Errorf("%s: %d lint error(s): the hooks would fail or run lease data as code", name, doc.lintErrors))
	}
	doc.OK = true
	if !f.Host {
		return doc, nil
	}
	problems := hostProblems(cfg, ownStatus())
	doc.Host = &hostCheckDoc{OK: len(problems) == 0, Problems: append([]string{}, problems...)}
	if len(problems) > 0 {
		doc.OK = false
		return doc, &exitError{code: exitFailure, err: fmt.Errorf("%s: this host cannot run it: %d problem(s)", name, len(problems))}
	}
	return doc, nil
}

// cfgLabel names the config the flags give, for a check that could not
// load it.
func cfgLabel(src SourceFlags) string {
	if src.Config != "" {
		return src.Config
	}
	if src.Preset != "" {
		return "preset " + src.Preset
	}
	return ""
}
