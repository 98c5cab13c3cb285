package testutil_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/flexhook/flexhook/internal/testutil"
)

func TestSyncBufferConcurrentWriters(t *testing.T) {
	var b testutil.SyncBuffer
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 100 {
				fmt.Fprintf(&b, "w%d\n", i)
				_ = b.String()
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 800, strings.Count(b.String(), "\n"))
}

func TestTail(t *testing.T) {
	for _, r := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc"},
		{"a\nb", 5, "a\nb"},
		{"", 3, ""},
	} {
		if got := testutil.Tail(r.in, r.n); got != r.want {
			t.Errorf("Tail(%q, %d) = %q, want %q", r.in, r.n, got, r.want)
		}
	}
}
