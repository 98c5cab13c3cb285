// Package etcd is the etcd v3 implementation of leases.Store. It shares one
// etcd cluster with flanneld: the same keys, values and TTLs, so flexhook
// nodes and flanneld nodes (extension backend) see each other's leases.
//
// Layout under the prefix (leases.DefaultPrefix by default):
//
//	<prefix>/config                      the net-conf JSON (Config, PutConfig)
//	<prefix>/subnets/10.50.3.0-24        {"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"extension","BackendData":"..."}
//	<prefix>/subnets/10.50.3.0-24&fd00::-64   (dual stack)
//
// Every subnet key is attached to its own etcd lease whose TTL is the lease
// lifetime (24h by default, like flanneld), so etcd deletes a lease that
// is not renewed.
//
// Acquire takes back the lease carrying the node's PublicIP, or creates a
// random free subnet with a transaction on CreateRevision == 0, retrying on
// conflict. Renew refreshes the etcd lease (KeepAliveOnce) or re-puts the
// key with a new one; a key deleted or taken by another node is reported as
// leases.ErrLeaseGone. Watch lists, then watches from the next revision;
// when the watch is compacted or breaks (etcd down, leader lost) it backs
// off, lists again and sends the fresh snapshot, so a consumer diffing
// snapshots misses no change. Keys or values that do not parse (written by
// something else) are skipped with a warning.
package etcd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/flexhook/flexhook/internal/retry"
	"github.com/flexhook/flexhook/leases"
)

// maxAttempts bounds the optimistic retries of Acquire and Renew when other
// writers change the same keys concurrently.
const maxAttempts = 16

// Watch backoff after a failed list or a broken watch.
const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 5 * time.Second
)

var (
	_ leases.Store       = (*Store)(nil)
	_ leases.ConfigStore = (*Store)(nil)
)

// Store is a leases.Store backed by etcd v3. It is safe for concurrent use.
type Store struct {
	cli        *clientv3.Client
	subnetsDir string // prefix + "/subnets/"
	configKey  string
	ttl        int64 // seconds
	log        *slog.Logger
	// listTimeout bounds each list of Watch, so an unreachable etcd is
	// logged and retried instead of waited for silently.
	listTimeout time.Duration

	rndMu sync.Mutex
	rnd   *rand.Rand

	// warm is the list Acquire chose from, kept until the first Watch:
	// that Watch follows from its revision instead of listing again (see
	// keepWarm).
	warm leases.Warm[*watchState]
}

// New connects to etcd and checks, within cfg.DialTimeout, that it answers
// a read under the prefix (so a wrong CA, certificate or password fails
// here with the cause). The store must be closed with Close.
func New(ctx context.Context, cfg Config, opts ...Option) (*Store, error) {
	o := options{ttl: leases.DefaultTTL, log: slog.Default()}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			return nil, fmt.Errorf("etcd: %w", err)
		}
	}
	if o.rnd == nil {
		o.rnd = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	tlsCfg, err := cfg.validate()
	if err != nil {
		return nil, fmt.Errorf("etcd: config: %w", err)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = leases.DefaultPrefix
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = DefaultDialTimeout
	}
	prefix := strings.TrimRight(cfg.Prefix, "/")
	if prefix == "" {
		return nil, fmt.Errorf("etcd: config: Prefix: %q leaves no prefix", cfg.Prefix)
	}
	eps := strings.Join(cfg.Endpoints, ",")
	dialOpts := []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
		// Reconnect within seconds once etcd is back (gRPC's
		// default backoff grows to two minutes).
		Backoff:           backoff.Config{BaseDelay: minBackoff, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxBackoff},
		MinConnectTimeout: cfg.DialTimeout,
	})}
	if o.dial != nil {
		dialOpts = append(dialOpts, grpc.WithContextDialer(o.dial))
	}

	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		DialTimeout: cfg.DialTimeout,
		TLS:         tlsCfg,
		Username:    cfg.Username,
		Password:    cfg.Password,
		// Ping an idle connection so a vanished etcd (not just a closed
		// one) breaks the watch and gets reconnected.
		DialKeepAliveTime:    10 * time.Second,
		DialKeepAliveTimeout: 5 * time.Second,
		DialOptions:          dialOpts,
		// The client logs JSON to stderr by default; our errors carry
		// what matters and go to slog.
		Logger: zap.NewNop(),
	})
	connectErr := func(err error) error {
		if ctx.Err() == nil {
			if cause := diagnose(ctx, cfg.Endpoints, tlsCfg); cause != nil {
				return fmt.Errorf("etcd: connect to %s: %w (%w)", eps, err, cause)
			}
		}
		return fmt.Errorf("etcd: connect to %s: %w", eps, err)
	}
	if err != nil {
		return nil, connectErr(err)
	}
	s := &Store{
		cli:        cli,
		subnetsDir: prefix + "/subnets/",
		configKey:  prefix + "/config",
		ttl:        int64((o.ttl + time.Second - 1) / time.Second),
		log:        o.log,
		rnd:        o.rnd,

		listTimeout: max(cfg.DialTimeout, time.Second),
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := cli.Get(pctx, s.subnetsDir, clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil {
		_ = cli.Close()
		return nil, connectErr(err)
	}
	s.log.Debug("etcd: connected", "config", cfg)
	return s, nil
}

// Close closes the etcd client. Leases are left to expire (or be renewed
// by a later Store).
func (s *Store) Close() error {
	if err := s.cli.Close(); err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("etcd: close: %w", err)
	}
	return nil
}

