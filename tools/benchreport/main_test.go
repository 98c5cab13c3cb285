package main

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestReportRatios(t *testing.T) {
	in := `pkg: example.com/x
BenchmarkExec/baseline-2   	  1000	      2000 ns/op	  10 B/op
BenchmarkExec/interp-2     	  1000	      3000 ns/op	  10 B/op
BenchmarkLonely-2          	  1000	      3000 ns/op
BenchmarkNoBase/a-2        	  1000	      3000 ns/op
`
	fams, order, err := parse(strings.NewReader(in))
	require.NoError(t, err)
	var b strings.Builder
	report(&b, fams, order)
	out := b.String()
	require.Contains(t, out, "example.com/x BenchmarkExec")
	require.Contains(t, out, "1.50x baseline")
	require.NotContains(t, out, "NoBase")
}
