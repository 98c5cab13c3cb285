package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/metrics"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/runner/shell"
)

// hookRunner runs one config's hooks through an Executor: the variables
// come from a lease, stdout is logged, and an error names the hook and the
// subnet. The Engine and Simulate both run their hooks through it.
type hookRunner struct {
	cfg     *hooks.Config
	exec    Executor
	log     *slog.Logger
	metrics *metrics.Metrics // nil in Simulate
}

// vars returns the hook variables for lease l.
func (h *hookRunner) vars(l leases.Lease) hooks.Vars {
	return hooks.Vars{
		Network:     h.cfg.Network,
		IPv6Network: h.cfg.IPv6Network,
		Subnet:      l.Subnet,
		IPv6Subnet:  l.IPv6Subnet,
		PublicIP:    l.Attrs.PublicIP,
		PublicIPv6:  l.Attrs.PublicIPv6,

		DirectRouting: h.cfg.Backend.DirectRouting,
	}
}

// runHook runs the hook of kind k for lease l; an empty hook is skipped.
// The error names the hook and the subnet.
func (h *hookRunner) runHook(ctx context.Context, k hooks.Kind, l leases.Lease, stdin string) (shell.Result, error) {
	hook := h.cfg.Backend.Hook(k)
	if hook.Empty() {
		return shell.Result{}, nil
	}
	subnet := ""
	if l.Subnet.IsValid() {
		subnet = l.Subnet.String()
	}
	start := time.Now()
	h.metrics.LoopTurned(start) // a hook starting is progress (/healthz)
	res, err := h.exec.Run(ctx, shell.Request{Hook: hook, Env: k.Env(h.vars(l)), Stdin: stdin, Subnet: subnet})
	h.metrics.LoopTurned(time.Now())
	if ctx.Err() == nil { // an interrupted hook is no run to count
		h.metrics.HookRan(k, time.Since(start), err)
	}
	if k != hooks.PreStartup && h.log != nil && strings.TrimSpace(res.Stdout) != "" {
		h.log.Info("hook output", "hook", k.String(), "subnet", subnet, "stdout", strings.TrimSpace(res.Stdout))
	}
	if err != nil {
		err = withStderr(err, res.Stderr)
	}
	var he *shell.HookError
	switch {
	case err == nil:
		return res, nil
	case errors.As(err, &he): // already names the hook and the subnet
		return res, err
	case subnet == "":
		return res, fmt.Errorf("%s: %w", k, err)
	}
	return res, fmt.Errorf("%s (SUBNET=%s): %w", k, subnet, err)
}

// stderrTail bounds what of a failed hook's stderr its error carries.
const (
	stderrTailLines = 3
	stderrTailBytes = 400
)

// withStderr adds the last lines of a failed hook's stderr to its error
// (so the "hook failed" line and status.json say why, not only "exit
// status 2"), control characters replaced: the hook may have printed a
// peer's data.
func withStderr(err error, stderr string) error {
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if len(lines) > stderrTailLines {
		lines = lines[len(lines)-stderrTailLines:]
	}
	tail := strings.TrimSpace(strings.Join(lines, " | "))
	if tail == "" {
		return err
	}
	if len(tail) > stderrTailBytes {
		tail = "…" + strings.ToValidUTF8(tail[len(tail)-stderrTailBytes:], "")
	}
	return fmt.Errorf("%w (stderr: %s)", err, leases.Printable(tail))
}
