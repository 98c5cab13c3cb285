package etcd

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"
)

// diagTimeout bounds diagnose per endpoint.
const diagTimeout = 2 * time.Second

// diagnose finds out why endpoints could not be reached, since the etcd
// client only reports "context deadline exceeded": it dials each endpoint
// and, for https (or when TLS files are set), completes a TLS handshake and
// waits briefly for the server to reject our certificate. It returns the
// first failure, naming the endpoint, or nil when all look fine.
func diagnose(ctx context.Context, endpoints []string, tlsCfg *tls.Config) error {
	for _, ep := range endpoints {
		hostport, useTLS, ok := splitEndpoint(ep)
		if !ok {
			continue
		}
		useTLS = useTLS || (tlsCfg != nil && !strings.HasPrefix(ep, "http://"))
		if err := probe(ctx, hostport, useTLS, tlsCfg); err != nil {
			return fmt.Errorf("%s: %w", ep, err)
		}
	}
	return nil
}

// splitEndpoint returns host:port and whether the scheme asks for TLS;
// ok is false for endpoints diagnose does not handle (unix sockets).
func splitEndpoint(ep string) (hostport string, https, ok bool) {
	if !strings.Contains(ep, "://") {
		return ep, false, true
	}
	u, err := url.Parse(ep)
	if err != nil || u.Host == "" {
		return "", false, false
	}
	switch u.Scheme {
	case "http":
		return u.Host, false, true
	case "https":
		return u.Host, true, true
	}
	return "", false, false
}

func probe(ctx context.Context, hostport string, useTLS bool, tlsCfg *tls.Config) error {
	ctx, cancel := context.WithTimeout(ctx, diagTimeout)
	defer cancel()
	nd := &net.Dialer{}
	if !useTLS {
		c, err := nd.DialContext(ctx, "tcp", hostport)
		if err != nil {
			return err
		}
		return c.Close()
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if tlsCfg != nil {
		cfg = tlsCfg.Clone()
	}
	cfg.NextProtos = []string{"h2"}
	td := &tls.Dialer{NetDialer: nd, Config: cfg}
	c, err := td.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return err
	}
	defer c.Close()
	// With TLS 1.3 the server checks our certificate after the client's
	// handshake is done: its verdict arrives as an alert on the first read.
	_ = c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	var b [1]byte
	_, err = c.Read(b[:])
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		return nil
	}
	return err
}
