package shell

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"mvdan.cc/sh/v3/interp"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/netcmd"
)

// NodeOwner is the owner of what the node's own hooks (PreStartup,
// PostStartup, Shutdown) make; a lease's hooks own by their SUBNET.
const NodeOwner = "node"

// Ownership is the table that says which lease, or the node, made each
// kernel object hooks changed (see [Owners]). The shell asks it before a
// command it reads (internal/netcmd) changes an object, and tells it what
// came of the command.
type Ownership interface {
	// Claim asks whether owner's hook may do v to obj. Nil lets the
	// command run (and, unless v is Del, holds obj for owner until Done);
	// a *ConflictError refuses it. The node's hooks are never refused.
	Claim(owner string, obj netcmd.Object, v netcmd.Verb) error
	// Done tells whether the command Claim let run succeeded.
	Done(owner string, obj netcmd.Object, v netcmd.Verb, ok bool)
}

// Conflict reasons: the object is another lease's, the node's own hooks
// made it, or it was on the node before flexhook started.
const (
	ConflictLease       = "other_lease"
	ConflictNode        = "node_object"
	ConflictPreexisting = "preexisting"
)

// ConflictError is the error of a hook stopped before it changed a
// kernel object that is not its lease's. Its text names the object and
// its owner, e.g. `fdb b2:d1:fc:40:8d:2f dev flannel-vxlan belongs to
// lease 10.50.2.0/24`.
type ConflictError struct {
	Object netcmd.Object
	Reason string // ConflictLease, ConflictNode or ConflictPreexisting
	Owner  string // the other lease's subnet, with ConflictLease
}

func (e *ConflictError) Error() string {
	switch e.Reason {
	case ConflictLease:
		return fmt.Sprintf("%s belongs to lease %s", e.Object, e.Owner)
	case ConflictNode:
		return fmt.Sprintf("%s belongs to this node (made by its own hooks)", e.Object)
	}
	return fmt.Sprintf("%s was on this node before flexhook started", e.Object)
}

// owner is who the hook being run owns by.
func (st *runState) owner() string {
	switch st.hook {
	case hooks.SubnetAdd, hooks.SubnetRemove:
		return st.subnet
	}
	return NodeOwner
}

// ownedObjects is the ownership and replace-existing middleware, the
// outermost. For a command netcmd reads, it asks the Ownership table
// before the command runs: an object of another lease, of the node, or
// there before flexhook started stops a lease's hook with a
// *ConflictError, except that a del of it is left undone and counts as
// done (the lease never had it). Then replace-existing (see
// [ReplaceExisting]) runs the command; its outcome goes back to the table.
func (st *runState) ownedObjects(next interp.ExecHandlerFunc) interp.ExecHandlerFunc {
	if st.s.dryRun || st.s.mw.owners == nil && !st.s.mw.replaceExisting {
		return next
	}
	return func(ctx context.Context, args []string) error {
		c, err := netcmd.Parse(args)
		if err != nil {
			// Not read: runs as written, never replaced.
			return next(withUnread(ctx, args, err), args)
		}
		owner := st.owner()
		if err := st.claim(owner, c, c.Verb); err != nil {
			var ce *ConflictError
			if c.Verb == netcmd.Del && errors.As(err, &ce) {
				st.s.log.Info("del of an object that is not this lease's: left as it is",
					"hook", st.hook.String(), "subnet", st.subnet, "command", strings.Join(args, " "), "reason", err.Error())
				return nil
			}
			return err
		}
		err = st.replaceOrConverge(withCmd(ctx, c), next, args, c, owner)
		if st.s.mw.owners != nil {
			for _, o := range c.Objects {
				st.s.mw.owners.Done(owner, o, c.Verb, err == nil)
			}
		}
		return err
	}
}

// claim asks the table for each of c's objects.
func (st *runState) claim(owner string, c *netcmd.Cmd, v netcmd.Verb) error {
	if st.s.mw.owners == nil {
		return nil
	}
	for i, o := range c.Objects {
		if err := st.s.mw.owners.Claim(owner, o, v); err != nil {
			for _, done := range c.Objects[:i] {
				st.s.mw.owners.Done(owner, done, v, false)
			}
			return err
		}
	}
	return nil
}
