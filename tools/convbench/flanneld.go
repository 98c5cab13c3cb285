package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/flexhook/flexhook/leases"
)

// The flanneld section: flannel's own daemon (its compiled host-gw and
// vxlan backends, built by `make flanneld`) against flexhook with the
// preset that does the same with extension hooks, both on an embedded
// etcd on loopback, each timed from its process's start to every lease
// in the kernel, as a netlink dump in this process sees it.
const (
	// flannelVXLANDev is flanneld's vxlan device for VNI 1.
	flannelVXLANDev = "flannel.1"
	// ownSubnetMin keeps both daemons' own subnet out of countRoot,
	// where the remote leases' routes are counted.
	ownSubnetMin = "10.128.0.0"
	// runTimeout bounds one run, from the start to every lease in the
	// kernel.
	runTimeout = 10 * time.Minute
)

// flanneldBackends are flanneld's compiled backends compared; each has a
// preset of the same name.
var flanneldBackends = []string{"host-gw", "vxlan"}

// etcdBench is one backend's setup: the same N leases twice in one etcd,
// under flanneld's prefix in its own format (BackendType host-gw or
// vxlan) and under flexhook's as extension leases.
type etcdBench struct {
	*bench
	cli            *clientv3.Client
	endpoint       string
	flannelPrefix  string
	flexhookPrefix string
}

// flanneldSection prints a table per backend, or one line saying it was
// skipped when there is no flanneld binary.
func flanneldSection(ctx context.Context, c config) error {
	if c.flanneld == "" {
		fmt.Println("\nflanneld: skipped: no flanneld binary (make flanneld)")
		return nil
	}
	version := flanneldVersion(ctx, c.flanneld)
	e, endpoint, err := startEtcd(filepath.Join(c.work, "etcd-flanneld"))
	if err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	defer e.Close()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, DialTimeout: 10 * time.Second})
	if err != nil {
		return fmt.Errorf("etcd client: %w", err)
	}
	defer cli.Close()
	for _, backend := range flanneldBackends {
		rows, err := flanneldCompare(ctx, c, cli, endpoint, backend, version)
		if err != nil {
			return fmt.Errorf("flanneld %s: %w", backend, err)
		}
		fmt.Print(table(fmt.Sprintf("flanneld vs flexhook, %s, %d leases in etcd, from the process's start to all in the kernel",
			backend, c.n), "flanneld", rows))
	}
	return nil
}

// flanneldVersion is what `flanneld --version` prints (on stderr).
func flanneldVersion(ctx context.Context, bin string) string {
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	if v := strings.TrimSpace(string(out)); err == nil && v != "" && !strings.Contains(v, "\n") {
		return v
	}
	return "(version unknown)"
}

func flanneldCompare(ctx context.Context, c config, cli *clientv3.Client, endpoint, backend, version string) ([]row, error) {
	_, hooks, err := benchConfig(backend)
	if err != nil {
		return nil, err
	}
	eb := &etcdBench{
		bench:          &bench{c: c, preset: backend, hooks: hooks, n: c.n},
		cli:            cli,
		endpoint:       endpoint,
		flannelPrefix:  "/convbench/flanneld-" + backend,
		flexhookPrefix: "/convbench/flexhook-" + backend,
	}
	raw, err := json.Marshal(map[string]any{"Network": network, "SubnetLen": 24, "SubnetMin": ownSubnetMin, "Backend": hooks})
	if err != nil {
		return nil, err
	}
	eb.cfgPath = filepath.Join(c.work, "etcd-"+backend+".json")
	if err := os.WriteFile(eb.cfgPath, raw, 0o600); err != nil {
		return nil, err
	}
	if err := eb.fill(ctx); err != nil {
		return nil, err
	}
	vs := []variant[*etcdBench]{
		{fmt.Sprintf("flanneld %s (compiled %s)", version, backend), (*etcdBench).flanneldRun},
		{"flexhook (default: fast path)", func(eb *etcdBench, ctx context.Context, round int) (time.Duration, error) {
			return eb.flexhookEtcdRun(ctx, round, nil)
		}},
		{"flexhook --fast-path=false", func(eb *etcdBench, ctx context.Context, round int) (time.Duration, error) {
			return eb.flexhookEtcdRun(ctx, round, []string{"--fast-path=false"})
		}},
		{"ip -batch incl. etcd list (the floor)", (*etcdBench).ipBatchEtcd},
	}
	return interleave(ctx, c.rounds, "flanneld/"+backend, eb, eb.reset, vs)
}

