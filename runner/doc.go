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
//     The node's own lease and leases of another BackendType are ignored.
//     A failed hook is retried with exponential backoff per subnet without
//     holding up other subnets, and shows in <state-dir>/status.json.
//  5. The lease is renewed before it expires. If someone else deletes it,
//     the engine runs ShutdownCommand and Run fails with an error wrapping
//     leases.ErrLeaseGone, as flanneld exits.
//  6. When Run's context is done, the watch stops and ShutdownCommand runs.
//
// The applied set is kept in <state-dir>/applied.json so that after a
// restart leases that vanished meanwhile still get their
// SubnetRemoveCommand and leases already applied are not added twice. A
// successful ShutdownCommand empties it, since it tears down what the Add
// hooks built on: after such a clean stop every remote lease is added again.
//
// Hooks run through an Executor, normally a *shell.Shell, one at a time.
// Remote lease data reaches them only as environment variables and stdin.
// Simulate runs the same lifecycle for given leases without a store, for
// `flexhook dry-run`.
package runner
