package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/blobnode/blobnode/store"
)

func TestGetConditional(t *testing.T) {
	e := newTestEnv(t, Config{})
	e.put("k", []byte("0123456789"))
	info, _ := e.store.info("k")
	lastMod := info.Created.UTC().Format(http.TimeFormat)
	before := info.Created.Add(-time.Hour).UTC().Format(http.TimeFormat)
	after := info.Created.Add(time.Hour).UTC().Format(http.TimeFormat)
	tag := info.ETag

	tests := []struct {
		name    string
		headers []string
		status  int
	}{
		{"none", nil, 200},
		{"if-none-match current", []string{"If-None-Match", tag}, 304},
		{"if-none-match weak current", []string{"If-None-Match", "W/" + tag}, 304},
		{"if-none-match list", []string{"If-None-Match", `"a", ` + tag + `, "b"`}, 304},
		{"if-none-match two headers", []string{"If-None-Match", `"a"`, "If-None-Match", tag}, 304},
		{"if-none-match star", []string{"If-None-Match", "*"}, 304},
		{"if-none-match other", []string{"If-None-Match", `"other"`}, 200},
		{"if-none-match malformed", []string{"If-None-Match", `garbage`}, 200},
		{"if-match current", []string{"If-Match", tag}, 200},
		{"if-match list", []string{"If-Match", `"x", ` + tag}, 200},
		{"if-match star", []string{"If-Match", "*"}, 200},
		{"if-match other", []string{"If-Match", `"other"`}, 412},
		{"if-match weak current", []string{"If-Match", "W/" + tag}, 412},
		{"if-modified-since same", []string{"If-Modified-Since", lastMod}, 304},
		{"if-modified-since later", []string{"If-Modified-Since", after}, 304},
		{"if-modified-since earlier", []string{"If-Modified-Since", before}, 200},
		{"if-modified-since garbage", []string{"If-Modified-Since", "yesterday"}, 200},
		{"if-none-match wins over ims", []string{"If-None-Match", `"other"`, "If-Modified-Since", after}, 200},
		{"if-unmodified-since earlier", []string{"If-Unmodified-Since", before}, 412},
		{"if-unmodified-since same", []string{"If-Unmodified-Since", lastMod}, 200},
		{"if-match wins over ius", []string{"If-Match", tag, "If-Unmodified-Since", before}, 200},
		{"412 before 304", []string{"If-Match", `"other"`, "If-None-Match", tag}, 412},
	}
	for _, tt := range tests {
		for _, method := range []string{http.MethodGet, http.MethodHead} {
			t.Run(method+" "+tt.name, func(t *testing.T) {
				r := e.do(method, "/blobs/k", nil, tt.headers...)
				if r.status != tt.status {
					t.Fatalf("status %d, want %d (%s)", r.status, tt.status, r.body)
				}
				switch tt.status {
				case http.StatusNotModified:
					if r.header.Get("ETag") != tag || r.header.Get("Last-Modified") != lastMod || len(r.body) != 0 {
						t.Errorf("304 headers %v body %q", r.header, r.body)
					}
				case http.StatusPreconditionFailed:
					if method == http.MethodGet && r.errorCode() != CodePreconditionFailed {
						t.Errorf("code %q", r.errorCode())
					}
				}
			})
		}
	}
}

