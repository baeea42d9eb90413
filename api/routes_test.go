package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMethodNotAllowed(t *testing.T) {
	e := newTestEnv(t, Config{Status: func() any { return map[string]int{"nodes": 1} }})
	tests := []struct{ method, path, allow string }{
		{http.MethodPost, "/blobs/x", "GET, HEAD, PUT, DELETE"},
		{http.MethodPatch, "/blobs/x/y", "GET, HEAD, PUT, DELETE"},
		{"BREW", "/blobs/x", "GET, HEAD, PUT, DELETE"},
		{http.MethodPut, "/blobs", "GET, HEAD"},
		{http.MethodDelete, "/blobs", "GET, HEAD"},
		{http.MethodPost, "/healthz", "GET, HEAD"},
		{http.MethodPut, "/readyz", "GET, HEAD"},
		{http.MethodPost, "/metrics", "GET, HEAD"},
		{http.MethodDelete, "/cluster", "GET, HEAD"},
	}
	for _, tt := range tests {
		r := e.do(tt.method, tt.path, nil)
		if r.status != http.StatusMethodNotAllowed || r.errorCode() != CodeMethodNotAllowed || r.header.Get("Allow") != tt.allow {
			t.Errorf("%s %s: %d %q Allow %q, want 405 Allow %q", tt.method, tt.path, r.status, r.errorCode(), r.header.Get("Allow"), tt.allow)
		}
	}
}

func TestUnknownRoute(t *testing.T) {
	e := newTestEnv(t, Config{})
	for _, p := range []string{"/", "/blob/x", "/healthz/extra", "/blobsx"} {
		r := e.do(http.MethodGet, p, nil)
		if r.status != http.StatusNotFound || r.errorCode() != CodeNotFound {
			t.Errorf("GET %s: %d %q", p, r.status, r.errorCode())
		}
	}
}

func TestHealthReadyCluster(t *testing.T) {
	notReady := errors.New("no raft leader yet")
	var readyErr error
	e := newTestEnv(t, Config{
		Ready:  func() error { return readyErr },
		Status: func() any { return map[string]any{"leader": "n1", "term": 3} },
	})
	if r := e.do(http.MethodGet, "/healthz", nil); r.status != 200 || strings.TrimSpace(string(r.body)) != "ok" {
		t.Errorf("healthz: %d %q", r.status, r.body)
	}
	if r := e.do(http.MethodGet, "/readyz", nil); r.status != 200 {
		t.Errorf("readyz ready: %d %q", r.status, r.body)
	}
	readyErr = notReady // no request is in flight
	r := e.do(http.MethodGet, "/readyz", nil)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.errorMessage(), notReady.Error()) {
		t.Errorf("readyz not ready: %d %s", r.status, r.body)
	}
	if r := e.do(http.MethodGet, "/healthz", nil); r.status != 200 {
		t.Errorf("healthz while not ready: %d", r.status)
	}
	r = e.do(http.MethodGet, "/cluster", nil)
	var status map[string]any
	if r.status != 200 || json.Unmarshal(r.body, &status) != nil || status["leader"] != "n1" {
		t.Errorf("cluster: %d %s", r.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("cluster Content-Type %q", ct)
	}

	bare := newTestEnv(t, Config{})
	if r := bare.do(http.MethodGet, "/readyz", nil); r.status != 200 {
		t.Errorf("readyz without Ready: %d", r.status)
	}
	if r := bare.do(http.MethodGet, "/cluster", nil); r.status != 404 || r.errorCode() != CodeNotFound {
		t.Errorf("cluster without Status: %d %s", r.status, r.body)
	}
	unencodable := newTestEnv(t, Config{Status: func() any { return func() {} }})
	if r := unencodable.do(http.MethodGet, "/cluster", nil); r.status != 500 {
		t.Errorf("cluster with unencodable status: %d %s", r.status, r.body)
	}
}

func TestMetrics(t *testing.T) {
	e := newTestEnv(t, Config{})
	e.put("secret/key-name", []byte("0123456789"))
	e.do(http.MethodGet, "/blobs/secret/key-name", nil)
	e.do(http.MethodGet, "/blobs/nope", nil)
	e.do("BREW", "/blobs/x", nil)
	e.do(http.MethodGet, "/no/such/route", nil)
	e.do(http.MethodGet, "/blobs/", nil)
	m := e.metrics()
	for _, want := range []string{
		`blobnode_http_requests_total{code="201",method="PUT",route="/blobs/{key:.+}"} 1`,
		`blobnode_http_requests_total{code="200",method="GET",route="/blobs/{key:.+}"} 1`,
		`blobnode_http_requests_total{code="404",method="GET",route="/blobs/{key:.+}"} 1`,
		`blobnode_http_requests_total{code="405",method="OTHER",route="/blobs/{key:.+}"} 1`,
		`blobnode_http_requests_total{code="404",method="GET",route="unmatched"} 1`,
		`blobnode_http_requests_total{code="400",method="GET",route="/blobs/"} 1`,
		`blobnode_http_request_duration_seconds_count{method="PUT",route="/blobs/{key:.+}"} 1`,
		`blobnode_http_request_bytes_total{route="/blobs/{key:.+}"} 10`,
		`blobnode_http_response_bytes_total{route="/blobs/{key:.+}"}`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, leak := range []string{"secret", "key-name", "nope", "no/such", "BREW"} {
		if strings.Contains(m, leak) {
			t.Errorf("metrics contain the raw path or method %q", leak)
		}
	}
	if !strings.Contains(e.logs.String(), "level=DEBUG msg=\"http request\"") {
		t.Errorf("no debug request line in log:\n%s", e.logs.String())
	}
}

func TestMetricsRegistration(t *testing.T) {
	// Two handlers on one registry share collectors instead of panicking.
	reg := prometheus.NewRegistry()
	NewHandler(newFakeStore(), Config{Registerer: reg})
	NewHandler(newFakeStore(), Config{Registerer: reg})

	// A nil Registerer registers nothing and serves no /metrics, unless a
	// Gatherer is given.
	h := NewHandler(newFakeStore(), Config{})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusNotFound {
		t.Errorf("/metrics without Gatherer: %d", rec.Code)
	}
	other := prometheus.NewRegistry()
	other.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "other_total", Help: "x"}))
	h = NewHandler(newFakeStore(), Config{Registerer: reg, Gatherer: other})
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != 200 || !strings.Contains(rec.Body.String(), "other_total") {
		t.Errorf("/metrics with Gatherer: %d %s", rec.Code, rec.Body.String())
	}

	// A conflicting collector under one of our names is a wiring bug.
	bad := prometheus.NewRegistry()
	bad.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "blobnode_http_requests_total", Help: "x"}))
	defer func() {
		if recover() == nil {
			t.Error("conflicting registration did not panic")
		}
	}()
	NewHandler(newFakeStore(), Config{Registerer: bad})
}
