package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/flexhook/flexhook/internal/retry"
)

// etcdPort is where StartEtcd's etcd listens on the hub's underlay address.
const etcdPort = "2379"

// StartEtcd runs the etcd binary bin (Debian's etcd-server) in the hub's
// namespace on 192.0.2.1:2379, its data and log in the lab's temp dir,
// waits until it accepts connections and returns its client URL, which
// every node reaches. Close kills it with the hub.
func (l *Lab) StartEtcd(ctx context.Context, bin string) (string, error) {
	path, err := exec.LookPath(bin)
	if err != nil {
		return "", fmt.Errorf("netlab: etcd: %w (Debian: apt-get install etcd-server)", err)
	}
	host, err := l.AddHubAddress(ctx)
	if err != nil {
		return "", err
	}
	dir := filepath.Join(l.work, "etcd")
	logPath := filepath.Join(l.work, "etcd.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return "", err
	}
	defer logf.Close()
	client := "http://" + net.JoinHostPort(host.String(), etcdPort)
	cmd := exec.Command("ip", "netns", "exec", l.hub, path, "--name", "fhlab", "--data-dir", dir,
		"--listen-client-urls", client, "--advertise-client-urls", client,
		"--listen-peer-urls", "http://127.0.0.1:2380", "--initial-advertise-peer-urls", "http://127.0.0.1:2380",
		"--initial-cluster", "fhlab=http://127.0.0.1:2380")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("netlab: etcd: %w", err)
	}
	go func() { _ = cmd.Wait() }() // reaped; Close kills it with the hub's processes
	wait, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	err = retry.Do(wait, retry.Backoff{Initial: 100 * time.Millisecond, Max: 100 * time.Millisecond}, func(ctx context.Context) error {
		c, err := l.DialHub(ctx, "tcp", net.JoinHostPort(host.String(), etcdPort))
		if err == nil {
			c.Close()
		}
		return err
	}, nil)
	if err != nil {
		return "", errors.Join(fmt.Errorf("netlab: etcd did not start; log:\n%s", tail(logPath, 20)), err)
	}
	l.log.Logf("netlab: etcd serving on %s (log %s)", client, logPath)
	return client, nil
}
