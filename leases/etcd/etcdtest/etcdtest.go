// Package etcdtest starts a real, single-member etcd server inside the test
// process (go.etcd.io/etcd/server/v3/embed) for tests of the etcd lease
// store and for integration tests.
//
// The server listens on free ports of 127.0.0.1 (or the host given with
// Host), keeps its data in a test temporary directory, and can be
// stopped and restarted on the same data and ports to simulate an etcd
// outage. TLS generates a CA, a server certificate and a client
// certificate and makes the server require client certificates.
// Proxy puts a TCP proxy in front of Endpoints whose connections
// Cut drops (a network partition) while Server.Client, which connects
// directly, keeps working.
//
//	srv := etcdtest.Start(t)
//	store, err := etcd.New(ctx, etcd.Config{Endpoints: srv.Endpoints})
package etcdtest

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// startTimeout bounds how long Start and Restart wait for the server.
const startTimeout = 30 * time.Second

// Server is a running (or stopped) embedded etcd member.
type Server struct {
	// Endpoints are the client URLs, e.g. "http://127.0.0.1:40123"
	// (through the proxy under Proxy).
	Endpoints []string
	// DirectEndpoints reach etcd itself, bypassing any proxy.
	DirectEndpoints []string
	// TLS holds the generated certificate files; nil without TLS.
	TLS *TLSFiles
	// Dir is the data directory.
	Dir string

	t          testing.TB
	host       string
	clientPort int
	peerPort   int

	mu    sync.Mutex
	e     *embed.Etcd
	proxy *proxy
}

type options struct {
	host  string
	tls   bool
	proxy bool
}

// Option configures Start; one that fails fails the test.
type Option func(*options) error

// Host makes the server listen on host instead of 127.0.0.1 (for
// example an address inside a network namespace lab).
func Host(host string) Option {
	return func(o *options) error {
		if host == "" {
			return errors.New("etcdtest.Host: empty host")
		}
		o.host = host
		return nil
	}
}

// TLS serves https with generated certificates and requires client
// certificates signed by the generated CA (see Server.TLS).
func TLS() Option { return func(o *options) error { o.tls = true; return nil } }

// Proxy serves Endpoints through a TCP proxy so that Cut and Heal can
// partition the clients using them from etcd.
func Proxy() Option { return func(o *options) error { o.proxy = true; return nil } }

// Start starts a fresh etcd member and stops it when the test ends.
func Start(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := options{host: "127.0.0.1"}
	for _, opt := range opts {
		if err := opt(&o); err != nil {
			t.Fatalf("etcdtest: %v", err)
		}
	}
	s := &Server{t: t, host: o.host, Dir: filepath.Join(t.TempDir(), "etcd")}
	if o.tls {
		files := WriteTLSFiles(t, t.TempDir(), o.host)
		s.TLS = &files
	}
	ports := freePorts(t, o.host, 2)
	s.clientPort, s.peerPort = ports[0], ports[1]
	scheme := "http"
	if s.TLS != nil {
		scheme = "https"
	}
	s.DirectEndpoints = []string{scheme + "://" + net.JoinHostPort(o.host, strconv.Itoa(s.clientPort))}
	s.Endpoints = s.DirectEndpoints
	if o.proxy {
		p, err := newProxy(o.host, net.JoinHostPort(o.host, strconv.Itoa(s.clientPort)))
		if err != nil {
			t.Fatalf("etcdtest: proxy: %v", err)
		}
		s.proxy = p
		s.Endpoints = []string{scheme + "://" + p.addr()}
		t.Cleanup(func() { _ = p.close() })
	}
	t.Cleanup(s.Stop)
	if err := s.start(); err != nil {
		t.Fatalf("etcdtest: start: %v", err)
	}
	return s
}

// Stop stops the server; its data stays, so Restart can bring it back.
// Stopping a stopped server does nothing.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.e != nil {
		s.e.Close()
		s.e = nil
	}
}

// Restart starts a stopped server again on the same data dir and ports
// (stopping it first if it runs).
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	if err := s.start(); err != nil {
		s.t.Fatalf("etcdtest: restart: %v", err)
	}
}

