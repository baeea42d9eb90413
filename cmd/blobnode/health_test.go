package main

import (
	"bytes"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// readyzServer answers GET /readyz with h, and 404 to anything else.
func readyzServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

// refusedAddr is a loopback address nothing listens on.
func refusedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func TestHealth(t *testing.T) {
	// blobnode's own refusal, as api answers it.
	notReady := func(msg string) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte(`{"error":{"code":"Unavailable","message":"not ready: ` + msg + `"}}` + "\n"))
		}
	}
	release := make(chan struct{})
	defer close(release) // before the servers close: Close waits for handlers
	ok := readyzServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	for _, tc := range []struct {
		name string
		addr func(t *testing.T) string
		args []string
		want string // the line printed
		code int
		// prefix: want is the line's start and suffix its end.
		prefix, suffix string
	}{
		{name: "ready", addr: func(*testing.T) string { return ok.URL }, want: "ready"},
		{name: "a bare host:port", addr: func(*testing.T) string { return strings.TrimPrefix(ok.URL, "http://") }, want: "ready"},
		{name: "a trailing slash", addr: func(*testing.T) string { return ok.URL + "/" }, want: "ready"},
		{name: "no leader", code: 1, want: "not ready: 503 no Raft leader",
			addr: func(t *testing.T) string { return readyzServer(t, notReady("no Raft leader")).URL }},
		{name: "read-only", code: 1, want: "not ready: 503 read-only: catalog: no space left on device",
			addr: func(t *testing.T) string {
				return readyzServer(t, notReady("read-only: catalog: no space left on device")).URL
			}},
		{name: "a plain error", code: 1, want: "not ready: 500 boom",
			addr: func(t *testing.T) string {
				return readyzServer(t, func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", 500) }).URL
			}},
		{name: "an empty refusal", code: 1, want: "not ready: 502 Bad Gateway",
			addr: func(t *testing.T) string {
				return readyzServer(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(502) }).URL
			}},
		{name: "not blobnode", code: 1, want: "not ready: 404 404 page not found",
			addr: func(t *testing.T) string {
				srv := httptest.NewServer(http.NotFoundHandler())
				t.Cleanup(srv.Close)
				return srv.URL
			}},
		{name: "connection refused", code: 1, prefix: "unreachable: dial tcp 127.0.0.1:", suffix: "connect: connection refused",
			addr: func(t *testing.T) string { return "http://" + refusedAddr(t) }},
		{name: "timeout", code: 1, args: []string{"-timeout", "200ms"}, want: "unreachable: no answer within 200ms",
			addr: func(t *testing.T) string {
				return readyzServer(t, func(w http.ResponseWriter, r *http.Request) {
					select {
					case <-r.Context().Done():
					case <-release:
					}
				}).URL
			}},
		{name: "bad scheme", code: 1, prefix: "bad address: ", suffix: `scheme "ftp", want http or https`,
			addr: func(*testing.T) string { return "ftp://127.0.0.1:21" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			start := time.Now()
			code := runHealth(append([]string{"-addr", tc.addr(t)}, tc.args...), func(string) string { return "" }, &out)
			line := strings.TrimSuffix(out.String(), "\n")
			if strings.Contains(line, "\n") {
				t.Errorf("more than one line: %q", out.String())
			}
			if code != tc.code {
				t.Errorf("exit %d, want %d (%q)", code, tc.code, line)
			}
			if tc.prefix != "" {
				if !strings.HasPrefix(line, tc.prefix) || !strings.HasSuffix(line, tc.suffix) {
					t.Errorf("printed %q, want %q...%q", line, tc.prefix, tc.suffix)
				}
			} else if line != tc.want {
				t.Errorf("printed %q, want %q", line, tc.want)
			}
			if d := time.Since(start); d > defaultHealthTimeout+time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

func TestHealthFlagsAndEnvironment(t *testing.T) {
	ok := readyzServer(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	refused := "http://" + refusedAddr(t)
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		code int
	}{
		{"address from the environment", nil, map[string]string{"BLOBNODE_HEALTH_ADDR": ok.URL}, 0},
		{"a flag wins", []string{"-addr", refused}, map[string]string{"BLOBNODE_HEALTH_ADDR": ok.URL}, 1},
		{"timeout from the environment", []string{"-addr", ok.URL}, map[string]string{"BLOBNODE_HEALTH_TIMEOUT": "1s"}, 0},
		{"bad timeout in the environment", []string{"-addr", ok.URL}, map[string]string{"BLOBNODE_HEALTH_TIMEOUT": "soon"}, 1},
		{"zero timeout", []string{"-addr", ok.URL, "-timeout", "0s"}, nil, 1},
		{"unknown flag", []string{"-port", "8080"}, nil, 1},
		{"extra argument", []string{"-addr", ok.URL, "now"}, nil, 1},
		{"help", []string{"-h"}, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			if code := runHealth(tc.args, func(k string) string { return tc.env[k] }, &out); code != tc.code {
				t.Errorf("exit %d, want %d: %s", code, tc.code, out.String())
			}
		})
	}
}