// flannelValue is remote lease i's value under flanneld's prefix, as
// flanneld writes it: BackendType is the backend's, and vxlan's
// BackendData is an object with the VNI and the VTEP's MAC.
func flannelValue(i int, backend string) ([]byte, error) {
	l := lease(i, backend == "vxlan")
	v := struct {
		PublicIP    string
		PublicIPv6  *string
		BackendType string
		BackendData json.RawMessage `json:",omitempty"`
	}{PublicIP: l.Attrs.PublicIP.String(), BackendType: backend}
	if backend == "vxlan" {
		data, err := json.Marshal(struct {
			VNI     int
			VtepMAC string
		}{1, l.Attrs.BackendData})
		if err != nil {
			return nil, err
		}
		v.BackendData = data
	}
	return json.Marshal(v)
}

// fill writes flanneld's config and both prefixes' N leases, all on one
// etcd lease of a day (flanneld reads each lease's TTL).
func (eb *etcdBench) fill(ctx context.Context) error {
	cfg, err := json.Marshal(map[string]any{"Network": network, "SubnetLen": 24, "SubnetMin": ownSubnetMin,
		"EnableNFTables": true, "Backend": map[string]string{"Type": eb.preset}})
	if err != nil {
		return err
	}
	if _, err := eb.cli.Put(ctx, eb.flannelPrefix+"/config", string(cfg)); err != nil {
		return err
	}
	grant, err := eb.cli.Grant(ctx, 24*3600)
	if err != nil {
		return err
	}
	for i := range eb.n {
		l := lease(i, eb.preset == "vxlan")
		key := "/subnets/" + leases.SubnetKey(l.Subnet, l.IPv6Subnet)
		fv, err := flannelValue(i, eb.preset)
		if err != nil {
			return err
		}
		xv, err := leases.MarshalAttrs(l.Attrs)
		if err != nil {
			return err
		}
		if _, err := eb.cli.Txn(ctx).Then(
			clientv3.OpPut(eb.flannelPrefix+key, string(fv), clientv3.WithLease(grant.ID)),
			clientv3.OpPut(eb.flexhookPrefix+key, string(xv), clientv3.WithLease(grant.ID)),
		).Commit(); err != nil {
			return err
		}
	}
	return nil
}

// reset removes what a round put in the kernel (both vxlan devices go
// with their neighbours and fdb) and the daemons' own leases, so each run
// joins as a new node.
func (eb *etcdBench) reset(ctx context.Context) error {
	_ = exec.CommandContext(ctx, "ip", "link", "del", flannelVXLANDev).Run() // absent unless flanneld's vxlan ran
	if err := eb.bench.reset(ctx); err != nil {
		return err
	}
	for _, p := range []string{eb.flannelPrefix, eb.flexhookPrefix} {
		resp, err := eb.cli.Get(ctx, p+"/subnets/", clientv3.WithPrefix())
		if err != nil {
			return err
		}
		for _, kv := range resp.Kvs {
			a, err := leases.UnmarshalAttrs(kv.Value)
			if err != nil || a.PublicIP.String() != ownPublicIP {
				continue
			}
			if _, err := eb.cli.Delete(ctx, string(kv.Key)); err != nil {
				return err
			}
		}
	}
	return nil
}

