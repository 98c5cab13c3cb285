package shell_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/flexhook/flexhook/runner/shell"
)

func TestFormatArgv(t *testing.T) {
	tests := []struct {
		argv []string
		want string
	}{
		{[]string{"ip", "route", "add", "10.50.2.0/24"}, "ip route add 10.50.2.0/24"},
		{[]string{"wg", "set", "wg0", "peer", "ab+c/d=="}, "wg set wg0 peer ab+c/d=="},
		{[]string{"X=1"}, "'X=1'"},
		{[]string{"echo", "a b"}, "echo 'a b'"},
		{[]string{"echo", "$(touch x)"}, "echo '$(touch x)'"},
		{[]string{"echo", "a=b c"}, "echo 'a=b c'"},
		{[]string{"echo", ""}, "echo ''"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, shell.FormatArgv(tt.argv), "%q", tt.argv)
	}
}
