package main

import (
	"context"

	"github.com/flexhook/flexhook/hooks"
	"github.com/flexhook/flexhook/internal/masq"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/runner"
)

// nftMasq is --ip-masq: flanneld's masquerade rules for the config's
// networks and the own lease's subnets, in nftables (internal/masq).
type nftMasq struct{}

var _ runner.Masq = nftMasq{}

func (nftMasq) Ensure(ctx context.Context, cfg *hooks.Config, own leases.Lease) error {
	v4 := masq.Family{Network: cfg.Network, Subnet: own.Subnet}
	var v6 masq.Family
	if cfg.EnableIPv6 {
		v6 = masq.Family{Network: cfg.IPv6Network, Subnet: own.IPv6Subnet}
	}
	return masq.Ensure(ctx, v4, v6)
}

func (nftMasq) Remove(ctx context.Context) error { return masq.Remove(ctx) }
