package main

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blobnode/blobnode/api"
	"github.com/blobnode/blobnode/internal/testpki"
)

func TestIsLoopback(t *testing.T) {
	for _, tc := range []struct {
		addr string
		want bool
	}{
		{"127.0.0.1:8080", true},
		{"127.9.9.9:1", true},
		{"[::1]:8080", true},
		{"localhost:8080", true},
		{"LocalHost:0", true},
		{"[::ffff:127.0.0.1]:80", true},
		{":8080", false},
		{"0.0.0.0:8080", false},
		{"[::]:8080", false},
		{"10.0.0.1:8080", false},
		{"example.com:8080", false},
		{"localhost.example.com:80", false},
		{"127.0.0.1", false}, // no port: not an address net.Listen takes
	} {
		if got := isLoopback(tc.addr); got != tc.want {
			t.Errorf("isLoopback(%q) = %v, want %v", tc.addr, got, tc.want)
		}
	}
}

// TestParseConfigSecurity: exposure beyond loopback without a token file,
// and incomplete TLS settings, are refused before anything starts; the
// environment twins of the new flags work like the others.
func TestParseConfigSecurity(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		err  error // nil: accepted; errAny: some other error
	}{
		{"loopback without tokens", []string{"-http-addr", "127.0.0.1:1"}, nil, nil},
		{"all interfaces without tokens", []string{"-http-addr", "0.0.0.0:8080"}, nil, ErrExposed},
		{"empty host without tokens", []string{"-http-addr", ":8080"}, nil, ErrExposed},
		{"from the environment", nil, map[string]string{"BLOBNODE_HTTP_ADDR": "[::]:80"}, ErrExposed},
		{"all interfaces with tokens", []string{"-http-addr", "0.0.0.0:8080", "-token-file", "t"}, nil, nil},
		{"token file from the environment", []string{"-http-addr", "0.0.0.0:8080"}, map[string]string{"BLOBNODE_TOKEN_FILE": "t"}, nil},
		{"explicitly unauthenticated", []string{"-http-addr", "0.0.0.0:8080", "-allow-unauthenticated"}, nil, nil},
		{"unauthenticated from the environment", []string{"-http-addr", "0.0.0.0:8080"}, map[string]string{"BLOBNODE_ALLOW_UNAUTHENTICATED": "true"}, nil},
		{"exposed pprof even with tokens", []string{"-token-file", "t", "-pprof-addr", "0.0.0.0:6060"}, nil, ErrExposed},
		{"loopback pprof", []string{"-pprof-addr", "127.0.0.1:6060"}, nil, nil},
		{"tls cert without key", []string{"-tls-cert", "c"}, nil, ErrIncompleteTLS},
		{"tls key without cert", []string{"-tls-key", "k"}, nil, ErrIncompleteTLS},
		{"tls pair", []string{"-tls-cert", "c", "-tls-key", "k"}, nil, nil},
		{"peer tls without ca", []string{"-peer-tls-cert", "c", "-peer-tls-key", "k"}, nil, ErrIncompleteTLS},
		{"peer mtls alone", []string{"-peer-mtls"}, nil, ErrIncompleteTLS},
		{"peer ca alone", []string{"-peer-tls-ca", "ca"}, nil, ErrIncompleteTLS},
		{"peer mtls complete", []string{"-peer-tls-cert", "c", "-peer-tls-key", "k", "-peer-tls-ca", "ca", "-peer-mtls"}, nil, nil},
		{"protect metrics without tokens", []string{"-protect-metrics"}, nil, errAny},
		{"exposed raft without mtls", []string{"-raft-addr", "0.0.0.0:7080"}, nil, ErrExposed},
		{"exposed raft with tls but not mutual", []string{"-raft-addr", "10.0.0.1:7080", "-peer-tls-cert", "c", "-peer-tls-key", "k", "-peer-tls-ca", "ca"}, nil, ErrExposed},
		{"exposed raft with mtls", []string{"-raft-addr", "0.0.0.0:7080", "-peer-tls-cert", "c", "-peer-tls-key", "k", "-peer-tls-ca", "ca", "-peer-mtls"}, nil, nil},
		{"exposed raft explicitly unauthenticated", []string{"-raft-addr", "0.0.0.0:7080", "-allow-unauthenticated"}, nil, nil},
	} {
		c, err := parseConfig(tc.args, func(k string) string { return tc.env[k] })
		switch {
		case tc.err == nil && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.err == errAny && err == nil, tc.err != nil && tc.err != errAny && !errors.Is(err, tc.err):
			t.Errorf("%s: err %v, want %v", tc.name, err, tc.err)
		case tc.err == ErrExposed && !strings.Contains(err.Error(), "-allow-unauthenticated"):
			t.Errorf("%s: %q does not say how to go on", tc.name, err)
		}
		if tc.name == "token file from the environment" && c.tokenFile != "t" {
			t.Errorf("%s: tokenFile %q", tc.name, c.tokenFile)
		}
	}
}

