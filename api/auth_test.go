package api

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/blobnode/blobnode/store"
)

// Tokens of the auth tests, one per scope.
const (
	readToken  = "read-token-0123456789"
	writeToken = "write-token-0123456789"
	adminToken = "admin-token-0123456789"
	// unknownToken is well formed but in no token file.
	unknownToken = "unknown-token-0123456789"
)

func testTokens(t testing.TB) *Tokens {
	t.Helper()
	toks, err := ParseTokenFile(strings.NewReader(
		"# test tokens\nread " + readToken + "\nwrite " + writeToken + "\nadmin " + adminToken + "\n"))
	if err != nil {
		t.Fatalf("ParseTokenFile: %v", err)
	}
	return toks
}

// seedBlob stores data under key through the fake store directly (not
// through the API under test).
func seedBlob(t testing.TB, f *fakeStore, key string, data []byte) {
	t.Helper()
	if _, err := f.Put(context.Background(), store.PutRequest{
		Key: key, Size: int64(len(data)), Body: bytes.NewReader(data), ContentType: "text/plain",
	}); err != nil {
		t.Fatalf("seed %q: %v", key, err)
	}
}

// TestAuthEveryRoute sends every route and method with no token, a
// malformed header, an unknown token and a token of each scope. A request
// is answered as without authentication exactly when the token's scope is
// at least what the table says the route needs; otherwise it is 401 (no
// valid token) or 403 (a valid token, too small a scope), and a refused
// request changes nothing in the store.
func TestAuthEveryRoute(t *testing.T) {
	type credential struct {
		name   string
		header string // Authorization value; "" sends none
		scope  Scope  // scopeOpen: not a valid token
	}
	creds := []credential{
		{"none", "", scopeOpen},
		{"basic", "Basic dXNlcjpwYXNzd29yZA==", scopeOpen},
		{"empty-bearer", "Bearer ", scopeOpen},
		{"unknown", "Bearer " + unknownToken, scopeOpen},
		{"read-token-as-prefix", "Bearer " + readToken[:len(readToken)-1], scopeOpen},
		{"read", "Bearer " + readToken, ScopeRead},
		{"write", "bearer " + writeToken, ScopeWrite}, // the scheme is case-insensitive
		{"admin", "Bearer " + adminToken, ScopeAdmin},
	}
	type route struct {
		method, path string
		body         string
		need         Scope // needed with ProtectMetrics
		needOpen     Scope // needed without ProtectMetrics
		ok           int   // the status once allowed
	}
	routes := []route{
		{http.MethodGet, "/blobs/k", "", ScopeRead, ScopeRead, 200},
		{http.MethodHead, "/blobs/k", "", ScopeRead, ScopeRead, 200},
		{http.MethodPut, "/blobs/k", "new contents", ScopeWrite, ScopeWrite, 201},
		{http.MethodPut, "/blobs/fresh", "fresh contents", ScopeWrite, ScopeWrite, 201},
		{http.MethodDelete, "/blobs/k", "", ScopeWrite, ScopeWrite, 204},
		{http.MethodPost, "/blobs/k", "x", ScopeWrite, ScopeWrite, 405},
		{http.MethodGet, "/blobs", "", ScopeRead, ScopeRead, 200},
		{http.MethodHead, "/blobs", "", ScopeRead, ScopeRead, 200},
		{http.MethodDelete, "/blobs", "", ScopeWrite, ScopeWrite, 405},
		{http.MethodGet, "/blobs/", "", ScopeRead, ScopeRead, 400},
		{http.MethodPut, "/blobs/", "x", ScopeWrite, ScopeWrite, 400},
		{http.MethodGet, "/no/such/route", "", ScopeRead, ScopeRead, 404},
		{http.MethodGet, "/healthz", "", scopeOpen, scopeOpen, 200},
		{http.MethodHead, "/healthz", "", scopeOpen, scopeOpen, 200},
		{http.MethodGet, "/readyz", "", scopeOpen, scopeOpen, 200},
		{http.MethodGet, "/metrics", "", ScopeAdmin, scopeOpen, 200},
		{http.MethodGet, "/cluster", "", ScopeAdmin, scopeOpen, 200},
	}
	for _, protect := range []bool{true, false} {
		t.Run(fmt.Sprintf("protect-metrics=%v", protect), func(t *testing.T) {
			e := newTestEnv(t, Config{
				Auth: testTokens(t), ProtectMetrics: protect,
				Status: func() any { return map[string]string{"state": "Leader"} },
			})
			for _, rt := range routes {
				need := rt.need
				if !protect {
					need = rt.needOpen
				}
				for _, c := range creds {
					name := fmt.Sprintf("%s %s as %s", rt.method, rt.path, c.name)
					seedBlob(t, e.store, "k", []byte("old contents"))
					before, puts := e.store.snapshot(), e.store.puts()
					var body io.Reader
					if rt.body != "" {
						body = strings.NewReader(rt.body)
					}
					var hdr []string
					if c.header != "" {
						hdr = []string{"Authorization", c.header}
					}
					r := e.do(rt.method, rt.path, body, hdr...)

					allowed := need == scopeOpen || (c.scope != scopeOpen && c.scope >= need)
					switch {
					case allowed:
						if r.status != rt.ok {
							t.Errorf("%s: %d %s; want %d", name, r.status, r.body, rt.ok)
						}
						continue
					case c.scope == scopeOpen:
						if r.status != http.StatusUnauthorized || !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
							t.Errorf("%s: %d WWW-Authenticate %q; want 401 with a Bearer challenge",
								name, r.status, r.header.Get("WWW-Authenticate"))
						}
						if rt.method != http.MethodHead && r.errorCode() != CodeUnauthorized {
							t.Errorf("%s: body %s; want code %s", name, r.body, CodeUnauthorized)
						}
					default:
						if r.status != http.StatusForbidden || !strings.Contains(r.header.Get("WWW-Authenticate"), `error="insufficient_scope"`) {
							t.Errorf("%s: %d WWW-Authenticate %q; want 403 insufficient_scope",
								name, r.status, r.header.Get("WWW-Authenticate"))
						}
						if rt.method != http.MethodHead && r.errorCode() != CodeForbidden {
							t.Errorf("%s: body %s; want code %s", name, r.body, CodeForbidden)
						}
					}
					if after := e.store.snapshot(); !maps.EqualFunc(before, after, bytes.Equal) {
						t.Errorf("%s: refused, yet the store changed: %q -> %q", name, keysOf(before), keysOf(after))
					}
					if n := e.store.puts(); n != puts {
						t.Errorf("%s: refused, yet Put was called", name)
					}
				}
			}
		})
	}
}

