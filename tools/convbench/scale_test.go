package main

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCounts(t *testing.T) {
	ns, err := parseCounts("5000, 10000,20000")
	require.NoError(t, err)
	assert.Equal(t, []int{5000, 10000, 20000}, ns)
	for _, bad := range []string{"", "0", "-1", "5000,x", "63751"} {
		_, err := parseCounts(bad)
		assert.Error(t, err, "%q", bad)
	}
}

func TestVMHWM(t *testing.T) {
	hwm, err := vmHWM(os.Getpid())
	require.NoError(t, err)
	assert.Greater(t, hwm, int64(1<<20), "a Go test binary peaks above 1 MiB")
	_, err = vmHWM(-1)
	assert.Error(t, err)
}
