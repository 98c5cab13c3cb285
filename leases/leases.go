// Package leases defines the subnet lease model shared by every store:
// the Lease and Attrs types, flannel's key and value encoding, the Range a
// store allocates from, the Store interface that the file, etcd and kube
// (Node annotations) stores satisfy, the capabilities some of them add
// (ConfigStore, Peeker, NodeAnnouncer, found with As), and Pipe, the half
// of Watch they share. Lease admission (Policy.Admit, with BackendData
// Shapes) decides which remote leases a hook may ever see, the same way
// for every store.
//
// The layout is flannel's own, so that flexhook and flanneld can share one
// etcd: <prefix>/config holds the net-conf JSON and
// <prefix>/subnets/10.50.3.0-24 (with "&fd00::-64" appended for dual stack)
// holds a JSON value such as
//
//	{"PublicIP":"192.0.2.3","PublicIPv6":null,"BackendType":"extension","BackendData":"82:87:fe:a4:a9:55"}
package leases

import (
	"context"
	"errors"
	"net/netip"
	"time"
)

// DefaultPrefix is flannel's default key prefix.
const DefaultPrefix = "/coreos.com/network"

// DefaultTTL is how long a lease lives without renewal (flannel: 24h).
const DefaultTTL = 24 * time.Hour

// DefaultRenewMargin is how long before expiry a lease is renewed.
const DefaultRenewMargin = time.Hour

// BackendType is the only backend type flexhook writes.
const BackendType = "extension"

// Attrs is the value stored for a lease, in flannel's JSON field names.
type Attrs struct {
	PublicIP    netip.Addr // IPv4 address other nodes reach this node on
	PublicIPv6  netip.Addr // zero when unset (encoded as null)
	BackendType string
	// BackendData is the PreStartup output of the owning node. It is
	// encoded as a JSON string and omitted when empty.
	BackendData string
}

// Owner is the address that identifies the node holding a lease: its
// PublicIP (4in6 unmapped), or PublicIPv6 when PublicIP is unset. A node
// takes back the lease whose Owner is its own.
func (a Attrs) Owner() netip.Addr {
	if a.PublicIP.IsValid() {
		return a.PublicIP.Unmap()
	}
	return a.PublicIPv6
}

// Lease is one node's subnet lease.
type Lease struct {
	Subnet     netip.Prefix // IPv4 subnet; the lease's identity
	IPv6Subnet netip.Prefix // zero unless dual stack
	Attrs      Attrs
	Expiration time.Time // zero when the store does not know it

	// Key is the name the store holds the lease under (flannel's
	// "10.50.3.0-24" form) as the store found it; empty for a lease that
	// did not come from a store's List or Watch.
	Key string
	// Invalid is set (ReasonBadKey or ReasonBadValue) when the store's
	// key or value did not decode, with Problem saying how. Such a lease
	// is listed so that it can be shown, and never applied: Subnet is
	// set only when the key parsed, Attrs only when the value did.
	Invalid Reason
	Problem string
}

// StoreKey is the key l is held under: Key as the store gave it, else
// the subnet key SubnetKey writes.
func (l Lease) StoreKey() string {
	if l.Key != "" {
		return l.Key
	}
	return SubnetKey(l.Subnet, l.IPv6Subnet)
}

// Range is what a store allocates from: every subnet of SubnetLen bits
// between SubnetMin and SubnetMax (inclusive) inside Network.
type Range struct {
	Network   netip.Prefix
	SubnetLen int
	SubnetMin netip.Addr
	SubnetMax netip.Addr

	// IPv6 is zero-valued unless dual stack is on.
	IPv6Network   netip.Prefix
	IPv6SubnetLen int
	IPv6SubnetMin netip.Addr
	IPv6SubnetMax netip.Addr
}

// Errors stores return; callers test them with errors.Is.
var (
	ErrNoFreeSubnet = errors.New("out of subnets")
	ErrLeaseGone    = errors.New("lease no longer exists")
	ErrNotFound     = errors.New("lease not found")
)

// Store is a shared lease store. Implementations are safe for concurrent
// use and honour ctx on every blocking call.
type Store interface {
	// Acquire returns this node's lease: the unexpired lease carrying
	// attrs.PublicIP is taken back (its attrs updated and TTL refreshed),
	// otherwise a random free subnet in r is created atomically.
	Acquire(ctx context.Context, r Range, attrs Attrs) (Lease, error)
	// Renew refreshes the TTL of l (and rewrites its attrs). It returns an
	// error wrapping ErrLeaseGone when the lease was deleted meanwhile.
	Renew(ctx context.Context, l Lease) (Lease, error)
	// List returns every unexpired lease, sorted by subnet, including
	// the entries whose key or value does not decode (Invalid set; see
	// Decode), so that callers can show them. Only admitted leases
	// (Policy.Admit) may reach a hook.
	List(ctx context.Context) ([]Lease, error)
	// Watch sends the full set of unexpired leases on out: once at the
	// start and again after every change it notices. It blocks until ctx
	// is done (returning nil) or the store fails for good.
	Watch(ctx context.Context, out chan<- []Lease) error
	// Remove deletes the lease for subnet; ErrNotFound if absent.
	Remove(ctx context.Context, subnet netip.Prefix) error
	// Close releases the store's resources.
	Close() error
}
