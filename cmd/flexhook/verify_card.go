package main

// The report card of `flexhook lab verify`: its lines, checks that did
// not run, and how it is printed.

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
)

// checkResult is one line of the report card.
type checkResult struct {
	N      int      `json:"check"`
	Name   string   `json:"name"`
	OK     bool     `json:"ok"`
	Detail []string `json:"detail,omitempty"`
	// NotRun says why the check did not run (an earlier one it needs
	// failed); such a check is not ok.
	NotRun string `json:"not_run,omitempty"`
}

// checkNames are the checks' short names, for a check that did not run.
var checkNames = [verifyChecks + 1]string{1: "start", 2: "connectivity", 3: "idempotence", 4: "leave", 5: "removal",
	6: "restart", 7: "reboot", 8: "dry-run fidelity", 9: "mtu", 10: "restart loss"}

// skip records check num as not run, and why: what it needs that an
// earlier check did not give it. A check never passes for want of
// something to check.
func (v *verifier) skip(num int, why string) {
	v.results = append(v.results, checkResult{N: num, Name: checkNames[num], NotRun: why})
}

// notRun records checks from..verifyChecks as not run, for why.
func (v *verifier) notRun(from int, why string) {
	for num := from; num <= verifyChecks; num++ {
		v.skip(num, why)
	}
}

// add records a check; ok when there is no detail.
func (v *verifier) add(num int, name string, detail []string) bool {
	v.results = append(v.results, checkResult{N: num, Name: name, OK: len(detail) == 0, Detail: detail})
	return len(detail) == 0
}

// verifyChecks is the number of checks on the card.
const verifyChecks = 10

// report prints the card (or JSON) and returns an exit-1 error unless
// every check passed.
func (v *verifier) report(w io.Writer) error {
	slices.SortStableFunc(v.results, func(a, b checkResult) int { return a.N - b.N })
	failed, notRun := 0, 0
	for _, r := range v.results {
		switch {
		case r.NotRun != "":
			notRun++
		case !r.OK:
			failed++
		}
	}
	notRun += verifyChecks - len(v.results) // none: every path records all
	if v.f.JSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		if err := enc.Encode(map[string]any{"ok": failed+notRun == 0, "checks": v.results}); err != nil {
			return err
		}
	} else {
		for _, r := range v.results {
			switch {
			case r.NotRun != "":
				fmt.Fprintf(w, "- %d %s: not run: %s\n", r.N, r.Name, r.NotRun)
			case r.OK:
				fmt.Fprintf(w, "✓ %d %s\n", r.N, r.Name)
			default:
				fmt.Fprintf(w, "✗ %d %s\n", r.N, r.Name)
			}
			for _, d := range r.Detail {
				fmt.Fprintf(w, "    %s\n", d)
			}
		}
	}
	if failed+notRun > 0 {
		msg := fmt.Sprintf("lab verify: %d of %d checks failed", failed, verifyChecks)
		if notRun > 0 {
			msg += fmt.Sprintf(", %d not run", notRun)
		}
		return &exitError{code: exitFailure, err: errors.New(msg)}
	}
	return nil
}
