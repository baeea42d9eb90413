package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blobnode/blobnode/store"
)

func TestPutGetRoundTrip(t *testing.T) {
	e := newTestEnv(t, Config{})
	data := []byte("hello, blob")
	r := e.put("dir/hello.txt", data, "Content-Type", "text/plain")
	var got putResponse
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("PUT body %s: %v", r.body, err)
	}
	info, ok := e.store.info("dir/hello.txt")
	if !ok {
		t.Fatal("blob not stored")
	}
	want := putResponse{Key: "dir/hello.txt", Size: int64(len(data)), ETag: info.ETag, Version: info.Version}
	if got != want {
		t.Errorf("PUT body = %+v, want %+v", got, want)
	}
	if r.header.Get("ETag") != info.ETag {
		t.Errorf("PUT ETag = %q, want %q", r.header.Get("ETag"), info.ETag)
	}

	for _, method := range []string{http.MethodGet, http.MethodHead} {
		g := e.do(method, "/blobs/dir/hello.txt", nil)
		if g.status != http.StatusOK {
			t.Fatalf("%s: status %d", method, g.status)
		}
		wantHeaders := map[string]string{
			"Content-Length": fmt.Sprint(len(data)),
			"Content-Type":   "text/plain",
			"ETag":           info.ETag,
			"Last-Modified":  info.Created.UTC().Format(http.TimeFormat),
			"Accept-Ranges":  "bytes",
		}
		for k, v := range wantHeaders {
			if g.header.Get(k) != v {
				t.Errorf("%s %s = %q, want %q", method, k, g.header.Get(k), v)
			}
		}
		wantBody := data
		if method == http.MethodHead {
			wantBody = nil
		}
		if !bytes.Equal(g.body, wantBody) {
			t.Errorf("%s body = %q, want %q", method, g.body, wantBody)
		}
	}

	// Default content type, empty blob, overwrite.
	e.put("empty", nil)
	g := e.do(http.MethodGet, "/blobs/empty", nil)
	if g.status != http.StatusOK || len(g.body) != 0 || g.header.Get("Content-Type") != defaultMediaType ||
		g.header.Get("Content-Length") != "0" {
		t.Errorf("GET empty: %d %q %v", g.status, g.body, g.header)
	}
	e.put("dir/hello.txt", []byte("v2"))
	if g := e.do(http.MethodGet, "/blobs/dir/hello.txt", nil); string(g.body) != "v2" {
		t.Errorf("after overwrite GET = %q", g.body)
	}
}