// Cut drops every connection made through Endpoints and refuses new ones
// until Heal; etcd keeps running and DirectEndpoints keep working. It
// fails the test without Proxy.
func (s *Server) Cut() {
	s.t.Helper()
	if s.proxy == nil {
		s.t.Fatal("etcdtest: Cut needs Proxy")
	}
	s.proxy.setCut(true)
}

// Heal lets connections through Endpoints again after Cut.
func (s *Server) Heal() {
	s.t.Helper()
	if s.proxy == nil {
		s.t.Fatal("etcdtest: Heal needs Proxy")
	}
	s.proxy.setCut(false)
}

// Client returns a plain client on DirectEndpoints for the test's own
// reads and writes (with the generated client certificate under TLS),
// closed when the test ends.
func (s *Server) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	cfg := clientv3.Config{Endpoints: s.DirectEndpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if s.TLS != nil {
		tlsCfg, err := transport.TLSInfo{
			TrustedCAFile: s.TLS.CAFile,
			CertFile:      s.TLS.ClientCertFile,
			KeyFile:       s.TLS.ClientKeyFile,
		}.ClientConfig()
		if err != nil {
			t.Fatalf("etcdtest: client tls: %v", err)
		}
		cfg.TLS = tlsCfg
	}
	c, err := clientv3.New(cfg)
	if err != nil {
		t.Fatalf("etcdtest: client: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func (s *Server) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	cfg := embed.NewConfig()
	cfg.Name = "etcdtest"
	cfg.Dir = s.Dir
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = true
	cfg.BcryptCost = 4 // bcrypt.MinCost: auth tests stay fast
	// Short raft timings: a single member elects itself at once, and
	// Stop's grace period for open client streams (5s + 2 elections)
	// stays short.
	cfg.TickMs, cfg.ElectionMs = 10, 100
	scheme := "http"
	if s.TLS != nil {
		scheme = "https"
		cfg.ClientTLSInfo = transport.TLSInfo{
			CertFile:       s.TLS.ServerCertFile,
			KeyFile:        s.TLS.ServerKeyFile,
			TrustedCAFile:  s.TLS.CAFile,
			ClientCertAuth: true,
		}
	}
	curl := url.URL{Scheme: scheme, Host: net.JoinHostPort(s.host, strconv.Itoa(s.clientPort))}
	purl := url.URL{Scheme: "http", Host: net.JoinHostPort(s.host, strconv.Itoa(s.peerPort))}
	cfg.ListenClientUrls = []url.URL{curl}
	cfg.AdvertiseClientUrls = []url.URL{curl}
	cfg.ListenPeerUrls = []url.URL{purl}
	cfg.AdvertisePeerUrls = []url.URL{purl}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)

	var (
		e   *embed.Etcd
		err error
	)
	// The ports were free when picked and are ours after a Stop, but a
	// socket of the previous run may linger briefly: retry a few times.
	for attempt := 0; ; attempt++ {
		e, err = embed.StartEtcd(cfg)
		if err == nil || attempt == 20 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return fmt.Errorf("embedded etcd in %s: %w", s.Dir, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return fmt.Errorf("embedded etcd in %s: %w", s.Dir, err)
	case <-time.After(startTimeout):
		e.Close()
		return fmt.Errorf("embedded etcd in %s: not ready after %s", s.Dir, startTimeout)
	}
	s.e = e
	return nil
}

// freePorts finds n distinct free TCP ports on host below the kernel's
// ephemeral range (net.ipv4.ip_local_port_range starts at 32768): a port
// from that range, freed for etcd to bind, can be taken in the meantime
// as the source port of any outgoing connection of the parallel tests,
// and so can the ports of a stopped server before its Restart.
func freePorts(t testing.TB, host string, n int) []int {
	t.Helper()
	ports := make([]int, 0, n)
	for try := 0; len(ports) < n; try++ {
		if try == 1000 {
			t.Fatalf("etcdtest: no free port on %s below 32768", host)
		}
		p := 20000 + rand.IntN(12000)
		if slices.Contains(ports, p) {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			continue
		}
		defer l.Close()
		ports = append(ports, p)
	}
	return ports
}
