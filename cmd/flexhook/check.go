package main

import (
	"context"
	"fmt"
	"io"

	"github.com/flexhook/flexhook/hooks"
)

const checkSynopsis = "flexhook check (--config FILE | --preset NAME) [--host]"

// cmdCheck validates a config (JSON, fields, every hook's shell syntax)
// without running anything: `ok: NAME` and lint warnings, or the error.
// A lint error (lease data run as code, a builtin the interpreter lacks)
// fails the check with exit 2 after the lint lines.
func cmdCheck(ctx context.Context, args []string, stdout, _ io.Writer) error {
	var f checkFlags
	if err := parseFlags("check", &f, checkSynopsis, args, stdout); err != nil {
		return err
	}
	cfg, name, err := requireSource(ctx, f.SourceFlags)
	if err != nil {
		return err
	}
	ws := hooks.Lint(cfg)
	errs := 0
	for _, w := range ws {
		if w.Severity == hooks.SeverityError {
			errs++
		}
	}
	if errs == 0 {
		fmt.Fprintf(stdout, "ok: %s\n", name)
	}
	for _, w := range ws {
		fmt.Fprintf(stdout, "lint: %s\n", w.String())
	}
	if errs > 0 {
		return configError(fmt.Errorf("%s: %d lint error(s): the hooks would fail or run lease data as code", name, errs))
	}
	if !f.Host {
		return nil
	}
	problems := hostProblems(cfg, ownStatus())
	for _, p := range problems {
		fmt.Fprintf(stdout, "host: %s\n", p)
	}
	if len(problems) > 0 {
		return &exitError{code: exitFailure, err: fmt.Errorf("%s: this host cannot run it: %d problem(s)", name, len(problems))}
	}
	fmt.Fprintln(stdout, "host: ok: every command the hooks name is on PATH; CAP_NET_ADMIN")
	return nil
}
