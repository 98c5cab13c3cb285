package shell

import (
	"context"
	"strings"

	"mvdan.cc/sh/v3/interp"

	"github.com/flexhook/flexhook/internal/netcmd"
)

// wireguard is the wireguard-userspace middleware: it replaces or backs up
// `ip link add NAME type wireguard` with `wireguard-go NAME`, which creates
// the same interface from userspace (wireguard-go daemonizes itself; its
// daemon stays in the finished command's process group, which is only
// signalled if the hook is cancelled or times out while that command runs).
func (st *runState) wireguard(next interp.ExecHandlerFunc) interp.ExecHandlerFunc {
	mode := st.s.wgMode
	if mode == WireguardNever {
		return next
	}
	return func(ctx context.Context, args []string) error {
		name, ok := WireguardLinkName(args)
		if !ok {
			return next(ctx, args)
		}
		log := st.s.log.With("hook", st.hook.String(), "subnet", st.subnet, "link", name)
		userspace := []string{"wireguard-go", name}
		if mode == WireguardAlways {
			log.Info("creating wireguard link with wireguard-go (--wireguard-userspace=always)")
			return next(ctx, userspace)
		}
		ipErr := &capWriter{max: 64 << 10}
		err := next(withStderr(ctx, ipErr), args)
		if err == nil || ctx.Err() != nil || !kernelLacksWireguard(ipErr.String()) {
			_, _ = ioOf(ctx).Stderr.Write([]byte(ipErr.String()))
			return err
		}
		log.Info("kernel lacks the wireguard link type, creating it with wireguard-go",
			"ip_stderr", strings.TrimSpace(ipErr.String()))
		return next(ctx, userspace)
	}
}

// kernelLacksWireguard reports whether ip's stderr says the kernel has no
// wireguard link type ("Error: Unknown device type." from current
// iproute2, "RTNETLINK answers: Operation not supported" from older ones).
func kernelLacksWireguard(stderr string) bool {
	s := strings.ToLower(stderr)
	return strings.Contains(s, "unknown device type") || strings.Contains(s, "not supported")
}

// WireguardLinkName returns NAME if argv is `ip link add [dev|name] NAME
// type wireguard` as internal/netcmd reads it (ip's abbreviations of link
// and add: ip l a NAME type wireguard). Anything else, including global
// ip options and link options such as mtu, does not match and runs
// unchanged. NAME must be a valid interface name that cannot be mistaken
// for an option of wireguard-go.
func WireguardLinkName(argv []string) (string, bool) {
	if len(argv) == 0 || argv[len(argv)-1] != "wireguard" {
		return "", false // most commands: no need to read them
	}
	c, err := netcmd.Parse(argv)
	if err != nil || c.Verb != netcmd.Add || len(c.Objects) != 1 || c.Objects[0].Kind() != "link" {
		return "", false
	}
	name := strings.TrimPrefix(string(c.Objects[0]), "link ")
	if !validIfName(name) {
		return "", false
	}
	return name, true
}

// validIfName follows the kernel's dev_valid_name: 1 to 15 bytes, not "."
// or "..", no '/', ':' or whitespace; and, so it is never an option of
// wireguard-go, no leading '-'.
func validIfName(name string) bool {
	if name == "" || len(name) > 15 || name == "." || name == ".." || name[0] == '-' {
		return false
	}
	return !strings.ContainsAny(name, "/: \t\n\r\v\f")
}
