package leases

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestWarm(t *testing.T) {
	var w Warm[string]
	assert.True(t, w.Wanted())
	w.Keep("a")
	w.Keep("b")
	v, ok := w.Take()
	assert.True(t, ok)
	assert.Equal(t, "b", v, "the last kept")

	assert.False(t, w.Wanted(), "after a Take")
	w.Keep("c")
	_, ok = w.Take()
	assert.False(t, ok, "nothing is kept after a Take")

	var none Warm[int]
	_, ok = none.Take()
	assert.False(t, ok, "nothing kept")
}
