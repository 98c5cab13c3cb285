package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/flexhook/flexhook/leases"
)

// The wireguard table: the preset's device, made by wireguard-go when the
// kernel has no WireGuard (flexhook's --wireguard-userspace=auto does the
// same), with wireguard-go's UAPI sockets in a tmpfs of this mount
// namespace.
const (
	wgDev     = "flannel-wg"
	wgSockDir = "/run/wireguard"
)

// wgPeerKey is remote lease i's BackendData for the wireguard preset: a
// public key, the same in every run.
func wgPeerKey(i int) string {
	priv := wgtypes.Key(sha256.Sum256(fmt.Appendf(nil, "convbench peer %d", i)))
	return priv.PublicKey().String()
}

// privateWireguardRun mounts a tmpfs on /run/wireguard (making the
// directory if the host has none: it stays, empty), so wireguard-go's
// sockets and wg's view of them stay in this mount namespace.
func privateWireguardRun() error {
	if err := os.MkdirAll(wgSockDir, 0o755); err != nil {
		return err
	}
	if err := syscall.Mount("tmpfs", wgSockDir, "tmpfs", 0, "mode=0755"); err != nil {
		return fmt.Errorf("tmpfs on %s: %w", wgSockDir, err)
	}
	return nil
}

// wgUserspaceStartup is the preset's PostStartup for the sh -c
// emulations, with its `ip link add flannel-wg type wireguard` falling
// back to wireguard-go as flexhook's middleware does.
func wgUserspaceStartup(text string) string {
	add := "ip link add " + wgDev + " type wireguard"
	return strings.Replace(text, add, "{ "+add+" 2>/dev/null || wireguard-go "+wgDev+"; }", 1)
}

// wgDelete deletes the device and waits for its wireguard-go to exit
// (its socket goes with it), so the next round's wireguard-go does not
// lose its socket to the old one's exit.
func wgDelete(ctx context.Context) error {
	_ = exec.CommandContext(ctx, "ip", "link", "del", wgDev).Run() // absent unless wireguard
	sock := filepath.Join(wgSockDir, wgDev+".sock")
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if _, err := os.Stat(sock); errors.Is(err, os.ErrNotExist) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wireguard-go kept %s after its link was deleted: %w", sock, ctx.Err())
		case <-tick.C:
		}
	}
}

// wgPeers counts the device's peers as wg shows them.
func wgPeers(ctx context.Context) (int, error) {
	out, err := exec.CommandContext(ctx, "wg", "show", wgDev, "peers").Output()
	if err != nil {
		return 0, fmt.Errorf("wg show %s peers: %w", wgDev, err)
	}
	return len(strings.Fields(string(out))), nil
}

// wgFloor is the wireguard table's floor: one `wg set` naming every
// peer, as the recipe's SubnetAdd sets each.
func (b *bench) wgFloor(ctx context.Context, _ int) (time.Duration, error) {
	return b.timed(ctx, func(ls []leases.Lease) error {
		argv := []string{"set", wgDev}
		for _, l := range ls {
			argv = append(argv, "peer", l.Attrs.BackendData, "endpoint", l.Attrs.PublicIP.String()+":51820",
				"allowed-ips", l.Subnet.String())
		}
		if out, err := exec.CommandContext(ctx, "wg", argv...).CombinedOutput(); err != nil {
			return fmt.Errorf("wg set: %w: %s", err, out)
		}
		return nil
	})
}