// Config returns the net-conf JSON at <prefix>/config; the error wraps
// leases.ErrNotFound when the key is absent.
func (s *Store) Config(ctx context.Context) ([]byte, error) {
	resp, err := s.cli.Get(ctx, s.configKey)
	if err != nil {
		return nil, fmt.Errorf("etcd: get %s: %w", s.configKey, err)
	}
	if len(resp.Kvs) == 0 {
		return nil, fmt.Errorf("etcd: %s: %w", s.configKey, leases.ErrNotFound)
	}
	return resp.Kvs[0].Value, nil
}

// PutConfig writes the net-conf JSON to <prefix>/config (no TTL).
func (s *Store) PutConfig(ctx context.Context, conf []byte) error {
	if _, err := s.cli.Put(ctx, s.configKey, string(conf)); err != nil {
		return fmt.Errorf("etcd: put %s: %w", s.configKey, err)
	}
	return nil
}

// entry is a parsed subnet key with the etcd metadata needed to change it
// safely.
type entry struct {
	key     string
	lease   leases.Lease
	modRev  int64
	leaseID clientv3.LeaseID
}

// list reads every subnet key and returns them sorted by subnet with the
// read's revision. Keys and values that do not decode are kept, with
// Invalid set (leases.Decode): the engine refuses and reports them.
func (s *Store) list(ctx context.Context) ([]entry, int64, error) {
	resp, err := s.cli.Get(ctx, s.subnetsDir, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, fmt.Errorf("etcd: list %s: %w", s.subnetsDir, err)
	}
	es := make([]entry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		l := leases.Decode(strings.TrimPrefix(key, s.subnetsDir), kv.Value)
		es = append(es, entry{key: key, lease: l, modRev: kv.ModRevision, leaseID: clientv3.LeaseID(kv.Lease)})
	}
	slices.SortFunc(es, func(a, b entry) int { return leases.Compare(a.lease, b.lease) })
	return es, resp.Header.Revision, nil
}

func leasesOf(es []entry) []leases.Lease {
	ls := make([]leases.Lease, len(es))
	for i, e := range es {
		ls[i] = e.lease
	}
	return ls
}

func (s *Store) key(v4, v6 netip.Prefix) string { return s.subnetsDir + leases.SubnetKey(v4, v6) }

// grant creates an etcd lease of the store's TTL and returns it with the
// expiration it gives.
func (s *Store) grant(ctx context.Context) (clientv3.LeaseID, time.Time, error) {
	start := time.Now()
	g, err := s.cli.Grant(ctx, s.ttl)
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("etcd: grant lease of %ds: %w", s.ttl, err)
	}
	return g.ID, start.Add(time.Duration(g.TTL) * time.Second), nil
}

// cleanupCtx is for best-effort cleanups that must run even when ctx was
// cancelled, but not forever.
func cleanupCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
}

