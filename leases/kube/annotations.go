package kube

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/flexhook/flexhook/leases"
)

// DefaultPrefix is flanneld's --kube-annotation-prefix.
const DefaultPrefix = "flannel.alpha.coreos.com"

// Annotations are the names of the node annotations a lease is kept in,
// as flanneld's pkg/subnet/kube makes them from the prefix.
type Annotations struct {
	SubnetKubeManaged   string // "true" on every node that runs a kube subnet manager
	BackendData         string // the JSON text of BackendData ("" when none)
	BackendV6Data       string
	BackendType         string
	PublicIP            string
	PublicIPv6          string
	NodePublicIP        string // an operator's choice of this node's public IP
	NodePublicIPv6      string
	PublicIPOverwrite   string // published instead of the node's own public IP
	PublicIPv6Overwrite string
}

// prefixPattern is flanneld's: an FQDN, a slash, an optional name ending
// in "-".
var prefixPattern = regexp.MustCompile(`^(?:[a-z0-9_-]+\.)+[a-z0-9_-]+/(?:[a-z0-9_-]+-)?$`)

// NewAnnotations returns the annotation names for prefix, with flanneld's
// rules: at most one slash; "example.com" means "example.com/"; a name
// after the slash is joined with "-" ("example.com/net" gives
// "example.com/net-public-ip").
func NewAnnotations(prefix string) (Annotations, error) {
	p := prefix
	switch n := strings.Count(p, "/"); {
	case n > 1:
		return Annotations{}, fmt.Errorf("annotation prefix %q: at most one slash", prefix)
	case n == 0:
		p += "/"
	}
	if !strings.HasSuffix(p, "/") && !strings.HasSuffix(p, "-") {
		p += "-"
	}
	if !prefixPattern.MatchString(p) {
		return Annotations{}, fmt.Errorf("annotation prefix %q: want a domain name, then optionally /name (lower case letters, digits, _ and -)", prefix)
	}
	return Annotations{
		SubnetKubeManaged:   p + "kube-subnet-manager",
		BackendData:         p + "backend-data",
		BackendV6Data:       p + "backend-v6-data",
		BackendType:         p + "backend-type",
		PublicIP:            p + "public-ip",
		PublicIPv6:          p + "public-ipv6",
		NodePublicIP:        p + "node-public-ip",
		NodePublicIPv6:      p + "node-public-ipv6",
		PublicIPOverwrite:   p + "public-ip-overwrite",
		PublicIPv6Overwrite: p + "public-ipv6-overwrite",
	}, nil
}

// Published returns the annotations flanneld's AcquireLease writes for
// attrs on a node whose annotations are now cur, for the extension
// backend: backend-type, backend-data (BackendData as a JSON string, even
// an empty one when a PreStartupCommand ran, else ""), public-ip (public-ip-overwrite's value when
// that is set), kube-subnet-manager "true", and with an IPv6 address
// backend-v6-data "null" and public-ipv6 (or its overwrite). It returns
// nil when cur already says all that, so that nothing is patched.
func (a Annotations) Published(cur map[string]string, attrs leases.Attrs, preStartup bool) (map[string]string, error) {
	bd := ""
	if attrs.BackendData != "" || preStartup {
		b, err := json.Marshal(attrs.BackendData)
		if err != nil {
			return nil, fmt.Errorf("encode BackendData: %w", err)
		}
		bd = string(b)
	}
	want := map[string]string{
		a.BackendType:       attrs.BackendType,
		a.BackendData:       bd,
		a.PublicIP:          cmp.Or(cur[a.PublicIPOverwrite], attrs.PublicIP.String()),
		a.SubnetKubeManaged: "true",
	}
	if attrs.PublicIPv6.IsValid() {
		// flanneld marshals the extension backend's nil BackendV6Data.
		want[a.BackendV6Data] = "null"
		want[a.PublicIPv6] = cmp.Or(cur[a.PublicIPv6Overwrite], attrs.PublicIPv6.String())
	}
	for k, v := range want {
		if got, ok := cur[k]; !ok || got != v {
			return want, nil
		}
	}
	return nil, nil
}

// decodeBackendData reads a backend-data annotation as UnmarshalAttrs
// reads BackendData: a JSON string is unquoted, "" and null are none,
// any other JSON value (flanneld's vxlan backend writes an object) is
// kept as its text. Text that is not JSON at all is an error.
func decodeBackendData(s string) (string, error) {
	raw := bytes.TrimSpace([]byte(s))
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	if !json.Valid(raw) {
		return "", fmt.Errorf("backend-data is not JSON")
	}
	if raw[0] != '"' {
		return string(raw), nil
	}
	var out string
	if err := json.Unmarshal(raw, &out); err != nil {
		return "", fmt.Errorf("backend-data: %w", err)
	}
	return out, nil
}

// parseAddr parses an address annotation; "" is the zero Addr.
func parseAddr(name, s string) (netip.Addr, error) {
	if s == "" {
		return netip.Addr{}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("annotation %s: %w", name, err)
	}
	return a, nil
}