func keysOf(m map[string][]byte) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}

// spyBody is a request body that records whether anyone read it.
type spyBody struct {
	r     io.Reader
	reads int
}

func (b *spyBody) Read(p []byte) (int, error) { b.reads++; return b.r.Read(p) }
func (b *spyBody) Close() error               { return nil }

// TestAuthRefusedUploadIsNotRead: authorization is decided on the headers
// alone; a refused PUT's body is never read (so a stranger cannot make the
// node receive, buffer or store bytes), and the response closes the
// connection instead of draining the body.
func TestAuthRefusedUploadIsNotRead(t *testing.T) {
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer " + unknownToken, http.StatusUnauthorized},
		{"Bearer " + readToken, http.StatusForbidden},
	} {
		fs := newFakeStore()
		h := NewHandler(fs, Config{Auth: testTokens(t)})
		body := &spyBody{r: strings.NewReader(strings.Repeat("x", 1<<20))}
		req := httptest.NewRequest(http.MethodPut, "/blobs/big", body)
		req.ContentLength = 1 << 20
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != tc.want {
			t.Errorf("PUT with %q: %d, want %d", tc.auth, rec.Code, tc.want)
		}
		if body.reads != 0 || fs.puts() != 0 {
			t.Errorf("PUT with %q: body read %d times, store.Put called %d times; want neither", tc.auth, body.reads, fs.puts())
		}
		if rec.Header().Get("Connection") != "close" {
			t.Errorf("PUT with %q: Connection %q, want close", tc.auth, rec.Header().Get("Connection"))
		}
	}
	// The same request with a write token is read and stored.
	fs := newFakeStore()
	h := NewHandler(fs, Config{Auth: testTokens(t)})
	body := &spyBody{r: strings.NewReader("payload")}
	req := httptest.NewRequest(http.MethodPut, "/blobs/big", body)
	req.ContentLength = 7
	req.Header.Set("Content-Length", "7")
	req.Header.Set("Authorization", "Bearer "+writeToken)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusCreated || body.reads == 0 || string(fs.snapshot()["big"]) != "payload" {
		t.Errorf("PUT with a write token: %d %s, %d reads", rec.Code, rec.Body, body.reads)
	}
}