// revoke revokes an etcd lease we granted but did not attach.
func (s *Store) revoke(ctx context.Context, id clientv3.LeaseID) {
	cctx, cancel := cleanupCtx(ctx)
	defer cancel()
	if _, err := s.cli.Revoke(cctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		s.log.Debug("etcd: revoke unused lease", "lease", int64(id), "error", err)
	}
}

// retire revokes the etcd lease a key was attached to before we re-put it,
// unless other keys still use it (then it is left to expire).
func (s *Store) retire(ctx context.Context, old, cur clientv3.LeaseID) {
	if old == clientv3.NoLease || old == cur {
		return
	}
	cctx, cancel := cleanupCtx(ctx)
	defer cancel()
	ttl, err := s.cli.TimeToLive(cctx, old, clientv3.WithAttachedKeys())
	if err != nil || ttl.TTL <= 0 || len(ttl.Keys) > 0 {
		return
	}
	s.revoke(ctx, old)
}

// Acquire takes back the lease carrying attrs.PublicIP when it fits r
// (refreshing its TTL and attrs with a fresh etcd lease), otherwise creates
// a random free subnet of r atomically. A lease of this PublicIP that no
// longer fits r is deleted first, as flanneld does. Out of subnets is an
// error wrapping leases.ErrNoFreeSubnet.
func (s *Store) Acquire(ctx context.Context, r leases.Range, attrs leases.Attrs) (leases.Lease, error) {
	if err := r.Validate(); err != nil {
		return leases.Lease{}, fmt.Errorf("etcd: acquire: %w", err)
	}
	ip := attrs.Owner()
	if !ip.IsValid() {
		return leases.Lease{}, errors.New("etcd: acquire: attrs has neither PublicIP nor PublicIPv6")
	}
	val, err := leases.MarshalAttrs(attrs)
	if err != nil {
		return leases.Lease{}, fmt.Errorf("etcd: acquire: %w", err)
	}
	id, exp, err := s.grant(ctx)
	if err != nil {
		return leases.Lease{}, fmt.Errorf("etcd: acquire: %w", err)
	}
	attached := false
	defer func() {
		if !attached {
			s.revoke(ctx, id)
		}
	}()

	var l leases.Lease
	err = retry.Do(ctx, s.conflictBackoff(), func(ctx context.Context) error {
		es, rev, err := s.list(ctx)
		if err != nil {
			return retry.Permanent(fmt.Errorf("etcd: acquire: %w", err))
		}
		defer func() {
			if attached {
				s.keepWarm(es, rev, s.key(l.Subnet, l.IPv6Subnet), val)
			}
		}()
		ls := leasesOf(es)
		if own, ok := leases.FindByPublicIP(ls, ip); ok {
			e := es[slices.IndexFunc(es, func(e entry) bool { return e.lease.Key == own.Key })]
			l, attached, err = s.takeBack(ctx, r, e, own, attrs, val, id, exp)
		} else {
			l, attached, err = s.create(ctx, r, ls, attrs, val, id, exp)
		}
		switch {
		case err != nil:
			return retry.Permanent(err)
		case !attached:
			return errConflict
		}
		return nil
	}, nil)
	switch {
	case err == nil:
		return l, nil
	case ctx.Err() != nil:
		return leases.Lease{}, fmt.Errorf("etcd: acquire: %w", ctx.Err())
	case errors.Is(err, errConflict):
		return leases.Lease{}, fmt.Errorf("etcd: acquire: still conflicting with other writers after %d attempts", maxAttempts)
	}
	return leases.Lease{}, err
}

// takeBack moves this node's lease e (own) to the etcd lease id with the
// new attrs, guarded by its mod revision. ok is false when it must be tried
// again: the lease changed concurrently, or it did not fit the range and was
// deleted.
func (s *Store) takeBack(ctx context.Context, r leases.Range, e entry, own leases.Lease, attrs leases.Attrs,
	val []byte, id clientv3.LeaseID, exp time.Time) (l leases.Lease, ok bool, err error) {
	if !r.Fits(own.Subnet, own.IPv6Subnet) {
		s.log.Warn("etcd: lease of this node does not fit the network config, deleting it",
			"subnet", own.Subnet, "range", r.String())
		if _, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(e.key), "=", e.modRev)).
			Then(clientv3.OpDelete(e.key)).Commit(); err != nil {
			return l, false, fmt.Errorf("etcd: acquire: delete %s: %w", e.key, err)
		}
		return l, false, nil
	}
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(e.key), "=", e.modRev)).
		Then(clientv3.OpPut(e.key, string(val), clientv3.WithLease(id))).Commit()
	if err != nil {
		return l, false, fmt.Errorf("etcd: acquire: put %s: %w", e.key, err)
	}
	if !resp.Succeeded {
		s.log.Debug("etcd: own lease changed concurrently, retrying", "key", e.key)
		return l, false, nil
	}
	s.retire(ctx, e.leaseID, id)
	l = own
	l.Attrs, l.Expiration = attrs, exp
	s.log.Info("etcd: took back lease", "subnet", l.Subnet, "public_ip", attrs.Owner())
	return l, true, nil
}