func TestGetRange(t *testing.T) {
	e := newTestEnv(t, Config{})
	data := []byte("0123456789")
	e.put("k", data)
	e.put("empty", nil)
	info, _ := e.store.info("k")

	tests := []struct {
		name         string
		key          string
		method       string
		headers      []string
		status       int
		body         string
		contentRange string
		code         string
	}{
		{name: "closed", headers: []string{"Range", "bytes=0-4"}, status: 206, body: "01234", contentRange: "bytes 0-4/10"},
		{name: "single byte", headers: []string{"Range", "bytes=3-3"}, status: 206, body: "3", contentRange: "bytes 3-3/10"},
		{name: "open", headers: []string{"Range", "bytes=5-"}, status: 206, body: "56789", contentRange: "bytes 5-9/10"},
		{name: "suffix", headers: []string{"Range", "bytes=-3"}, status: 206, body: "789", contentRange: "bytes 7-9/10"},
		{name: "suffix larger than size", headers: []string{"Range", "bytes=-20"}, status: 206, body: "0123456789", contentRange: "bytes 0-9/10"},
		{name: "end beyond size", headers: []string{"Range", "bytes=8-100"}, status: 206, body: "89", contentRange: "bytes 8-9/10"},
		{name: "unit case", headers: []string{"Range", "Bytes=0-0"}, status: 206, body: "0", contentRange: "bytes 0-0/10"},
		{name: "start at end", headers: []string{"Range", "bytes=10-"}, status: 416, contentRange: "bytes */10", code: CodeRangeNotSatisfiable},
		{name: "start beyond end", headers: []string{"Range", "bytes=20-30"}, status: 416, contentRange: "bytes */10", code: CodeRangeNotSatisfiable},
		{name: "empty suffix", headers: []string{"Range", "bytes=-0"}, status: 416, contentRange: "bytes */10", code: CodeRangeNotSatisfiable},
		{name: "empty blob", key: "empty", headers: []string{"Range", "bytes=0-"}, status: 416, contentRange: "bytes */0", code: CodeRangeNotSatisfiable},
		// "bytes=" and then not a list of well-formed ranges: 416, as nginx.
		{name: "reversed", headers: []string{"Range", "bytes=5-2"}, status: 416, contentRange: "bytes */10", code: CodeRangeNotSatisfiable},
		{name: "garbage", headers: []string{"Range", "bytes=abc"}, status: 416, contentRange: "bytes */10", code: CodeRangeNotSatisfiable},
		{name: "no dash", headers: []string{"Range", "bytes=5"}, status: 416, contentRange: "bytes */10", code: CodeRangeNotSatisfiable},
		{name: "bare dash", headers: []string{"Range", "bytes=-"}, status: 416, contentRange: "bytes */10", code: CodeRangeNotSatisfiable},
		{name: "empty set", headers: []string{"Range", "bytes="}, status: 416, contentRange: "bytes */10", code: CodeRangeNotSatisfiable},
		{name: "only commas", headers: []string{"Range", "bytes=, ,"}, status: 416, contentRange: "bytes */10", code: CodeRangeNotSatisfiable},
		{name: "negative", headers: []string{"Range", "bytes=-1-2"}, status: 416, contentRange: "bytes */10", code: CodeRangeNotSatisfiable},
		{name: "malformed second range", headers: []string{"Range", "bytes=0-1,abc"}, status: 416, contentRange: "bytes */10", code: CodeRangeNotSatisfiable},
		{name: "reversed second range", headers: []string{"Range", "bytes=0-1,5-2"}, status: 416, contentRange: "bytes */10", code: CodeRangeNotSatisfiable},
		{name: "malformed of empty blob", key: "empty", headers: []string{"Range", "bytes=abc"}, status: 416, contentRange: "bytes */0", code: CodeRangeNotSatisfiable},
		{name: "trailing comma is one range", headers: []string{"Range", "bytes=0-1,"}, status: 206, body: "01", contentRange: "bytes 0-1/10"},
		// Not a bytes range: ignored (RFC 9110 section 14.2).
		{name: "other unit", headers: []string{"Range", "items=0-5"}, status: 200, body: "0123456789"},
		{name: "no unit", headers: []string{"Range", "garbage"}, status: 200, body: "0123456789"},
		{name: "space before equals", headers: []string{"Range", "bytes =0-1"}, status: 200, body: "0123456789"},
		{name: "other unit of empty blob", key: "empty", headers: []string{"Range", "items=0-5"}, status: 200, body: ""},
		// Several ranges or several headers: ignored.
		{name: "two ranges", headers: []string{"Range", "bytes=0-1,5-6"}, status: 200, body: "0123456789"},
		{name: "overlapping ranges", headers: []string{"Range", "bytes=0-5,2-8"}, status: 200, body: "0123456789"},
		{name: "two unsatisfiable ranges", headers: []string{"Range", "bytes=20-30,40-50"}, status: 200, body: "0123456789"},
		{name: "many ranges", headers: []string{"Range", "bytes=" + strings.Repeat("0-0,", 1000)}, status: 200, body: "0123456789"},
		{name: "two headers", headers: []string{"Range", "bytes=0-1", "Range", "bytes=3-4"}, status: 200, body: "0123456789"},
		{name: "two headers one malformed", headers: []string{"Range", "bytes=abc", "Range", "bytes=3-4"}, status: 200, body: "0123456789"},
		{name: "if-range current", headers: []string{"Range", "bytes=0-1", "If-Range", info.ETag}, status: 206, body: "01", contentRange: "bytes 0-1/10"},
		{name: "if-range date", headers: []string{"Range", "bytes=0-1", "If-Range", info.Created.Format(http.TimeFormat)}, status: 206, body: "01", contentRange: "bytes 0-1/10"},
		{name: "if-range stale", headers: []string{"Range", "bytes=0-1", "If-Range", `"old"`}, status: 200, body: "0123456789"},
		{name: "if-range weak", headers: []string{"Range", "bytes=0-1", "If-Range", "W/" + info.ETag}, status: 200, body: "0123456789"},
		{name: "if-range stale malformed", headers: []string{"Range", "bytes=abc", "If-Range", `"old"`}, status: 200, body: "0123456789"},
		{name: "if-range stale unsatisfiable", headers: []string{"Range", "bytes=20-", "If-Range", `"old"`}, status: 200, body: "0123456789"},
		{name: "if-range current malformed", headers: []string{"Range", "bytes=abc", "If-Range", info.ETag}, status: 416, contentRange: "bytes */10", code: CodeRangeNotSatisfiable},
		{name: "if-range current two ranges", headers: []string{"Range", "bytes=0-1,5-6", "If-Range", info.ETag}, status: 200, body: "0123456789"},
		{name: "if-range current other unit", headers: []string{"Range", "items=0-1", "If-Range", info.ETag}, status: 200, body: "0123456789"},
		{name: "head ignores range", method: http.MethodHead, headers: []string{"Range", "bytes=0-1"}, status: 200},
		{name: "head ignores malformed range", method: http.MethodHead, headers: []string{"Range", "bytes=abc"}, status: 200},
		{name: "head ignores unsatisfiable range", method: http.MethodHead, headers: []string{"Range", "bytes=20-"}, status: 200},
		{name: "head ignores two ranges", method: http.MethodHead, headers: []string{"Range", "bytes=0-1,5-6"}, status: 200},
		{name: "head ignores two headers", method: http.MethodHead, headers: []string{"Range", "bytes=0-1", "Range", "bytes=3-4"}, status: 200},
		{name: "precondition failed beats range", headers: []string{"Range", "bytes=abc", "If-Match", `"other"`}, status: 412, code: CodePreconditionFailed},
		{name: "not modified beats range", headers: []string{"Range", "bytes=abc", "If-None-Match", info.ETag}, status: 304},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, method := tt.key, tt.method
			if key == "" {
				key = "k"
			}
			if method == "" {
				method = http.MethodGet
			}
			r := e.do(method, "/blobs/"+key, nil, tt.headers...)
			if r.status != tt.status || r.errorCode() != tt.code {
				t.Fatalf("status %d code %q (%s), want %d %q", r.status, r.errorCode(), r.body, tt.status, tt.code)
			}
			if tt.code == "" && string(r.body) != tt.body {
				t.Errorf("body %q, want %q", r.body, tt.body)
			}
			if got := r.header.Get("Content-Range"); got != tt.contentRange {
				t.Errorf("Content-Range %q, want %q", got, tt.contentRange)
			}
			if tt.code == "" && tt.status != 304 {
				wantLen := len(tt.body)
				if method == http.MethodHead {
					wantLen = len(data)
				}
				if got := r.header.Get("Content-Length"); got != fmt.Sprint(wantLen) {
					t.Errorf("Content-Length %s, want %d", got, wantLen)
				}
			}
		})
	}
}

