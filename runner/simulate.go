package runner

import (
	"context"
	"errors"
	"log/slog"
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
// are returned joined, each naming its hook and subnet. When
// own.Attrs.BackendData is given, a failing PreStartupCommand is no error:
// it may read system state the simulation lacks (a custom recipe's
// `read mac < /sys/class/net/$dev/address`, of a device dry-run did not
// create); its failure is traced and logged, and the simulation goes on
// with the given data. log may be nil (slog.Default()).
func Simulate(ctx context.Context, cfg *hooks.Config, exec Executor, own leases.Lease, peers []leases.Lease, log *slog.Logger) error {
	if cfg == nil || exec == nil {
		return errors.New("simulate: nil config or executor")
	}
	if log == nil {
		log = slog.Default()
	}
	h := &hookRunner{cfg: cfg, exec: exec, log: log}
	var errs []error
	step := func(k hooks.Kind, l leases.Lease, stdin string) (string, error) {
		if ctx.Err() != nil {
			return "", nil
		}
		res, err := h.runHook(ctx, k, l, stdin)
		return res.Stdout, err
	}
	run := func(k hooks.Kind, l leases.Lease, stdin string) {
		if _, err := step(k, l, stdin); err != nil {
			errs = append(errs, err)
		}
	}

	self := leases.Lease{Attrs: own.Attrs}
	out, err := step(hooks.PreStartup, self, "")
	switch {
	case err != nil && own.Attrs.BackendData != "":
		log.Warn("PreStartupCommand failed in the simulation; going on with the given BackendData", "error", err)
	case err != nil:
		errs = append(errs, err)
	}
	if own.Attrs.BackendData == "" {
		own.Attrs.BackendData = strings.TrimSpace(out)
	}
	run(hooks.PostStartup, own, "")
	for _, p := range peers {
		run(hooks.SubnetAdd, p, p.Attrs.BackendData+"\n")
	}
	for _, p := range slices.Backward(peers) {
		run(hooks.SubnetRemove, p, p.Attrs.BackendData+"\n")
	}
	run(hooks.Shutdown, own, "")
	if err := ctx.Err(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
