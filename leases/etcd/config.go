package etcd

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"strings"
	"time"
)

// DefaultDialTimeout bounds connecting (and authenticating) in New when
// Config.DialTimeout is zero.
const DefaultDialTimeout = 5 * time.Second

// redacted replaces a set password wherever a Config is printed or logged.
const redacted = "[REDACTED]"

// Config says how to reach etcd; the field names follow flanneld's
// --etcd-* flags. Printing or logging a Config never shows Password.
type Config struct {
	Endpoints []string // client URLs, e.g. "https://10.0.0.1:2379"
	Prefix    string   // key prefix; leases.DefaultPrefix when empty

	// TLS: CAFile verifies the server (system roots when empty);
	// CertFile and KeyFile are a client certificate, both or neither.
	CAFile, CertFile, KeyFile string

	// Username and Password enable etcd authentication, both or neither.
	Username, Password string

	DialTimeout time.Duration // DefaultDialTimeout when zero
}

// String describes c with Password redacted.
func (c Config) String() string {
	return fmt.Sprintf("etcd.Config{Endpoints:%v Prefix:%q CAFile:%q CertFile:%q KeyFile:%q Username:%q Password:%q DialTimeout:%s}",
		c.Endpoints, c.Prefix, c.CAFile, c.CertFile, c.KeyFile, c.Username, c.redactedPassword(), c.DialTimeout)
}

// GoString is String, so that %#v does not show Password either.
func (c Config) GoString() string { return c.String() }

// LogValue implements slog.LogValuer with Password redacted.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("endpoints", strings.Join(c.Endpoints, ",")),
		slog.String("prefix", c.Prefix),
		slog.String("cafile", c.CAFile),
		slog.String("certfile", c.CertFile),
		slog.String("keyfile", c.KeyFile),
		slog.String("username", c.Username),
		slog.String("password", c.redactedPassword()),
		slog.Duration("dial_timeout", c.DialTimeout),
	)
}

func (c Config) redactedPassword() string {
	if c.Password == "" {
		return ""
	}
	return redacted
}

// validate checks c and returns the TLS configuration it asks for (nil
// when it asks for none).
func (c Config) validate() (*tls.Config, error) {
	if len(c.Endpoints) == 0 {
		return nil, errors.New("etcd config: Endpoints: at least one etcd endpoint is required")
	}
	for _, ep := range c.Endpoints {
		if strings.TrimSpace(ep) == "" {
			return nil, errors.New("etcd config: Endpoints: empty endpoint")
		}
	}
	if c.DialTimeout < 0 {
		return nil, fmt.Errorf("DialTimeout: %s is negative", c.DialTimeout)
	}
	if (c.Username == "") != (c.Password == "") {
		return nil, errors.New("etcd config: Username and Password: set both or neither")
	}
	if c.CAFile == "" && c.CertFile == "" && c.KeyFile == "" {
		return nil, nil
	}
	for _, ep := range c.Endpoints {
		if strings.HasPrefix(ep, "http://") {
			return nil, fmt.Errorf("etcd config: Endpoints: %q is plain http but TLS files are set (use https://)", ep)
		}
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if c.CAFile != "" {
		pemBytes, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("CAFile: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("CAFile: no PEM certificate in %s", c.CAFile)
		}
		tc.RootCAs = pool
	}
	switch {
	case c.CertFile != "" && c.KeyFile != "":
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("CertFile/KeyFile: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	case c.CertFile != "":
		return nil, errors.New("KeyFile: required with CertFile")
	case c.KeyFile != "":
		return nil, errors.New("CertFile: required with KeyFile")
	}
	return tc, nil
}

// options are New's Options: the store's own settings, beside the
// Config that says how to reach etcd.
type options struct {
	ttl  time.Duration
	log  *slog.Logger
	rnd  *rand.Rand
	dial func(ctx context.Context, addr string) (net.Conn, error)
}

// Option configures New; an option with a bad value makes New fail.
type Option func(*options) error

// TTL sets the lifetime of the etcd lease attached to each subnet key
// (default leases.DefaultTTL, 24h, as flanneld). It is rounded up to whole
// seconds and must be at least one second.
func TTL(d time.Duration) Option {
	return func(o *options) error {
		if d < time.Second {
			return fmt.Errorf("TTL: %s is shorter than one second", d)
		}
		o.ttl = d
		return nil
	}
}

// Logger sets the logger (nil or not given: slog.Default()).
func Logger(l *slog.Logger) Option {
	return func(o *options) error {
		if l == nil {
			l = slog.Default()
		}
		o.log = l
		return nil
	}
}

// Dialer makes every connection to etcd with dial instead of the
// default dialer: a process outside a network namespace reaches an etcd
// inside it (the lab's, through netlab's DialHub).
func Dialer(dial func(ctx context.Context, addr string) (net.Conn, error)) Option {
	return func(o *options) error {
		if dial == nil {
			return errors.New("Dialer: nil")
		}
		o.dial = dial
		return nil
	}
}

// Rand sets the source of random subnet choices (default: randomly
// seeded). Store serializes its use.
func Rand(r *rand.Rand) Option {
	return func(o *options) error {
		o.rnd = r
		return nil
	}
}