func TestGetStatus(t *testing.T) {
	tests := []struct {
		name    string
		path    string
		method  string
		getErr  error
		status  int
		code    string
		headers map[string]string
	}{
		{name: "absent", path: "/blobs/nope", status: 404, code: CodeNotFound},
		{name: "head absent", path: "/blobs/nope", method: http.MethodHead, status: 404},
		{name: "unavailable", path: "/blobs/k", getErr: store.ErrUnavailable, status: 503, code: CodeUnavailable, headers: map[string]string{"Retry-After": "1"}},
		{name: "corrupt", path: "/blobs/k", getErr: fmt.Errorf("chunk 3: %w", store.ErrCorruptData), status: 500, code: CodeCorrupt},
		{name: "read error", path: "/blobs/k", getErr: fmt.Errorf("chunk 3: %w: %w", store.ErrReadFailed, syscall.EIO), status: 500, code: CodeReadError},
		{name: "internal", path: "/blobs/k", getErr: errInjectedRead, status: 500, code: CodeInternal},
		{name: "bad consistency", path: "/blobs/k?consistency=strong", status: 400, code: CodeInvalidArgument},
		{name: "repeated consistency", path: "/blobs/k?consistency=stale&consistency=stale", status: 400, code: CodeInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t, Config{})
			e.put("k", []byte("data"))
			e.store.setFail("get", tt.getErr)
			method := tt.method
			if method == "" {
				method = http.MethodGet
			}
			r := e.do(method, tt.path, nil)
			if r.status != tt.status || r.errorCode() != tt.code {
				t.Fatalf("status %d code %q (%s), want %d %q", r.status, r.errorCode(), r.body, tt.status, tt.code)
			}
			for k, v := range tt.headers {
				if r.header.Get(k) != v {
					t.Errorf("%s = %q, want %q", k, r.header.Get(k), v)
				}
			}
		})
	}
}

