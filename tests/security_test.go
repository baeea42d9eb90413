package tests

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blobnode/blobnode/internal/testpki"
)

// Tokens of the secure node, one per scope.
const (
	e2eRead  = "e2e-read-token-0123456789"
	e2eWrite = "e2e-write-token-0123456789"
	e2eAdmin = "e2e-admin-token-0123456789"
)

func bearer(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

// TestSecureNode runs the real binary with a token file, HTTPS for clients
// and mutual TLS for Raft: tokens decide what each client may do over
// HTTPS, a refused upload stores nothing, the Raft port refuses a peer
// without a certificate of the cluster's CA, and SIGHUP reloads the tokens.
func TestSecureNode(t *testing.T) {
	dir := t.TempDir()
	ca := testpki.NewCA(t, "blobnode test CA")
	certPath, keyPath := testpki.WritePair(t, ca.Issue(t, "node1", testpki.Loopback()), dir, "node1")
	caPath := ca.WriteCA(t, dir, "ca.pem")
	tokenPath := filepath.Join(dir, "tokens")
	if err := os.WriteFile(tokenPath, []byte("# e2e\nread "+e2eRead+"\nwrite "+e2eWrite+"\nadmin "+e2eAdmin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := prepareNode(t, t.TempDir(), "-token-file", tokenPath, "-protect-metrics",
		"-tls-cert", certPath, "-tls-key", keyPath,
		"-peer-tls-cert", certPath, "-peer-tls-key", keyPath, "-peer-tls-ca", caPath, "-peer-mtls")
	n.useTLS(&tls.Config{RootCAs: ca.Pool(), MinVersion: tls.VersionTLS12})
	n.start()

	body := payload(1, 70<<10)
	n.put(t, "secure/a", body, bearer(e2eWrite)...)
	if r := n.do(t, http.MethodGet, blobPath("secure/a"), nil, bearer(e2eRead)...); r.status != http.StatusOK || !bytes.Equal(r.body, body) {
		t.Fatalf("GET with a read token: %v", r)
	}

	for _, tc := range []struct {
		name   string
		method string
		body   []byte
		hdr    []string
		status int
		code   string
	}{
		{"PUT without a token", http.MethodPut, []byte("intruder"), nil, http.StatusUnauthorized, "Unauthorized"},
		{"PUT with an unknown token", http.MethodPut, []byte("intruder"), bearer("not-a-token-of-this-node"), http.StatusUnauthorized, "Unauthorized"},
		{"PUT with a read token", http.MethodPut, []byte("reader"), bearer(e2eRead), http.StatusForbidden, "Forbidden"},
		{"DELETE with a read token", http.MethodDelete, nil, bearer(e2eRead), http.StatusForbidden, "Forbidden"},
		{"GET without a token", http.MethodGet, nil, nil, http.StatusUnauthorized, "Unauthorized"},
	} {
		r := n.do(t, tc.method, blobPath("secure/a"), tc.body, tc.hdr...)
		if r.status != tc.status || r.code() != tc.code {
			t.Errorf("%s: %v; want %d %s", tc.name, r, tc.status, tc.code)
		}
		if tc.status == http.StatusUnauthorized && !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("%s: WWW-Authenticate %q", tc.name, r.header.Get("WWW-Authenticate"))
		}
	}
	// Nothing refused reached the store.
	if r := n.do(t, http.MethodGet, blobPath("secure/a"), nil, bearer(e2eRead)...); r.status != http.StatusOK || !bytes.Equal(r.body, body) {
		t.Errorf("GET after the refused requests: %v; want the original %d bytes", r, len(body))
	}
	if r := n.do(t, http.MethodGet, "/blobs", nil, bearer(e2eRead)...); r.status != http.StatusOK || strings.Count(string(r.body), `"key"`) != 1 {
		t.Errorf("listing after the refused requests: %v", r)
	}

	// Metrics and status need admin (-protect-metrics); health does not.
	if r := n.do(t, http.MethodGet, "/metrics", nil, bearer(e2eWrite)...); r.status != http.StatusForbidden {
		t.Errorf("/metrics with a write token: %v", r)
	}
	if r := n.do(t, http.MethodGet, "/healthz", nil); r.status != http.StatusOK {
		t.Errorf("/healthz without a token: %v", r)
	}
	m := n.do(t, http.MethodGet, "/metrics", nil, bearer(e2eAdmin)...)
	for _, want := range []string{
		`blobnode_http_requests_total{code="401",method="PUT",route="/blobs/{key:.+}"} 2`,
		`blobnode_http_requests_total{code="403",method="PUT",route="/blobs/{key:.+}"} 1`,
	} {
		if m.status != http.StatusOK || !strings.Contains(string(m.body), want) {
			t.Errorf("/metrics as admin (%d) lacks %s", m.status, want)
		}
	}

	// Plain HTTP to the HTTPS port is not served.
	plain := newClient(nil)
	if resp, err := plain.Get("http://" + n.httpAddr + "/blobs/secure/a"); err == nil {
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP to the HTTPS port: %s", resp.Status)
		}
	}

	// The Raft port speaks mutual TLS: without a client certificate the
	// handshake is refused; with the cluster's it completes.
	if err := raftHandshake(n.raftAddr, ca, nil); err == nil {
		t.Error("the Raft port accepted a client without a certificate")
	}
	peer := ca.Issue(t, "node2", testpki.Loopback())
	if err := raftHandshake(n.raftAddr, ca, &peer); err != nil {
		t.Errorf("the Raft port refused a peer of its CA: %v", err)
	}

	// SIGHUP reloads the token file: a broken file changes nothing, a
	// valid one replaces the tokens whole.
	if err := os.WriteFile(tokenPath, []byte("read short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, settleTimeout, func() bool {
		b, _ := os.ReadFile(n.logPath)
		return bytes.Contains(b, []byte("token file not reloaded"))
	}, func() string { return "no log line about the broken token file" })
	if r := n.do(t, http.MethodGet, blobPath("secure/a"), nil, bearer(e2eRead)...); r.status != http.StatusOK {
		t.Errorf("after reloading a broken file, the read token: %v", r)
	}
	const e2eNew = "e2e-new-write-token-0123456789"
	if err := os.WriteFile(tokenPath, []byte("write "+e2eNew+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := n.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, settleTimeout, func() bool {
		return n.do(t, http.MethodGet, blobPath("secure/a"), nil, bearer(e2eNew)...).status == http.StatusOK
	}, func() string { return "the new token is not accepted after SIGHUP" })
	if r := n.do(t, http.MethodGet, blobPath("secure/a"), nil, bearer(e2eRead)...); r.status != http.StatusUnauthorized {
		t.Errorf("a token removed from the file, after SIGHUP: %v; want 401", r)
	}
	if !n.running() {
		t.Fatal("SIGHUP stopped the node")
	}

	log, err := os.ReadFile(n.logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{e2eRead, e2eWrite, e2eAdmin, e2eNew} {
		if bytes.Contains(log, []byte(tok)) {
			t.Errorf("the log contains a token")
		}
	}
	if bytes.Contains(log, []byte("authentication is off")) {
		t.Error("the log says authentication is off")
	}
}

// raftHandshake dials addr with TLS trusting ca, presenting cert (nil:
// none), and returns the handshake's error. It speaks TLS 1.2, whose
// client handshake ends only after the server's Finished, which the server
// sends only once it has accepted the client's certificate: a nil error
// means the server accepted this client (in TLS 1.3 the refusal would come
// later, on a read).
func raftHandshake(addr string, ca *testpki.CA, cert *tls.Certificate) error {
	cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1",
		MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	return conn.Close()
}

// TestRefusesToStartExposed: without a token file the node will not listen
// beyond loopback (unless told to), nor start with a broken token file; it
// says why and touches no data. On loopback it starts and warns that
// authentication is off.
func TestRefusesToStartExposed(t *testing.T) {
	badTokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(badTokens, []byte("read "+e2eRead+"\nsuperuser "+e2eAdmin+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		flags []string
		code  int
		say   []string
	}{
		{"all interfaces without tokens", []string{"-http-addr", "0.0.0.0:0"}, 2,
			[]string{"0.0.0.0:0 is not a loopback address", "-token-file", "-allow-unauthenticated"}},
		{"unknown scope in the token file", []string{"-http-addr", "127.0.0.1:0", "-token-file", badTokens}, 1,
			[]string{"token file line 2", "unknown scope"}},
	} {
		dataDir := filepath.Join(t.TempDir(), "data")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		cmd := exec.CommandContext(ctx, blobnodeBin, append([]string{"-data-dir", dataDir, "-raft-addr", freeAddr(t)}, tc.flags...)...)
		cmd.Env = nodeEnv()
		out, err := cmd.CombinedOutput()
		cancel()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != tc.code {
			t.Errorf("%s: exit %v, want status %d\n%s", tc.name, err, tc.code, out)
			continue
		}
		for _, s := range tc.say {
			if !strings.Contains(string(out), s) {
				t.Errorf("%s: output lacks %q:\n%s", tc.name, s, out)
			}
		}
		if strings.Contains(string(out), e2eAdmin) {
			t.Errorf("%s: output quotes a token:\n%s", tc.name, out)
		}
		if _, err := os.Stat(filepath.Join(dataDir, "volume.blob")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s: a refused start created a volume (%v)", tc.name, err)
		}
	}

	n := newNode(t)
	log, err := os.ReadFile(n.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, []byte(`level=WARN msg="authentication is off`)) {
		t.Errorf("a node without tokens does not warn that authentication is off:\n%s", log)
	}
	if r := n.do(t, http.MethodGet, "/blobs", nil); r.status != http.StatusOK {
		t.Errorf("a node without tokens asks for one: %v", r)
	}
}
