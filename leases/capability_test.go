package leases_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/leasestest"
)

type configStore struct{ leases.Store }

func (configStore) Config(context.Context) ([]byte, error) { return []byte("{}"), nil }

type wrapper struct{ leases.Store }

func (w wrapper) Unwrap() leases.Store { return w.Store }

func TestAs(t *testing.T) {
	plain := leasestest.New()
	_, ok := leases.As[leases.ConfigStore](plain)
	assert.False(t, ok, "a store without Config")
	cs := configStore{plain}
	got, ok := leases.As[leases.ConfigStore](wrapper{wrapper{cs}})
	assert.True(t, ok, "found through two wrappers")
	assert.Equal(t, leases.ConfigStore(cs), got)
	_, ok = leases.As[leases.Peeker](wrapper{cs})
	assert.False(t, ok)
	_, ok = leases.As[leases.Peeker](nil)
	assert.False(t, ok)
}