func TestGetConsistency(t *testing.T) {
	e := newTestEnv(t, Config{})
	e.put("k", []byte("data"))
	for _, tt := range []struct {
		query string
		stale bool
	}{
		{"", false},
		{"?consistency=linearizable", false},
		{"?consistency=", false},
		{"?consistency=stale", true},
	} {
		r := e.do(http.MethodGet, "/blobs/k"+tt.query, nil)
		if r.status != http.StatusOK {
			t.Fatalf("%q: status %d", tt.query, r.status)
		}
		if got := e.store.readOptions(); got.Stale != tt.stale {
			t.Errorf("%q: Stale = %v, want %v", tt.query, got.Stale, tt.stale)
		}
	}
	for _, q := range []string{"?consistency=eventual", "?consistency=stale&consistency=stale", "?consistency=%zz", "?consistency=stale;x=1"} {
		if r := e.do(http.MethodGet, "/blobs/k"+q, nil); r.status != http.StatusBadRequest || r.errorCode() != CodeInvalidArgument {
			t.Errorf("%q: %d %q, want 400 InvalidArgument", q, r.status, r.errorCode())
		}
	}
}

// TestGetWriteRangeFailure: a store failure after the first body byte must
// reach the client as a broken response, never as a complete one; before the
// first byte it is an ordinary 500.
func TestGetWriteRangeFailure(t *testing.T) {
	data := bytes.Repeat([]byte("abcdefghij"), 1000)
	// Below about 6 KiB (net/http's 2 KiB response buffer plus its 4 KiB
	// connection buffer) the status line may never leave the server: the
	// client then sees a connection closed without a response, also an
	// error. Past it the client must get the headers and a short body.
	tests := []struct {
		name       string
		failAfter  int64
		headers    []string
		headersOut bool // the status line must reach the client
	}{
		{"mid body", 7000, nil, true},
		{"last byte", int64(len(data)) - 1, nil, true},
		{"mid range", 7000, []string{"Range", "bytes=1000-8999"}, true},
		{"early", 1500, []string{"Range", "bytes=1000-8999"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t, Config{})
			e.put("k", data)
			e.store.setFailWriteAfter(tt.failAfter)
			req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/blobs/k", nil)
			for i := 0; i+1 < len(tt.headers); i += 2 {
				req.Header.Set(tt.headers[i], tt.headers[i+1])
			}
			resp, err := e.srv.Client().Do(req)
			if err != nil {
				if tt.headersOut {
					t.Fatalf("no response at all: %v", err)
				}
				return
			}
			got, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err == nil {
				t.Fatalf("status %d with %d bytes read and no error: a truncated body looked complete", resp.StatusCode, len(got))
			}
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Logf("read error: %v", err)
			}
			if int64(len(got)) > tt.failAfter {
				t.Errorf("read %d bytes, store only produced %d", len(got), tt.failAfter)
			}
			e.waitServed("GET /blobs/k")
			if m := e.metrics(); !strings.Contains(m, `code="aborted",method="GET",route="/blobs/{key:.+}"} 1`) {
				t.Errorf("abort not counted:\n%s", m)
			}
		})
	}

	t.Run("before first byte", func(t *testing.T) {
		e := newTestEnv(t, Config{})
		e.put("k", data)
		e.store.setFailWriteAfter(0)
		r := e.do(http.MethodGet, "/blobs/k", nil)
		if r.readErr != nil || r.status != http.StatusInternalServerError || r.errorCode() != CodeCorrupt {
			t.Fatalf("status %d code %q err %v, want a clean 500 Corrupt", r.status, r.errorCode(), r.readErr)
		}
		if strings.Contains(string(r.body), "secret") || r.header.Get("ETag") != "" || r.header.Get("Content-Range") != "" {
			t.Errorf("500 leaks detail or success headers: %v %s", r.header, r.body)
		}
	})
}

