// Package runner is flexhook's lifecycle engine. It runs flannel's
// extension backend hooks for one node, in flannel's order:
//
//  1. PreStartupCommand; its trimmed stdout becomes the node's BackendData.
//  2. The node's lease is acquired from a leases.Store (the lease carrying
//     the node's PublicIP is taken back).
//  3. PostStartupCommand with the node's own SUBNET; then flannel's
//     subnet.env, whose FLANNEL_MTU is the path's (subnetenv.go).
//  4. The store is watched, and the remote leases are kept applied
//     (below) until Run's context is done: then the watch stops and
//     ShutdownCommand runs. If someone else deletes the own lease, the
//     engine runs ShutdownCommand and Run fails with an error wrapping
//     leases.ErrLeaseGone, as flanneld exits.
//
// ShutdownCommand runs whenever PreStartupCommand ran, whatever stops the
// start-up.
//
// # Parts
//
// The watch phase is a few parts with one job each, none pointing back at
// the Engine; the loop (loop.go) wires them to events and timers:
//
//   - admission (admit.go): each store snapshot through lease admission
//     (leases.Policy); refused leases are remembered, warned about once,
//     counted and listed in status.json.
//   - reconcile (diff.go): the pure reconciler. Admitted leases + the
//     journal's versions + the versions added since the start → every
//     Remove (a journal version that is not its subnet's desired one),
//     then every Add (a desired lease not added since the start: the
//     kernel, not the journal, is the truth, so a start adds everything
//     again; Adds converge through the shell's replace-existing).
//   - the journal (journal.go, journalfs.go): every version of a remote
//     lease that may be in the kernel, with its own data. Intent before
//     effect: a version is in it, synced, before any hook may add it, and
//     leaves only after its Remove succeeded. A torn tail is cut off on
//     load; a corrupt file is moved aside and reported.
//   - the retry queue (retryq.go): per-subnet exponential backoff; a
//     failing subnet does not hold up the others.
//   - the core (core.go): the synchronous heart, with no goroutine or
//     timer of its own: step runs one batch, every due Remove (of any
//     subnet) before any Add, up to Parallel subnets at a time within each
//     phase; an Add waits while a Remove of its subnet is pending, and
//     runs only once its intent is recorded; a Remove that succeeds makes
//     the applied leases of the same node (PublicIP or BackendData) run
//     their Add again, since it may have undone them. The simulation test
//     drives it directly.
//   - the renewer (renewer.go): renews the own lease in a goroutine of its
//     own, bounded by the store timeout, so hooks go on while the store is
//     slow.
//   - the status writer (statuswriter.go): status.json, written by its own
//     goroutine so the loop never waits on the disk.
//
// Data flow: store.Watch → snapshot → admission → core.desired;
// core.step → reconcile → journal.intend → hooks → journal.forget / the
// retry queue; the loop → status writer, subnet.env, metrics, compaction
// of the journal (every 30 s while it changes, and on stop).
//
// Hooks run through an Executor, normally a *shell.Shell. Remote lease
// data reaches them only as environment variables and stdin. Simulate
// runs the same lifecycle for given leases without a store, for `flexhook
// dry-run`.
package runner
