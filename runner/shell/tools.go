package shell

import (
	"context"

	"mvdan.cc/sh/v3/interp"

	"github.com/flexhook/flexhook/internal/coreutils"
	"github.com/flexhook/flexhook/internal/puretools"
)

// inprocess is the in-process tools middleware (see [InprocessTools]): a
// command that inprocessTool recognises, whose name resolves to the
// system's binary of that name, runs in the daemon.
func (st *runState) inprocess(next interp.ExecHandlerFunc) interp.ExecHandlerFunc {
	if !st.s.mw.inprocTools {
		return next
	}
	return func(ctx context.Context, args []string) error {
		hc := ioOf(ctx)
		name := args[0]
		if !coreutils.Known(name) {
			return next(ctx, args) // an unknown tool, or a path
		}
		if !st.s.resolve.systemTool(hc, name, puretools.SystemDirs) {
			return next(ctx, args)
		}
		run, closeAll, ok := coreutils.Command(args, hc.Dir)
		if !ok {
			return next(ctx, args)
		}
		defer closeAll()
		if code := run(hc.Stdin, hc.Stdout); code != 0 {
			return interp.ExitStatus(code)
		}
		return nil
	}
}