func TestPutStatus(t *testing.T) {
	const max = 1024
	crc := func(b []byte) string { return fmt.Sprintf("%08x", crc32.Checksum(b, castagnoli)) }
	body := []byte("some bytes of a blob")
	existing := []byte("already here")

	tests := []struct {
		name     string
		key      string
		data     []byte
		chunked  bool // send with Transfer-Encoding: chunked
		headers  []string
		storeErr error // injected into Put
		status   int
		code     string
		stored   bool // key holds body afterwards
	}{
		{name: "created", data: body, status: 201, stored: true},
		{name: "chunked within limit", data: body, chunked: true, status: 201, stored: true},
		{name: "exactly the limit", data: make([]byte, max), status: 201, stored: true},
		{name: "chunked exactly the limit", data: make([]byte, max), chunked: true, status: 201, stored: true},
		{name: "content-length over limit", data: make([]byte, max+1), status: 413, code: CodeTooLarge},
		{name: "chunked over limit", data: make([]byte, 4*max), chunked: true, status: 413, code: CodeTooLarge},
		{name: "crc lower hex", data: body, headers: []string{headerCRC32C, crc(body)}, status: 201, stored: true},
		{name: "crc upper hex", data: body, headers: []string{headerCRC32C, strings.ToUpper(crc(body))}, status: 201, stored: true},
		{name: "crc mismatch", data: body, headers: []string{headerCRC32C, crc([]byte("other"))}, status: 400, code: CodeBadDigest},
		{name: "crc mismatch chunked", data: body, chunked: true, headers: []string{headerCRC32C, crc([]byte("other"))}, status: 400, code: CodeBadDigest},
		{name: "crc too short", data: body, headers: []string{headerCRC32C, "1234567"}, status: 400, code: CodeInvalidArgument},
		{name: "crc too long", data: body, headers: []string{headerCRC32C, "123456789"}, status: 400, code: CodeInvalidArgument},
		{name: "crc not hex", data: body, headers: []string{headerCRC32C, "0000000g"}, status: 400, code: CodeInvalidArgument},
		{name: "crc empty", data: body, headers: []string{headerCRC32C, ""}, status: 400, code: CodeInvalidArgument},
		{name: "crc twice", data: body, headers: []string{headerCRC32C, crc(body), headerCRC32C, crc(body)}, status: 400, code: CodeInvalidArgument},
		{name: "if-none-match star, absent", key: "fresh", data: body, headers: []string{"If-None-Match", "*"}, status: 201, stored: true},
		{name: "if-none-match star, present", data: body, headers: []string{"If-None-Match", "*"}, status: 412, code: CodePreconditionFailed},
		{name: "if-none-match tag", data: body, headers: []string{"If-None-Match", `"x"`}, status: 400, code: CodeInvalidArgument},
		{name: "if-match current", data: body, headers: []string{"If-Match", "CURRENT"}, status: 201, stored: true},
		{name: "if-match other", data: body, headers: []string{"If-Match", `"nope"`}, status: 412, code: CodePreconditionFailed},
		{name: "if-match weak current", data: body, headers: []string{"If-Match", "W/CURRENT"}, status: 412, code: CodePreconditionFailed},
		{name: "if-match absent blob", key: "fresh", data: body, headers: []string{"If-Match", `"1-00000000"`}, status: 412, code: CodePreconditionFailed},
		{name: "if-match star", data: body, headers: []string{"If-Match", "*"}, status: 400, code: CodeInvalidArgument},
		{name: "if-match list", data: body, headers: []string{"If-Match", `"a", "b"`}, status: 400, code: CodeInvalidArgument},
		{name: "if-match unquoted", data: body, headers: []string{"If-Match", `abc`}, status: 400, code: CodeInvalidArgument},
		{name: "no space", data: body, storeErr: fmt.Errorf("allocate: %w", store.ErrNoSpace), status: 507, code: CodeNoSpace},
		{name: "unavailable", data: body, storeErr: fmt.Errorf("no leader: %w", store.ErrUnavailable), status: 503, code: CodeUnavailable},
		{name: "outcome unknown", data: body, storeErr: fmt.Errorf("commit: %w: leadership lost", store.ErrOutcomeUnknown), status: 503, code: CodeOutcomeUnknown},
		{name: "store too large", data: body, storeErr: store.ErrTooLarge, status: 413, code: CodeTooLarge},
		{name: "store invalid key", data: body, storeErr: fmt.Errorf("%w: reserved", store.ErrInvalidKey), status: 400, code: CodeInvalidKey},
		{name: "internal", data: body, storeErr: errInjectedRead, status: 500, code: CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t, Config{MaxBlobSize: max})
			e.put("k", existing)
			cur, _ := e.store.info("k")
			key := tt.key
			if key == "" {
				key = "k"
			}
			for i := range tt.headers {
				tt.headers[i] = strings.ReplaceAll(tt.headers[i], "CURRENT", cur.ETag)
			}
			e.store.setFail("put", tt.storeErr)
			var body io.Reader = bytes.NewReader(tt.data)
			if tt.chunked {
				body = io.MultiReader(body)
			}
			r := e.do(http.MethodPut, "/blobs/"+key, body, tt.headers...)
			if r.status != tt.status || r.errorCode() != tt.code {
				t.Fatalf("status %d code %q (%s), want %d %q", r.status, r.errorCode(), r.body, tt.status, tt.code)
			}
			if tt.status == http.StatusServiceUnavailable && r.header.Get("Retry-After") != "1" {
				t.Errorf("Retry-After = %q, want 1", r.header.Get("Retry-After"))
			}
			if tt.status == http.StatusInternalServerError {
				if r.errorMessage() != "internal error" {
					t.Errorf("500 message %q leaks detail", r.errorMessage())
				}
				if !strings.Contains(e.logs.String(), "secret-volume") {
					t.Errorf("internal error not logged; log:\n%s", e.logs.String())
				}
			}
			got, ok := e.store.snapshot()[key]
			switch {
			case tt.stored:
				if !ok || !bytes.Equal(got, tt.data) {
					t.Errorf("stored %d bytes (present %v), want %d", len(got), ok, len(tt.data))
				}
			case key == "k" && !bytes.Equal(got, existing):
				t.Errorf("existing blob changed to %d bytes", len(got))
			case key != "k" && ok:
				t.Errorf("blob %s stored after a failed PUT", key)
			}
		})
	}
}

