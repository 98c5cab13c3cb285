package main

import (
	"context"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/flexhook/flexhook/presets"
)

const presetsSynopsis = "flexhook presets [NAME]"

// presetSummary is the one-line description `flexhook presets` prints.
var presetSummary = map[string]string{
	"vxlan":          "VXLAN overlay (VNI 1, port 8472): device flannel-vxlan, routes, ARP and FDB entries per peer",
	"host-gw":        "direct routes to each peer's subnet via its public IP (nodes on one L2 network)",
	"host-gw-prod":   "host-gw that refuses, and says so, a peer its node reaches only through a router (not on its L2 segment)",
	"wireguard":      "WireGuard tunnel (device flannel-wg, port 51820); the private key is written to the state dir",
	"vxlan-prod":     "vxlan for production: keeps its device and VTEP MAC across restarts (no traffic lost), removes departed peers; \"DirectRouting\": true routes directly to peers on the node's L2 segment",
	"wireguard-prod": "wireguard for production: keeps its key (state dir, 0600, made once) and device across restarts, removes departed peers, cleans up when it leaves",
}

// cmdPresets lists the embedded presets or prints one's JSON exactly.
func cmdPresets(_ context.Context, args []string, stdout, _ io.Writer) error {
	var f presetsFlags
	fs, err := newFlagSet("presets", &f, presetsSynopsis, stdout)
	if err != nil {
		return err
	}
	pos, err := fs.parse(args)
	if err != nil {
		return err
	}
	switch len(pos) {
	case 0:
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
		for _, name := range presets.Names() {
			fmt.Fprintf(tw, "%s\t%s\n", name, presetSummary[name])
		}
		return tw.Flush()
	case 1:
		raw, err := presets.Get(pos[0])
		if err != nil {
			return usageErrorf("%v", err)
		}
		_, err = stdout.Write(raw)
		return err
	}
	return usageErrorf("presets: want at most one NAME, got %d arguments", len(pos))
}
