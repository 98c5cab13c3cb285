package runner

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestWithStderr(t *testing.T) {
	base := errors.New("exit status 2")
	for _, tc := range []struct {
		name, stderr, want string
	}{
		{"none", "", "exit status 2"},
		{"blank", "\n\n", "exit status 2"},
		{"one line", "RTNETLINK answers: File exists\n", "exit status 2 (stderr: RTNETLINK answers: File exists)"},
		{"last three lines", "a\nb\nc\nd\n", "exit status 2 (stderr: b | c | d)"},
		{"control characters", "bad \x1b[2J\tdata\r\n", "exit status 2 (stderr: bad ?[2J?data)"},
		{"bounded", strings.Repeat("x", 1000), "exit status 2 (stderr: …" + strings.Repeat("x", stderrTailBytes) + ")"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := withStderr(base, tc.stderr)
			assert.Equal(t, tc.want, err.Error())
			assert.ErrorIs(t, err, base, "the hook's error stays inspectable")
		})
	}
}
