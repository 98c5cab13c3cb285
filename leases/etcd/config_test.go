package etcd_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/flexhook/flexhook/internal/testutil"
	"github.com/flexhook/flexhook/leases"
	"github.com/flexhook/flexhook/leases/etcd"
	"github.com/flexhook/flexhook/leases/etcd/etcdtest"
)

const secret = "s3cr3t-pa55"

func TestConfigNeverShowsPassword(t *testing.T) {
	cfg := etcd.Config{Endpoints: []string{"https://10.0.0.1:2379"}, Username: "flexhook", Password: secret}
	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("connecting", "etcd", cfg)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("connecting", "etcd", cfg)
	for _, s := range []string{
		fmt.Sprint(cfg), fmt.Sprintf("%v", cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg),
		cfg.String(), fmt.Sprintf("%v", &cfg), logs.String(),
	} {
		assert.NotContains(t, s, secret)
		assert.Contains(t, s, "REDACTED", "a set password is shown as redacted: %s", s)
		assert.Contains(t, s, "flexhook", "the username is shown: %s", s)
	}
	assert.NotContains(t, etcd.Config{Username: "u"}.String(), "REDACTED", "an empty password is not claimed to be set")
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate"), 0o600))
	tls := etcdtest.WriteTLSFiles(t, t.TempDir(), "127.0.0.1")
	ep := []string{"https://127.0.0.1:1"}
	tests := []struct {
		name string
		cfg  etcd.Config
		want string
	}{
		{"no endpoints", etcd.Config{}, "Endpoints"},
		{"empty endpoint", etcd.Config{Endpoints: []string{" "}}, "Endpoints"},
		{"user without password", etcd.Config{Endpoints: ep, Username: "u"}, "Password"},
		{"password without user", etcd.Config{Endpoints: ep, Password: secret}, "Username"},
		{"cert without key", etcd.Config{Endpoints: ep, CertFile: tls.ClientCertFile}, "KeyFile"},
		{"key without cert", etcd.Config{Endpoints: ep, KeyFile: tls.ClientKeyFile}, "CertFile"},
		{"missing CA file", etcd.Config{Endpoints: ep, CAFile: filepath.Join(dir, "nope.pem")}, "CAFile"},
		{"CA file without PEM", etcd.Config{Endpoints: ep, CAFile: notPEM}, "CAFile"},
		{"key does not match", etcd.Config{Endpoints: ep, CertFile: tls.ClientCertFile, KeyFile: tls.ServerKeyFile}, "CertFile/KeyFile"},
		{"TLS on http", etcd.Config{Endpoints: []string{"http://127.0.0.1:1"}, CAFile: tls.CAFile}, "https://"},
		{"negative timeout", etcd.Config{Endpoints: ep, DialTimeout: -time.Second}, "DialTimeout"},
		{"prefix of slashes", etcd.Config{Endpoints: ep, Prefix: "//"}, "Prefix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := etcd.New(context.Background(), tt.cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
			assert.NotContains(t, err.Error(), secret)
		})
	}
	_, err := etcd.New(context.Background(), etcd.Config{Endpoints: ep}, etcd.TTL(time.Millisecond))
	assert.ErrorContains(t, err, "TTL")
}

func TestTLS(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t, etcdtest.TLS())
	good := etcd.Config{
		Endpoints: srv.Endpoints,
		CAFile:    srv.TLS.CAFile, CertFile: srv.TLS.ClientCertFile, KeyFile: srv.TLS.ClientKeyFile,
		DialTimeout: 2 * time.Second,
	}
	ctx := testCtx(t)

	t.Run("client certificate from the CA", func(t *testing.T) {
		s, err := etcd.New(ctx, good)
		require.NoError(t, err)
		defer s.Close()
		l, err := s.Acquire(ctx, rng(200), attrs("192.0.2.1", "tls"))
		require.NoError(t, err)
		ls, err := s.List(ctx)
		require.NoError(t, err)
		require.Len(t, ls, 1)
		assert.Equal(t, l.Subnet, ls[0].Subnet)
	})

	wrong := etcdtest.WriteTLSFiles(t, t.TempDir(), "127.0.0.1")
	tests := []struct {
		name   string
		change func(*etcd.Config)
		want   string
	}{
		{"server cert from another CA", func(c *etcd.Config) { c.CAFile = wrong.CAFile }, "certificate signed by unknown authority"},
		{"client cert from another CA", func(c *etcd.Config) { c.CertFile, c.KeyFile = wrong.ClientCertFile, wrong.ClientKeyFile }, "unknown certificate authority"},
		{"no client cert", func(c *etcd.Config) { c.CertFile, c.KeyFile = "", "" }, "certificate required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			tt.change(&cfg)
			_, err := etcd.New(ctx, cfg)
			require.Error(t, err)
			assert.Contains(t, err.Error(), "etcd: connect to "+srv.Endpoints[0])
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestNewNamesUnreachableEndpoint(t *testing.T) {
	t.Parallel()
	_, err := etcd.New(testCtx(t), etcd.Config{Endpoints: []string{"http://127.0.0.1:1"}, DialTimeout: time.Second})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "etcd: connect to http://127.0.0.1:1")
	assert.Contains(t, err.Error(), "connection refused")
}

func TestUsernamePassword(t *testing.T) {
	t.Parallel()
	srv := etcdtest.Start(t)
	root := srv.Client(t)
	ctx := testCtx(t)
	// A user that may only touch the flannel prefix, as operators set up.
	for _, step := range []func() error{
		func() error { _, err := root.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := root.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := root.RoleAdd(ctx, "flannel"); return err },
		func() error {
			_, err := root.RoleGrantPermission(ctx, "flannel", leases.DefaultPrefix, clientv3.GetPrefixRangeEnd(leases.DefaultPrefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := root.UserAdd(ctx, "flexhook", secret); return err },
		func() error { _, err := root.UserGrantRole(ctx, "flexhook", "flannel"); return err },
		func() error { _, err := root.AuthEnable(ctx); return err },
	} {
		require.NoError(t, step())
	}

	var logs testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := etcd.Config{Endpoints: srv.Endpoints, Username: "flexhook", Password: secret, DialTimeout: 2 * time.Second}
	s, err := etcd.New(ctx, cfg, etcd.Logger(log))
	require.NoError(t, err)
	defer s.Close()
	l, err := s.Acquire(ctx, rng(200), attrs("192.0.2.1", ""))
	require.NoError(t, err)
	_, err = s.Renew(ctx, l)
	require.NoError(t, err)
	ls, err := s.List(ctx)
	require.NoError(t, err)
	require.Len(t, ls, 1)
	require.NoError(t, s.Remove(ctx, l.Subnet))

	bad := cfg
	bad.Password = "wrong"
	_, err = etcd.New(ctx, bad, etcd.Logger(log))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "authentication failed")

	assert.Contains(t, logs.String(), "flexhook", "the debug log names the user")
	assert.False(t, strings.Contains(logs.String(), secret), "the password must never be logged")
}
