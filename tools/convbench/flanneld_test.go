package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/flexhook/flexhook/leases"
)

// TestFlannelValue: the leases under flanneld's prefix are in flanneld's
// own shape (vxlan's BackendData an object, not a string), for the same
// subnet and public IP as the extension lease.
func TestFlannelValue(t *testing.T) {
	v, err := flannelValue(257, "vxlan")
	require.NoError(t, err)
	assert.JSONEq(t, `{"PublicIP":"172.16.2.8","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"02:00:00:00:01:01"}}`, string(v))
	v, err = flannelValue(257, "host-gw")
	require.NoError(t, err)
	assert.JSONEq(t, `{"PublicIP":"172.16.2.8","PublicIPv6":null,"BackendType":"host-gw"}`, string(v))
	a, err := leases.UnmarshalAttrs(v)
	require.NoError(t, err)
	assert.Equal(t, lease(257, false).Attrs.PublicIP, a.PublicIP)
}