var errAny = errors.New("any error")

// TestLoadSecurity: files are read and checked at start; a bad token file
// or certificate names what is wrong; running without tokens says so in
// the log.
func TestLoadSecurity(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "ca")
	certPath, keyPath := testpki.WritePair(t, ca.Issue(t, "n1", testpki.Loopback()), dir, "n1")
	caPath := ca.WriteCA(t, dir, "ca.pem")
	tokens := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokens, []byte("admin 0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badTokens := filepath.Join(dir, "bad-tokens")
	if err := os.WriteFile(badTokens, []byte("read 0123456789abcdef0123\nroot 0123456789abcdef9999\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := config{httpAddr: "127.0.0.1:1", raftAddr: "127.0.0.1:2"}

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	sec, err := loadSecurity(base, log)
	if err != nil || sec.auth() != nil || sec.httpTLS != nil || sec.peerTLS != nil {
		t.Fatalf("nothing configured: %+v, %v", sec, err)
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "authentication is off") {
		t.Errorf("no Warn that authentication is off:\n%s", logs.String())
	}

	full := base
	full.tokenFile, full.tlsCert, full.tlsKey = tokens, certPath, keyPath
	full.peerTLSCert, full.peerTLSKey, full.peerTLSCA, full.peerMTLS = certPath, keyPath, caPath, true
	sec, err = loadSecurity(full, log)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := sec.auth().Scope("0123456789abcdef0123"); !ok || s != api.ScopeAdmin {
		t.Errorf("token scope %v, %v", s, ok)
	}
	if sec.httpTLS == nil || len(sec.httpTLS.Certificates) != 1 || sec.httpTLS.MinVersion < 0x0303 {
		t.Errorf("http TLS %+v", sec.httpTLS)
	}
	if sec.peerTLS == nil || !sec.peerTLS.Mutual || sec.peerTLS.RootCAs == nil {
		t.Errorf("peer TLS %+v", sec.peerTLS)
	}

	for _, tc := range []struct {
		name string
		edit func(*config)
		want string
	}{
		{"bad token file", func(c *config) { c.tokenFile = badTokens }, "line 2"},
		{"missing token file", func(c *config) { c.tokenFile = filepath.Join(dir, "none") }, "no such file"},
		{"key of another certificate", func(c *config) { c.tlsKey = caPath }, "-tls-cert"},
		{"CA file without a certificate", func(c *config) { c.peerTLSCA = tokens }, "-peer-tls-ca"},
	} {
		c := full
		tc.edit(&c)
		if _, err := loadSecurity(c, log); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want an error mentioning %q", tc.name, err, tc.want)
		}
	}
	// A reload takes a valid file whole and leaves a broken one unused.
	reloaded := filepath.Join(dir, "reloaded-tokens")
	if err := os.WriteFile(reloaded, []byte("admin 0123456789abcdef0123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if sec, err = loadSecurity(config{tokenFile: reloaded, httpAddr: "127.0.0.1:1", raftAddr: "127.0.0.1:2"}, log); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(reloaded, []byte("read fedcba9876543210fedc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sec.tokens.reload(log)
	if _, ok := sec.auth().Scope("0123456789abcdef0123"); ok {
		t.Error("a token removed from the file is still valid after reload")
	}
	if s, ok := sec.auth().Scope("fedcba9876543210fedc"); !ok || s != api.ScopeRead {
		t.Errorf("new token after reload: %v, %v", s, ok)
	}
	if err := os.WriteFile(reloaded, []byte("read short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sec.tokens.reload(log)
	if s, ok := sec.auth().Scope("fedcba9876543210fedc"); !ok || s != api.ScopeRead {
		t.Errorf("a broken file replaced the tokens in force: %v, %v", s, ok)
	}
	if !strings.Contains(logs.String(), "token file not reloaded") {
		t.Errorf("a failed reload was not logged:\n%s", logs.String())
	}
}