// TestGetCorruptOrReadErrorChunk: a chunk the store could not serve (a *store.ChunkError:
// corrupt or unreadable) is answered, before the first body byte, with 500
// and the code that says which, a message free of the store's detail, and
// no success headers; after it, by cutting the response. The store has
// logged the chunk at Error already, so the API adds no Error line of its
// own (one failed chunk, one Error line); any other failure it logs.
func TestGetCorruptOrReadErrorChunk(t *testing.T) {
	data := bytes.Repeat([]byte("abcdefghij"), 1000)
	corrupt := &store.ChunkError{Key: "k", Version: 1, Chunk: 0, Offset: 4096,
		Err: fmt.Errorf("%w: checksum 01020304, want 05060708", store.ErrCorruptData)}
	unreadable := &store.ChunkError{Key: "k", Version: 1, Chunk: 0, Offset: 4096,
		Err: fmt.Errorf("%w: read /dev/secret-volume: %w", store.ErrReadFailed, syscall.EIO)}
	tests := []struct {
		name      string
		err       error
		failAfter int64
		status    int // 0: the response is cut after it started
		code      string
		apiErrors int // Error lines the API writes itself
	}{
		{"corrupt first chunk", corrupt, 0, 500, CodeCorrupt, 0},
		{"unreadable first chunk", unreadable, 0, 500, CodeReadError, 0},
		{"other failure first", errInjectedRead, 0, 500, CodeInternal, 1},
		{"corrupt later chunk", corrupt, 7000, 0, "", 0},
		{"unreadable later chunk", unreadable, 7000, 0, "", 0},
		{"other failure later", errInjectedRead, 7000, 0, "", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t, Config{})
			e.put("k", data)
			e.store.setFailWriteWith(tt.err)
			e.store.setFailWriteAfter(tt.failAfter)
			r := e.do(http.MethodGet, "/blobs/k", nil)
			e.waitServed("GET /blobs/k")
			if tt.status == 0 {
				if r.status != http.StatusOK || r.readErr == nil || int64(len(r.body)) > tt.failAfter {
					t.Fatalf("status %d, %d bytes, read error %v; want 200 cut at or before %d bytes", r.status, len(r.body), r.readErr, tt.failAfter)
				}
			} else {
				if r.readErr != nil || r.status != tt.status || r.errorCode() != tt.code {
					t.Fatalf("status %d code %q (%s) err %v; want %d %s", r.status, r.errorCode(), r.body, r.readErr, tt.status, tt.code)
				}
				if strings.Contains(string(r.body), "secret") || strings.Contains(string(r.body), "4096") ||
					r.header.Get("ETag") != "" || r.header.Get("Content-Range") != "" || r.header.Get("Content-Type") != "application/json" {
					t.Errorf("error response leaks detail or success headers: %v %s", r.header, r.body)
				}
			}
			if got := strings.Count(e.logs.String(), "level=ERROR"); got != tt.apiErrors {
				t.Errorf("%d Error lines from the API, want %d:\n%s", got, tt.apiErrors, e.logs.String())
			}
		})
	}
}

// TestGetStartsOverWhenBlobChanged: a read whose version is deleted or
// replaced before the first byte is sent starts over and answers from the
// key's current state; one that keeps losing the race gets 503 with
// Retry-After after readAttempts tries, never a 500 or a wrong body.
func TestGetStartsOverWhenBlobChanged(t *testing.T) {
	tests := []struct {
		name     string
		change   func(e *testEnv) // run once, by the first read
		always   bool             // every read loses the race
		status   int
		body     string
		attempts int // WriteRange calls (a retry that finds no blob reads nothing)
	}{
		{"replaced", func(e *testEnv) {
			e.store.Put(context.Background(), store.PutRequest{Key: "k", Size: 9, Body: strings.NewReader("new bytes")})
		}, false, http.StatusOK, "new bytes", 2},
		{"deleted", func(e *testEnv) { e.store.Delete(context.Background(), "k", store.Condition{}) }, false, http.StatusNotFound, "", 1},
		{"keeps changing", nil, true, http.StatusServiceUnavailable, "", readAttempts},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t, Config{})
			e.put("k", []byte("old bytes"))
			calls := 0
			e.store.setBeforeRead(func(key string) error {
				calls++
				if calls == 1 && tt.change != nil {
					tt.change(e)
				}
				if calls == 1 || tt.always {
					return fmt.Errorf("%w: %q", store.ErrBlobChanged, key)
				}
				return nil
			})
			r := e.do(http.MethodGet, "/blobs/k", nil)
			if r.status != tt.status || (tt.status == http.StatusOK && string(r.body) != tt.body) {
				t.Fatalf("GET: %d %q; want %d %q", r.status, r.body, tt.status, tt.body)
			}
			if tt.status == http.StatusServiceUnavailable && (r.header.Get("Retry-After") == "" || r.errorCode() != CodeUnavailable) {
				t.Fatalf("503 without Retry-After or with code %q", r.errorCode())
			}
			if calls != tt.attempts {
				t.Fatalf("%d reads; want %d", calls, tt.attempts)
			}
		})
	}
}