// TestAuthMetrics: refusals are counted under their route with their
// status, and by reason; no token reaches the metrics or the log.
func TestAuthMetrics(t *testing.T) {
	e := newTestEnv(t, Config{Auth: testTokens(t), ProtectMetrics: true})
	e.do(http.MethodPut, "/blobs/k", strings.NewReader("x"))
	e.do(http.MethodPut, "/blobs/k", strings.NewReader("x"), "Authorization", "Bearer "+readToken)
	e.do(http.MethodGet, "/blobs", nil, "Authorization", "Bearer "+unknownToken)
	e.do(http.MethodGet, "/metrics", nil, "Authorization", "Bearer "+writeToken)
	e.do(http.MethodGet, "/cluster", nil, "Authorization", "Token abc")
	r := e.do(http.MethodGet, "/metrics", nil, "Authorization", "Bearer "+adminToken)
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics as admin: %d %s", r.status, r.body)
	}
	m := string(r.body)
	for _, want := range []string{
		`blobnode_http_requests_total{code="401",method="PUT",route="/blobs/{key:.+}"} 1`,
		`blobnode_http_requests_total{code="403",method="PUT",route="/blobs/{key:.+}"} 1`,
		`blobnode_http_requests_total{code="401",method="GET",route="/blobs"} 1`,
		`blobnode_http_requests_total{code="403",method="GET",route="/metrics"} 1`,
		`blobnode_http_requests_total{code="401",method="GET",route="/cluster"} 1`,
		`blobnode_http_auth_failures_total{reason="missing",route="/blobs/{key:.+}"} 1`,
		`blobnode_http_auth_failures_total{reason="scope",route="/blobs/{key:.+}"} 1`,
		`blobnode_http_auth_failures_total{reason="invalid",route="/blobs"} 1`,
		`blobnode_http_auth_failures_total{reason="scope",route="/metrics"} 1`,
		`blobnode_http_auth_failures_total{reason="malformed",route="/cluster"} 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	for _, tok := range []string{readToken, writeToken, adminToken, unknownToken} {
		if strings.Contains(m, tok) || strings.Contains(e.logs.String(), tok) {
			t.Errorf("token %q appears in the metrics or the log", tok)
		}
	}
}

// TestAuthOff: without an Authenticator nothing asks for a token, even
// with ProtectMetrics.
func TestAuthOff(t *testing.T) {
	e := newTestEnv(t, Config{ProtectMetrics: true})
	e.put("k", []byte("v"))
	for _, p := range []string{"/blobs/k", "/blobs", "/metrics"} {
		if r := e.do(http.MethodGet, p, nil); r.status != http.StatusOK {
			t.Errorf("GET %s without auth: %d %s", p, r.status, r.body)
		}
	}
}

func TestBearerToken(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers []string
		token   string
		reason  string
	}{
		{"none", nil, "", authMissing},
		{"bearer", []string{"Bearer abc"}, "abc", ""},
		{"lower-case scheme", []string{"bearer abc"}, "abc", ""},
		{"upper-case scheme", []string{"BEARER abc"}, "abc", ""},
		{"extra spaces before token", []string{"Bearer   abc"}, "abc", ""},
		{"two headers", []string{"Bearer abc", "Bearer def"}, "", authMalformed},
		{"basic", []string{"Basic abc"}, "", authMalformed},
		{"no token", []string{"Bearer"}, "", authMalformed},
		{"empty token", []string{"Bearer "}, "", authMalformed},
		{"two tokens", []string{"Bearer abc def"}, "", authMalformed},
		{"tab in token", []string{"Bearer abc\tdef"}, "", authMalformed},
		{"scheme only prefix", []string{"Bearerabc"}, "", authMalformed},
	} {
		h := http.Header{}
		for _, v := range tc.headers {
			h.Add("Authorization", v)
		}
		tok, reason := bearerToken(h)
		if tok != tc.token || reason != tc.reason {
			t.Errorf("%s: bearerToken = %q, %q; want %q, %q", tc.name, tok, reason, tc.token, tc.reason)
		}
	}
}