// state is a fresh directory for one run.
func (eb *etcdBench) state(who string, round int) (string, error) {
	dir := filepath.Join(eb.c.work, fmt.Sprintf("%s-%s-%d-%d", who, eb.preset, round, time.Now().UnixNano()))
	return dir, os.MkdirAll(dir, 0o700)
}

// dev is the vxlan device whose neighbours and fdb count ("" for host-gw).
func (eb *etcdBench) dev(name string) string {
	if eb.preset == "vxlan" {
		return name
	}
	return ""
}

// timeDaemon starts bin and returns the time from just before its start
// to every lease in the kernel, then stops it (SIGTERM).
func (eb *etcdBench) timeDaemon(ctx context.Context, bin string, args []string, dev string) (time.Duration, error) {
	start := time.Now()
	d, err := startDaemon(ctx, bin, args)
	if err != nil {
		return 0, err
	}
	defer d.stop()
	at, err := waitKernel(ctx, dev, eb.n, runTimeout, d.done)
	if err != nil {
		return 0, fmt.Errorf("%w; last lines:\n%s", err, d.lastLines())
	}
	return at.Sub(start), d.stop()
}

// flanneldRun runs flanneld with its compiled backend: its net-conf in
// etcd (nftables mode, so no br_netfilter check), the interface and
// public IP given, its subnet file in a fresh directory, no masquerade.
func (eb *etcdBench) flanneldRun(ctx context.Context, round int) (time.Duration, error) {
	dir, err := eb.state("flanneld", round)
	if err != nil {
		return 0, err
	}
	args := []string{"--etcd-endpoints", eb.endpoint, "--etcd-prefix", eb.flannelPrefix, "--iface", "veth0",
		"--public-ip", ownPublicIP, "--subnet-file", filepath.Join(dir, "subnet.env"), "--ip-masq=false"}
	return eb.timeDaemon(ctx, eb.c.flanneld, args, eb.dev(flannelVXLANDev))
}

// flexhookEtcdRun runs flexhook with the preset's hooks on the extension
// leases.
func (eb *etcdBench) flexhookEtcdRun(ctx context.Context, round int, extra []string) (time.Duration, error) {
	dir, err := eb.state("flexhook", round)
	if err != nil {
		return 0, err
	}
	args := append([]string{"run", "--config", eb.cfgPath, "--etcd-endpoints", eb.endpoint, "--etcd-prefix", eb.flexhookPrefix,
		"--state-dir", dir, "--public-ip", ownPublicIP, "--subnet-file", filepath.Join(dir, "subnet.env")}, extra...)
	return eb.timeDaemon(ctx, eb.c.flexhook, args, eb.dev(vxlanDev))
}

// ipBatchEtcd is the floor: a new etcd client lists the extension leases,
// then one ip -batch (and bridge -batch) applies them; the vxlan device
// is made before the clock starts, as in the other tables.
func (eb *etcdBench) ipBatchEtcd(ctx context.Context, _ int) (time.Duration, error) {
	if err := eb.startup(ctx); err != nil {
		return 0, err
	}
	start := time.Now()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{eb.endpoint}, DialTimeout: 10 * time.Second})
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	resp, err := cli.Get(ctx, eb.flexhookPrefix+"/subnets/", clientv3.WithPrefix())
	if err != nil {
		return 0, err
	}
	var ls []leases.Lease
	for _, kv := range resp.Kvs {
		l := leases.Decode(strings.TrimPrefix(string(kv.Key), eb.flexhookPrefix+"/subnets/"), kv.Value)
		if l.Invalid == "" && l.Attrs.PublicIP.String() != ownPublicIP {
			ls = append(ls, l)
		}
	}
	if err := eb.batch(ctx, ls); err != nil {
		return 0, err
	}
	at, err := waitKernel(ctx, eb.dev(vxlanDev), eb.n, runTimeout, nil)
	if err != nil {
		return 0, err
	}
	return at.Sub(start), nil
}
