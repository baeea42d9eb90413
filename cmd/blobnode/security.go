package main

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/blobnode/blobnode/api"
	"github.com/blobnode/blobnode/cluster"
	"github.com/blobnode/blobnode/raftfsm"
)

// Errors of a security configuration that parseConfig refuses.
var (
	// ErrExposed: the API (or pprof) would listen beyond loopback with no
	// authentication, and -allow-unauthenticated does not say that is meant.
	ErrExposed = errors.New("refusing to serve without authentication on a non-loopback address")
	// ErrIncompleteTLS: a TLS flag is given without the others it needs.
	ErrIncompleteTLS = errors.New("incomplete TLS configuration")
)

// checkSecurity refuses combinations of flags that would expose more than
// the operator can have meant. It reads no files: that is loadSecurity's.
func (c *config) checkSecurity() error {
	if (c.tlsCert == "") != (c.tlsKey == "") {
		return fmt.Errorf("%w: -tls-cert and -tls-key go together", ErrIncompleteTLS)
	}
	peer := c.peerTLSCert != "" || c.peerTLSKey != "" || c.peerTLSCA != ""
	if (peer || c.peerMTLS) && (c.peerTLSCert == "" || c.peerTLSKey == "" || c.peerTLSCA == "") {
		return fmt.Errorf("%w: Raft over TLS needs all of -peer-tls-cert, -peer-tls-key and -peer-tls-ca", ErrIncompleteTLS)
	}
	if c.protectMetrics && c.tokenFile == "" {
		return errors.New("-protect-metrics needs -token-file (there is no admin token without one)")
	}
	if c.peers != "" && c.clusterSecret == "" {
		return errors.New("-peers needs -cluster-secret-file: every peer request and Raft connection is authenticated with it")
	}
	if c.join != "" && c.clusterSecret == "" {
		return errors.New("-join needs -cluster-secret-file: the group admits only a node that holds its secret")
	}
	if c.allowUnauth {
		return nil
	}
	if c.tokenFile == "" && !isLoopback(c.httpAddr) {
		return fmt.Errorf("%w: -http-addr %s is not a loopback address and there is no -token-file, "+
			"so anyone who can reach it could read, overwrite and delete every blob; "+
			"give -token-file, or -allow-unauthenticated if that is really meant", ErrExposed, c.httpAddr)
	}
	if !c.peerMTLS && c.clusterSecret == "" && !isLoopback(c.raftAddr) {
		return fmt.Errorf("%w: -raft-addr %s is not a loopback address and there is no -peer-mtls, "+
			"so anyone who can reach it could append entries to the log (writes included); "+
			"give -cluster-secret-file, or -peer-tls-cert, -peer-tls-key, -peer-tls-ca and -peer-mtls, or -allow-unauthenticated if that is really meant", ErrExposed, c.raftAddr)
	}
	if c.pprofAddr != "" && !isLoopback(c.pprofAddr) {
		return fmt.Errorf("%w: -pprof-addr %s is not a loopback address and the profiler has no authentication; "+
			"use a loopback address, or -allow-unauthenticated if that is really meant", ErrExposed, c.pprofAddr)
	}
	return nil
}

// isLoopback reports whether addr (host:port) can only be reached from
// this host: a loopback IP literal or "localhost". An empty host (every
// interface), any other name (which may resolve anywhere, and differently
// later) and anything unparsable are not.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.Unmap().IsLoopback()
}

// reloadableTokens is the Authenticator of a node with a token file: the
// current *api.Tokens, replaced whole on SIGHUP. A request sees either the
// old set or the new one, never a mixture.
type reloadableTokens struct {
	path string
	cur  atomic.Pointer[api.Tokens]
}

// Scope implements api.Authenticator.
func (r *reloadableTokens) Scope(token string) (api.Scope, bool) { return r.cur.Load().Scope(token) }

// reload reads the token file again. A file that does not parse changes
// nothing: the tokens in force stay in force.
func (r *reloadableTokens) reload(log *slog.Logger) {
	toks, err := api.LoadTokenFile(r.path)
	if err != nil {
		log.Error("token file not reloaded; the previous tokens stay in force", "err", err)
		return
	}
	r.cur.Store(toks)
	log.Info("token file reloaded", "tokens", toks.Len())
}

