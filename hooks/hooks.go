// Package hooks parses and validates flannel's net-conf.json for the
// extension backend: the network fields with flannel's defaults, and the
// five hook commands, each parsed once into a shell AST at load time. It
// also defines the environment contract each hook runs with, and lints the
// hooks (Lint): it follows lease data from stdin through the variables
// derived from it (taint) and warns where it is expanded unquoted, and
// fails where it would run as code.
package hooks

import (
	"mvdan.cc/sh/v3/syntax"

	"github.com/flexhook/flexhook/leases"
)

// Kind names one of the five extension hooks.
type Kind int

const (
	PreStartup Kind = iota
	PostStartup
	SubnetAdd
	SubnetRemove
	Shutdown
)

// Kinds lists every hook kind in lifecycle order.
var Kinds = [...]Kind{PreStartup, PostStartup, SubnetAdd, SubnetRemove, Shutdown}

// String returns the Backend field name, such as "SubnetAddCommand".
func (k Kind) String() string {
	switch k {
	case PreStartup:
		return "PreStartupCommand"
	case PostStartup:
		return "PostStartupCommand"
	case SubnetAdd:
		return "SubnetAddCommand"
	case SubnetRemove:
		return "SubnetRemoveCommand"
	case Shutdown:
		return "ShutdownCommand"
	}
	return "UnknownCommand"
}

// Hook is one hook command: its source text and its parsed form.
// A hook with empty Source is skipped; its File is nil.
type Hook struct {
	Kind   Kind
	Source string
	File   *syntax.File
}

// Empty reports whether the hook has no command and is skipped.
func (h Hook) Empty() bool { return h.File == nil || len(h.File.Stmts) == 0 }

// Backend is the parsed "Backend" object.
type Backend struct {
	Type  string
	Hooks [len(Kinds)]Hook // indexed by Kind
	// MTU, when set, is FLANNEL_MTU as given (flannel's vxlan backend has
	// the same field); 0 lets flexhook find the path's MTU in the kernel.
	MTU int
	// DirectRouting is flannel's vxlan key: route directly to peers on
	// this node's L2 segment. flexhook does not route; it tells every hook
	// (DIRECT_ROUTING=true) and the hook decides per peer.
	DirectRouting bool
}

// Hook returns the hook of kind k.
func (b *Backend) Hook(k Kind) Hook { return b.Hooks[k] }

// Config is a validated net-conf.json with flannel's defaults applied.
type Config struct {
	// Range is what the leases are allocated from, as parsed from Network,
	// SubnetLen, SubnetMin, SubnetMax and, when EnableIPv6, the IPv6
	// fields (zero otherwise). Its fields are promoted: cfg.Network.
	leases.Range

	EnableIPv4 bool
	EnableIPv6 bool

	Backend Backend

	// Raw is the JSON the config was parsed from, for stores that publish
	// it (<prefix>/config).
	Raw []byte
}
