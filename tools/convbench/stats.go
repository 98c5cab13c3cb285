package main

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// row is one line of a convergence table.
type row struct {
	name   string
	median time.Duration
}

func median(ds []time.Duration) time.Duration { return percentile(ds, 50) }

// percentile returns the p-th percentile (nearest rank) of ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.999999) - 1
	return s[min(max(i, 0), len(s)-1)]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }

// table prints rows with their ratio to the first one (named base in the
// header) and, for the last (the floor), how many times the floor each row
// is.
func table(title, base string, rows []row) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s\n", title)
	fmt.Fprintf(&b, "  %-46s %12s %11s %10s\n", "variant", "median", "vs "+base, "vs floor")
	first, floor := rows[0].median, rows[len(rows)-1].median
	for _, r := range rows {
		fmt.Fprintf(&b, "  %-46s %12s %10.2fx %9.1fx\n", r.name, ms(r.median),
			float64(r.median)/float64(first), float64(r.median)/float64(floor))
	}
	return b.String()
}