// security is the loaded security configuration of a node.
type security struct {
	tokens  *reloadableTokens // nil: authentication is off
	httpTLS *tls.Config       // nil: plain HTTP
	peerTLS *raftfsm.PeerTLS  // nil: Raft over plain TCP
	// clusterSecret authenticates peers (Raft transport and peer API);
	// nil for a node without peers.
	clusterSecret []byte
}

// loadSecurity reads the token file and the certificates named by cfg, so
// that a mistake in any of them stops the node before it touches its data.
// It logs what is and is not protected.
func loadSecurity(cfg config, log *slog.Logger) (security, error) {
	var sec security
	if cfg.tokenFile != "" {
		toks, err := api.LoadTokenFile(cfg.tokenFile)
		if err != nil {
			return sec, err
		}
		sec.tokens = &reloadableTokens{path: cfg.tokenFile}
		sec.tokens.cur.Store(toks)
		if fi, err := os.Stat(cfg.tokenFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
			log.Warn("the token file is readable by other users; chmod 600 it", "path", cfg.tokenFile, "mode", fi.Mode().Perm().String())
		}
		log.Info("authentication is on", "tokens", toks.Len(), "protect_metrics", cfg.protectMetrics)
	} else {
		log.Warn("authentication is off: every client that can reach the API may read, write and delete blobs",
			"http", cfg.httpAddr, "allow_unauthenticated", cfg.allowUnauth)
	}
	if cfg.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.tlsCert, cfg.tlsKey)
		if err != nil {
			return sec, fmt.Errorf("-tls-cert/-tls-key: %w", err)
		}
		sec.httpTLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	}
	if cfg.peerTLSCert != "" {
		cert, err := tls.LoadX509KeyPair(cfg.peerTLSCert, cfg.peerTLSKey)
		if err != nil {
			return sec, fmt.Errorf("-peer-tls-cert/-peer-tls-key: %w", err)
		}
		pem, err := os.ReadFile(cfg.peerTLSCA)
		if err != nil {
			return sec, fmt.Errorf("-peer-tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return sec, fmt.Errorf("-peer-tls-ca: no PEM certificate in %s", cfg.peerTLSCA)
		}
		sec.peerTLS = &raftfsm.PeerTLS{Certificate: cert, RootCAs: pool, Mutual: cfg.peerMTLS}
	}
	if cfg.clusterSecret != "" {
		secret, err := loadClusterSecret(cfg.clusterSecret, log)
		if err != nil {
			return sec, err
		}
		sec.clusterSecret = secret
	}
	if !cfg.peerMTLS && sec.clusterSecret == nil && !isLoopback(cfg.raftAddr) {
		log.Warn("Raft peers are not authenticated (no -peer-mtls): anyone who can reach the Raft address can take part in the group",
			"raft", cfg.raftAddr)
	}
	return sec, nil
}

// peerClient is the HTTP client of peer requests: it verifies an HTTPS
// peer against the peer CA (when there is one), and dials from the IP of
// -http-addr when that is a specific one, so peers see where a request
// comes from.
func (s security) peerClient(cfg config) *http.Client {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if host, _, err := net.SplitHostPort(cfg.httpAddr); err == nil {
		if ip := net.ParseIP(host); ip != nil && !ip.IsUnspecified() {
			d.LocalAddr = &net.TCPAddr{IP: ip}
		}
	}
	t := &http.Transport{DialContext: d.DialContext, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second}
	if s.httpTLS != nil {
		t.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		if s.peerTLS != nil {
			t.TLSClientConfig.RootCAs = s.peerTLS.RootCAs
		}
	}
	return cluster.NewPeerClient(t)
}

// loadClusterSecret reads the cluster secret: the file's content without
// surrounding white space, at least raftfsm.MinSecretLen bytes. The error
// never quotes it.
func loadClusterSecret(path string, log *slog.Logger) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("-cluster-secret-file: %w", err)
	}
	secret := []byte(strings.TrimSpace(string(b)))
	if len(secret) < raftfsm.MinSecretLen {
		return nil, fmt.Errorf("-cluster-secret-file %s: the secret is %d bytes, at least %d are needed (openssl rand -hex 32 makes one)",
			path, len(secret), raftfsm.MinSecretLen)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		log.Warn("the cluster secret file is readable by other users; chmod 600 it", "path", path, "mode", fi.Mode().Perm().String())
	}
	return secret, nil
}

// auth is the Authenticator of the API: nil (not a nil *reloadableTokens
// in an interface) when authentication is off.
func (s security) auth() api.Authenticator {
	if s.tokens == nil {
		return nil
	}
	return s.tokens
}
