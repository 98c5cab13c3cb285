// Package runner is flexhook's lifecycle engine. It runs flannel's
// extension backend hooks for one node, in flannel's order:
//
//  1. PreStartupCommand; its trimmed stdout becomes the node's BackendData.
//  2. The node's lease is acquired from a leases.Store (the lease carrying
//     the node's PublicIP is taken back) and flannel's subnet.env written.
//  3. PostStartupCommand with the node's own SUBNET.
//  4. The store is watched. Each snapshot is diffed against the set of
//     remote leases already applied (level-triggered): a new lease runs
//     SubnetAddCommand, a vanished one SubnetRemoveCommand with the old
//     lease's values, a changed one (PublicIP, BackendData or IPv6 fields)
//     SubnetRemoveCommand for the old and then SubnetAddCommand for the new.
//     Every snapshot first goes through lease admission (leases.Policy):
//     the node's own lease is left out, and a lease that breaks a rule
//     (a key that is not canonical, a subnet outside Network, an odd
//     PublicIP, BackendData of the wrong shape, ...) reaches no hook; it is
//     warned about once and listed in status.json.
//     A failed hook is retried with exponential backoff per subnet without
//     holding up other subnets, and shows in <state-dir>/status.json.
//  5. The lease is renewed before it expires. If someone else deletes it,
//     the engine runs ShutdownCommand and Run fails with an error wrapping
//     leases.ErrLeaseGone, as flanneld exits.
//  6. When Run's context is done, the watch stops and ShutdownCommand runs.
//
// The kernel, not the journal, is the truth: at every start every current
// lease is added again (Adds converge through the shell's replace-existing;
// a reboot or a rebuilt device loses what earlier Adds did). The journal,
// <state-dir>/applied.json, holds the leases whose Add ran or began, and
// only tells which vanished while the daemon was down, so that they get
// their SubnetRemoveCommand (Removes converge too: deleting what is absent
// is success). A lease joins it through its write-ahead log,
// <state-dir>/applied.log, synced before its Add runs; the journal is
// rewritten (the log folded in) every 30s while it changes and when the
// loop stops, and kept across a clean stop. A lease removed or changed while its Add keeps failing gets
// its Remove with the data of the failed Add. ShutdownCommand runs whenever
// PreStartupCommand ran, whatever stops the start-up.
//
// Hooks run through an Executor, normally a *shell.Shell: one at a time,
// or those of up to Parallel subnets at once, each subnet's in order.
// Remote lease data reaches them only as environment variables and stdin.
// Simulate runs the same lifecycle for given leases without a store, for
// `flexhook dry-run`.
package runner
