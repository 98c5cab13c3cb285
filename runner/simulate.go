package runner

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/leases"
)

// Simulate runs a whole lifecycle for `flexhook dry-run` without a store:
// PreStartupCommand (its output replaced by own.Attrs.BackendData when that
// is set), PostStartupCommand for own, SubnetAddCommand for each peer,
// SubnetRemoveCommand for each peer in reverse order, ShutdownCommand.
// Every hook runs through exec, which is expected to be in dry-run mode
// with a tracer. A failing hook does not stop the simulation; the errors
// are returned joined, each naming its hook and subnet.
func Simulate(ctx context.Context, cfg *hooks.Config, exec Executor, own leases.Lease, peers []leases.Lease) error {
	if cfg == nil || exec == nil {
		return errors.New("simulate: nil config or executor")
	}
	e := &Engine{cfg: cfg, exec: exec}
	var errs []error
	step := func(k hooks.Kind, l leases.Lease, stdin string) string {
		if ctx.Err() != nil {
			return ""
		}
		res, err := e.runHook(ctx, k, l, stdin)
		if err != nil {
			errs = append(errs, err)
		}
		return res.Stdout
	}

	self := leases.Lease{Attrs: own.Attrs}
	out := strings.TrimSpace(step(hooks.PreStartup, self, ""))
	if own.Attrs.BackendData == "" {
		own.Attrs.BackendData = out
	}
	step(hooks.PostStartup, own, "")
	for _, p := range peers {
		step(hooks.SubnetAdd, p, p.Attrs.BackendData+"\n")
	}
	for _, p := range slices.Backward(peers) {
		step(hooks.SubnetRemove, p, p.Attrs.BackendData+"\n")
	}
	step(hooks.Shutdown, own, "")
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