// create writes a new lease on a free subnet of r, attached to the etcd
// lease id, if no one created that key first (ok is false then).
func (s *Store) create(ctx context.Context, r leases.Range, ls []leases.Lease, attrs leases.Attrs,
	val []byte, id clientv3.LeaseID, exp time.Time) (l leases.Lease, ok bool, err error) {
	s.rndMu.Lock()
	v4, v6, err := leases.PickFree(r, ls, s.rnd)
	s.rndMu.Unlock()
	if err != nil {
		return l, false, fmt.Errorf("etcd: acquire: %w", err)
	}
	key := s.key(v4, v6)
	resp, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(id))).Commit()
	if err != nil {
		return l, false, fmt.Errorf("etcd: acquire: create %s: %w", key, err)
	}
	if !resp.Succeeded {
		s.log.Debug("etcd: subnet taken concurrently, retrying", "key", key)
		return l, false, nil
	}
	s.log.Info("etcd: acquired new lease", "subnet", v4, "public_ip", attrs.Owner())
	return leases.Lease{Subnet: v4, IPv6Subnet: v6, Attrs: attrs, Expiration: exp}, true, nil
}

// errConflict is a lost optimistic write: another writer came first.
var errConflict = errors.New("conflicting writer")

// conflictBackoff paces the optimistic retries of Acquire (at most
// maxAttempts): short random pauses, so racing nodes spread out.
func (s *Store) conflictBackoff() retry.Backoff {
	return retry.Backoff{Initial: 10 * time.Millisecond, Max: 100 * time.Millisecond, Attempts: maxAttempts,
		Jitter: func(d time.Duration) time.Duration {
			s.rndMu.Lock()
			defer s.rndMu.Unlock()
			return time.Duration(s.rnd.Int64N(int64(d)))
		}}
}