func TestPutTooLargeNeverReachesStore(t *testing.T) {
	e := newTestEnv(t, Config{MaxBlobSize: 10})
	r := e.do(http.MethodPut, "/blobs/big", strings.NewReader("eleven byte"))
	if r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413", r.status)
	}
	if n := e.store.puts(); n != 0 {
		t.Errorf("store saw %d puts for a body refused by its Content-Length", n)
	}
}

func TestPutChunkedOverLimitStoresNothing(t *testing.T) {
	e := newTestEnv(t, Config{MaxBlobSize: 100})
	r := e.do(http.MethodPut, "/blobs/big", io.MultiReader(strings.NewReader(strings.Repeat("x", 1000))))
	if r.status != http.StatusRequestEntityTooLarge || r.errorCode() != CodeTooLarge {
		t.Fatalf("status %d %s, want 413", r.status, r.body)
	}
	if e.store.puts() != 1 {
		t.Errorf("store saw %d puts, want 1 (the limit must be hit while streaming)", e.store.puts())
	}
	if len(e.store.snapshot()) != 0 {
		t.Errorf("stored %v", e.store.snapshot())
	}
}

func TestPutLengthRequired(t *testing.T) {
	e := newTestEnv(t, Config{})
	resp := e.raw("PUT /blobs/x HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != http.StatusLengthRequired {
		t.Fatalf("status %d, want 411", resp.StatusCode)
	}
	b, _ := io.ReadAll(resp.Body)
	if code := (result{body: b}).errorCode(); code != CodeLengthRequired {
		t.Errorf("code %q, want %s", code, CodeLengthRequired)
	}
	// An explicit zero length is a valid empty blob.
	resp = e.rawComplete("PUT /blobs/x HTTP/1.1\r\nHost: test\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("Content-Length: 0: status %d, want 201", resp.StatusCode)
	}
}

// TestPutTruncated sends fewer bytes than Content-Length and hangs up; the
// store must be asked (the path is exercised) and must keep nothing.
func TestPutTruncated(t *testing.T) {
	e := newTestEnv(t, Config{})
	conn := dialRaw(t, e)
	fmt.Fprintf(conn, "PUT /blobs/trunc HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n%s", strings.Repeat("a", 40))
	conn.Close()
	e.waitServed("PUT /blobs/trunc")
	if e.store.puts() != 1 {
		t.Fatalf("store saw %d puts, want 1", e.store.puts())
	}
	if s := e.store.snapshot(); len(s) != 0 {
		t.Fatalf("truncated upload stored: %v", s)
	}
	if m := e.metrics(); !strings.Contains(m, `blobnode_http_requests_total{code="400",method="PUT",route="/blobs/{key:.+}"} 1`) {
		t.Errorf("truncated upload not counted as 400:\n%s", m)
	}
}

