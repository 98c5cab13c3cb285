// Command benchreport reads `go test -bench` output on stdin and prints,
// for every benchmark family with a sub-benchmark named "baseline", the
// ratio of each sibling's ns/op to the baseline's, all from the same run.
// `make bench` uses it so speed is reported as side-by-side ratios.
package main

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

type result struct {
	name string
	ns   float64
}

// parse returns ns/op per benchmark, keyed by family then variant, with
// the package of each family and the GOMAXPROCS suffix stripped.
func parse(r io.Reader) (map[string][]result, []string, error) {
	fams := map[string][]result{}
	var order []string
	pkg := ""
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) >= 2 && f[0] == "pkg:" {
			pkg = f[1]
			continue
		}
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		idx := -1
		for i := 2; i < len(f); i++ {
			if f[i] == "ns/op" {
				idx = i - 1
				break
			}
		}
		if idx < 0 {
			continue
		}
		ns, err := strconv.ParseFloat(f[idx], 64)
		if err != nil {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		fam, variant, ok := strings.Cut(name, "/")
		if !ok {
			continue
		}
		key := pkg + " " + fam
		if _, seen := fams[key]; !seen {
			order = append(order, key)
		}
		fams[key] = append(fams[key], result{variant, ns})
	}
	return fams, order, sc.Err()
}

func report(w io.Writer, fams map[string][]result, order []string) {
	sort.Strings(order)
	for _, key := range order {
		rs := fams[key]
		base := -1.0
		for _, r := range rs {
			if r.name == "baseline" {
				base = r.ns
			}
		}
		if base <= 0 {
			continue
		}
		fmt.Fprintf(w, "%s\n", key)
		for _, r := range rs {
			fmt.Fprintf(w, "  %-40s %14.0f ns/op  %7.2fx baseline\n", r.name, r.ns, r.ns/base)
		}
	}
}

func main() {
	fams, order, err := parse(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
	report(os.Stdout, fams, order)
}