// Renew refreshes l's TTL and rewrites its attrs. With unchanged attrs it
// keeps the key's etcd lease alive (KeepAliveOnce, no watch event);
// otherwise, or when that lease is gone or has another TTL, it re-puts the
// key with a fresh etcd lease. The error wraps leases.ErrLeaseGone when the
// key was deleted or now carries another node's PublicIP.
func (s *Store) Renew(ctx context.Context, l leases.Lease) (leases.Lease, error) {
	key := s.key(l.Subnet, l.IPv6Subnet)
	val, err := leases.MarshalAttrs(l.Attrs)
	if err != nil {
		return leases.Lease{}, fmt.Errorf("etcd: renew %s: %w", l.Subnet, err)
	}
	for range maxAttempts {
		resp, err := s.cli.Get(ctx, key)
		if err != nil {
			return leases.Lease{}, fmt.Errorf("etcd: renew: get %s: %w", key, err)
		}
		if len(resp.Kvs) == 0 {
			return leases.Lease{}, fmt.Errorf("etcd: renew %s: key %s was deleted: %w", l.Subnet, key, leases.ErrLeaseGone)
		}
		kv := resp.Kvs[0]
		cur, err := leases.UnmarshalAttrs(kv.Value)
		if err != nil {
			return leases.Lease{}, fmt.Errorf("etcd: renew %s: key %s holds an unreadable value (%w): %w", l.Subnet, key, err, leases.ErrLeaseGone)
		}
		if cur.Owner() != l.Attrs.Owner() {
			return leases.Lease{}, fmt.Errorf("etcd: renew %s: now held by %s: %w", l.Subnet, cur.Owner(), leases.ErrLeaseGone)
		}
		old := clientv3.LeaseID(kv.Lease)

		if bytes.Equal(kv.Value, val) && old != clientv3.NoLease {
			start := time.Now()
			ka, err := s.cli.KeepAliveOnce(ctx, old)
			switch {
			case err == nil && ka.TTL == s.ttl:
				// Make sure the key still hangs on the lease we renewed.
				chk, err := s.cli.Get(ctx, key)
				if err != nil {
					return leases.Lease{}, fmt.Errorf("etcd: renew: get %s: %w", key, err)
				}
				if len(chk.Kvs) == 1 && chk.Kvs[0].ModRevision == kv.ModRevision {
					l.Expiration = start.Add(time.Duration(ka.TTL) * time.Second)
					return l, nil
				}
				continue
			case err != nil && ctx.Err() != nil:
				return leases.Lease{}, fmt.Errorf("etcd: renew %s: %w", l.Subnet, err)
			case err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound):
				return leases.Lease{}, fmt.Errorf("etcd: renew %s: keep lease %x alive: %w", l.Subnet, int64(old), err)
			}
			// Lease expired meanwhile, or was granted with another TTL:
			// re-put below.
		}

		id, exp, err := s.grant(ctx)
		if err != nil {
			return leases.Lease{}, fmt.Errorf("etcd: renew %s: %w", l.Subnet, err)
		}
		tr, err := s.cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
			Then(clientv3.OpPut(key, string(val), clientv3.WithLease(id))).Commit()
		if err != nil {
			s.revoke(ctx, id)
			return leases.Lease{}, fmt.Errorf("etcd: renew: put %s: %w", key, err)
		}
		if !tr.Succeeded {
			s.revoke(ctx, id)
			continue
		}
		s.retire(ctx, old, id)
		l.Expiration = exp
		return l, nil
	}
	return leases.Lease{}, fmt.Errorf("etcd: renew %s: still conflicting with other writers after %d attempts", l.Subnet, maxAttempts)
}

// List returns every lease, sorted by subnet, with Expiration from the
// remaining TTL of its etcd lease (zero for a key without one).
func (s *Store) List(ctx context.Context) ([]leases.Lease, error) {
	es, _, err := s.list(ctx)
	if err != nil {
		return nil, err
	}
	type ttlInfo struct {
		exp  time.Time
		gone bool
	}
	ttls := map[clientv3.LeaseID]ttlInfo{}
	out := make([]leases.Lease, 0, len(es))
	for _, e := range es {
		if e.leaseID != clientv3.NoLease {
			info, ok := ttls[e.leaseID]
			if !ok {
				now := time.Now()
				ttl, err := s.cli.TimeToLive(ctx, e.leaseID)
				switch {
				case errors.Is(err, rpctypes.ErrLeaseNotFound):
					info.gone = true
				case err != nil:
					return nil, fmt.Errorf("etcd: list: ttl of %s: %w", e.key, err)
				default:
					info = ttlInfo{exp: now.Add(time.Duration(ttl.TTL) * time.Second), gone: ttl.TTL <= 0}
				}
				ttls[e.leaseID] = info
			}
			if info.gone {
				continue // expired between the read and now
			}
			e.lease.Expiration = info.exp
		}
		out = append(out, e.lease)
	}
	return out, nil
}

// Remove deletes the lease of subnet (whatever its IPv6 part); the error
// wraps leases.ErrNotFound when there is none.
func (s *Store) Remove(ctx context.Context, subnet netip.Prefix) error {
	subnet = subnet.Masked()
	resp, err := s.cli.Get(ctx, s.key(subnet, netip.Prefix{}), clientv3.WithPrefix())
	if err != nil {
		return fmt.Errorf("etcd: remove %s: %w", subnet, err)
	}
	deleted := int64(0)
	for _, kv := range resp.Kvs {
		v4, _, err := leases.ParseSubnetKey(strings.TrimPrefix(string(kv.Key), s.subnetsDir))
		if err != nil || v4 != subnet {
			continue
		}
		d, err := s.cli.Delete(ctx, string(kv.Key))
		if err != nil {
			return fmt.Errorf("etcd: remove %s: %w", subnet, err)
		}
		deleted += d.Deleted
	}
	if deleted == 0 {
		return fmt.Errorf("etcd: remove %s: %w", subnet, leases.ErrNotFound)
	}
	return nil
}