// TestPutTruncatedHalfClose is the same with a client still listening: it
// must be told IncompleteBody.
func TestPutTruncatedHalfClose(t *testing.T) {
	for _, tt := range []struct{ name, req string }{
		{"content-length", "PUT /blobs/trunc HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("a", 40)},
		{"chunked cut", "PUT /blobs/trunc HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n28\r\n" + strings.Repeat("a", 20)},
		{"chunked malformed", "PUT /blobs/trunc HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t, Config{})
			resp := e.raw(tt.req)
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusBadRequest || (result{body: b}).errorCode() != CodeIncompleteBody {
				t.Fatalf("status %d %s, want 400 IncompleteBody", resp.StatusCode, b)
			}
			if !resp.Close {
				t.Error("response does not close the connection")
			}
			if s := e.store.snapshot(); len(s) != 0 {
				t.Fatalf("truncated upload stored: %v", s)
			}
		})
	}
}

func TestUploadBodyErrors(t *testing.T) {
	broken := errors.New("connection reset")
	tests := []struct {
		name    string
		r       io.Reader
		max     int64
		n       int64
		wantErr error
	}{
		{"fits", strings.NewReader("12345"), 5, 5, nil},
		{"one over", strings.NewReader("123456"), 5, 5, store.ErrTooLarge},
		{"short", io.MultiReader(strings.NewReader("12"), iotest.ErrReader(io.ErrUnexpectedEOF)), 5, 2, store.ErrIncompleteBody},
		{"reset", io.MultiReader(strings.NewReader("12"), iotest.ErrReader(broken)), 5, 2, broken},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := &uploadBody{r: tt.r, max: tt.max, remaining: tt.max}
			n, err := io.Copy(io.Discard, b)
			if n != tt.n || !errors.Is(err, tt.wantErr) {
				t.Fatalf("copied %d, err %v; want %d, %v", n, err, tt.n, tt.wantErr)
			}
			if tt.wantErr != nil {
				if _, again := b.Read(make([]byte, 1)); again != err {
					t.Errorf("error not sticky: %v then %v", err, again)
				}
				if tt.wantErr == broken && !errors.Is(err, store.ErrIncompleteBody) {
					t.Errorf("read error %v does not wrap ErrIncompleteBody", err)
				}
			}
		})
	}
}

// TestClientGoneIsNotAServerError: when the client's context ends before
// the store answers, the request is recorded as 499, not as a 500.
func TestClientGoneIsNotAServerError(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := NewHandler(newFakeStore(), Config{Registerer: reg})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodPut, "/blobs/k", strings.NewReader("data"))
	req.Header.Set("Content-Length", "4")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != statusClientClosed {
		t.Fatalf("status %d (%s), want %d", rec.Code, rec.Body, statusClientClosed)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var found bool
	for _, mf := range families {
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "code" && l.GetValue() == "499" {
					found = true
				}
			}
		}
	}
	if !found {
		t.Error("no request counted with code 499")
	}
}

// The store refuses a field over its limit (a Content-Type too long for
// a command) as store.ErrInvalidArgument: 400 InvalidArgument, with the
// store's message, never 413 or 500.
func TestPutInvalidArgumentFromStore(t *testing.T) {
	e := newTestEnv(t, Config{})
	e.store.setFail("put", fmt.Errorf("%w: content type of 2000 bytes, at most 1024", store.ErrInvalidArgument))
	r := e.do(http.MethodPut, "/blobs/k", strings.NewReader("abc"), "Content-Type", strings.Repeat("a", 2000))
	if r.status != http.StatusBadRequest || r.errorCode() != CodeInvalidArgument {
		t.Fatalf("status %d code %q; want 400 %s", r.status, r.errorCode(), CodeInvalidArgument)
	}
	if !strings.Contains(r.errorMessage(), "content type") {
		t.Errorf("message %q does not say what was invalid", r.errorMessage())
	}
}
