// Package netcmd reads the command lines hooks use to change the kernel's
// network state, `ip route|addr|link|neigh`, `bridge fdb`, `arp -s` and
// `wg set`, into typed commands, as iproute2, net-tools and wireguard-tools
// read them: objects and verbs by iproute2's prefix rule (the first entry
// of its table the word is a prefix of: `ip r a` is `ip route add`),
// keywords compared exactly or by prefix as each tool does, numbers in
// base 0 (`id 010` is 8, `08472` is no number), and positional device
// names refused where the tool would take them as a keyword (`ip link set
// br up`: br is broadcast).
//
// It is the one grammar behind replace-existing, ownership and the fast
// path. Parse reads a command exactly or not at all: what it cannot read
// exactly is ErrNotRead, and the caller runs the real binary, which then
// decides. A read command names the kernel objects it changes (Object),
// and says whether Apply can do it through rtnetlink with the same
// messages the tool sends (Cmd.Fast).
package netcmd
