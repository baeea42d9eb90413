package api

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// asyncPut sends a PUT from another goroutine; the result arrives on the
// returned channel (the error is not fatal there: t.Fatal must not be
// called off the test goroutine).
func (e *testEnv) asyncPut(key string, data []byte) <-chan result {
	ch := make(chan result, 1)
	go func() {
		req, err := http.NewRequest(http.MethodPut, e.srv.URL+"/blobs/"+key, bytes.NewReader(data))
		if err != nil {
			ch <- result{readErr: err}
			return
		}
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			ch <- result{readErr: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		ch <- result{status: resp.StatusCode, header: resp.Header, body: b, readErr: err}
	}()
	return ch
}

func waitResult(t *testing.T, ch <-chan result, what string) result {
	t.Helper()
	select {
	case r := <-ch:
		if r.readErr != nil {
			t.Fatalf("%s: %v", what, r.readErr)
		}
		return r
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no answer", what)
	}
	return result{}
}

// TestPutConcurrencyLimit fills the upload limiter with uploads held inside
// the store, then checks that one more PUT is refused at once with 503,
// Retry-After and TooManyUploads, before the store (or its body) is
// touched, and that the slots come back when the uploads finish.
func TestPutConcurrencyLimit(t *testing.T) {
	const limit = 2
	e := newTestEnv(t, Config{MaxConcurrentUploads: limit})
	gate := &putGate{entered: make(chan string, limit+2), release: make(chan struct{})}
	e.store.gate = gate
	released := false
	defer func() {
		if !released {
			close(gate.release)
		}
	}()

	var held []<-chan result
	for i := range limit {
		held = append(held, e.asyncPut(fmt.Sprintf("held/%d", i), []byte("held")))
	}
	for range limit {
		select {
		case <-gate.entered:
		case <-time.After(30 * time.Second):
			t.Fatal("the held uploads never reached the store")
		}
	}
	if m := e.metrics(); !strings.Contains(m, "blobnode_http_uploads_in_flight 2\n") {
		t.Errorf("in-flight gauge is not 2:\n%s", grepLines(m, "uploads"))
	}

	// A large declared body: the refusal must not wait for it.
	r := e.do(http.MethodPut, "/blobs/refused", strings.NewReader(strings.Repeat("x", 1<<20)))
	if r.status != http.StatusServiceUnavailable || r.errorCode() != CodeTooManyUploads {
		t.Fatalf("PUT over the limit: %d %s, want 503 %s", r.status, r.body, CodeTooManyUploads)
	}
	if got := r.header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q, want 1", got)
	}
	if e.store.puts() != limit {
		t.Errorf("store saw %d puts, want %d: the refused one reached it", e.store.puts(), limit)
	}
	// Other routes are not limited.
	if r := e.do(http.MethodGet, "/blobs/nothing", nil); r.status != http.StatusNotFound {
		t.Errorf("GET while uploads are full: %d", r.status)
	}
	if m := e.metrics(); !strings.Contains(m, "blobnode_http_uploads_rejected_total 1\n") {
		t.Errorf("rejection not counted:\n%s", grepLines(m, "uploads"))
	}

	close(gate.release)
	released = true
	for i, ch := range held {
		if r := waitResult(t, ch, fmt.Sprintf("held upload %d", i)); r.status != http.StatusCreated {
			t.Fatalf("held upload %d: %d %s", i, r.status, r.body)
		}
	}
	// Slots are back: limit more uploads fit again, one after the other.
	for i := range limit + 1 {
		go func() { <-gate.entered }()
		e.put(fmt.Sprintf("after/%d", i), []byte("x"))
	}
	if m := e.metrics(); !strings.Contains(m, "blobnode_http_uploads_in_flight 0\n") ||
		!strings.Contains(m, "blobnode_http_uploads_rejected_total 1\n") {
		t.Errorf("after the uploads:\n%s", grepLines(m, "uploads"))
	}
	if _, ok := e.store.info("refused"); ok {
		t.Error("the refused upload was stored")
	}
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestPutBodyStall: a client that stops sending mid-body is cut after
// BodyReadTimeout of silence, told IncompleteBody, and nothing is stored;
// the connection is closed.
func TestPutBodyStall(t *testing.T) {
	e := newTestEnv(t, Config{BodyReadTimeout: 200 * time.Millisecond})
	conn := dialRaw(t, e)
	fmt.Fprintf(conn, "PUT /blobs/stalled HTTP/1.1\r\nHost: test\r\nContent-Length: 100000\r\n\r\n%s", strings.Repeat("a", 40000))
	// The client stays connected and silent; the server must answer.
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("no response to a stalled upload: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || (result{body: b}).errorCode() != CodeIncompleteBody {
		t.Fatalf("stalled upload: %d %s, want 400 IncompleteBody", resp.StatusCode, b)
	}
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Errorf("connection still open after a stalled upload: %v", err)
	}
	if s := e.store.snapshot(); len(s) != 0 {
		t.Fatalf("stalled upload stored: %v", s)
	}
}

// TestPutSlowSteadyUpload: the per-read timeout does not cap the length of
// an upload that keeps making progress: pieces come at a quarter of the
// timeout, for about three timeouts in all.
func TestPutSlowSteadyUpload(t *testing.T) {
	const timeout = 200 * time.Millisecond
	e := newTestEnv(t, Config{BodyReadTimeout: timeout, WriteTimeout: timeout})
	pr, pw := io.Pipe()
	const pieces = 12
	done := make(chan struct{})
	defer close(done)
	go func() {
		tick := time.NewTicker(timeout / 4)
		defer tick.Stop()
		for i := range pieces {
			select {
			case <-tick.C:
			case <-done:
				pw.CloseWithError(errors.New("test ended"))
				return
			}
			if _, err := fmt.Fprintf(pw, "piece %02d;", i); err != nil {
				return
			}
		}
		pw.Close()
	}()
	start := time.Now()
	r := e.do(http.MethodPut, "/blobs/slow", pr)
	if r.status != http.StatusCreated {
		t.Fatalf("slow upload: %d %s", r.status, r.body)
	}
	if took := time.Since(start); took < 2*timeout {
		t.Fatalf("the upload took %v, not longer than the timeout: the test proves nothing", took)
	}
	got := e.store.snapshot()["slow"]
	if len(got) != pieces*len("piece 00;") {
		t.Fatalf("stored %q", got)
	}
	// The connection is reusable afterwards (the deadlines were reset).
	if r := e.do(http.MethodGet, "/blobs/slow", nil); r.status != http.StatusOK || !bytes.Equal(r.body, got) {
		t.Fatalf("GET after the slow upload: %d", r.status)
	}
}

// TestGetWriteStall: a reader that takes nothing has its response aborted
// after WriteTimeout; the handler returns (its goroutine and the store
// object are released) and the client sees a truncated body.
func TestGetWriteStall(t *testing.T) {
	e := newTestEnv(t, Config{WriteTimeout: 200 * time.Millisecond})
	const size = 16 << 20 // more than loopback socket buffers hold
	data := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	e.put("big", data)
	conn := dialRaw(t, e)
	fmt.Fprintf(conn, "GET /blobs/big HTTP/1.1\r\nHost: test\r\n\r\n")
	// Read nothing until the handler has given up.
	e.waitServed("GET /blobs/big")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	n, err := io.Copy(io.Discard, resp.Body)
	if err == nil || n >= size {
		t.Fatalf("read %d of %d bytes, err %v: want a truncated body", n, size, err)
	}
	if m := e.metrics(); !strings.Contains(m, `blobnode_http_requests_total{code="aborted",method="GET",route="/blobs/{key:.+}"} 1`) {
		t.Errorf("stalled download not counted as aborted:\n%s", grepLines(m, "requests_total"))
	}
}

// TestUnreadBodyClosesConnection: a response to a request whose body was
// not read (refused early) closes the connection rather than drain a body
// that may never come.
func TestUnreadBodyClosesConnection(t *testing.T) {
	e := newTestEnv(t, Config{BodyReadTimeout: time.Minute})
	for _, req := range []string{
		// Bad key: refused before the body; the client never sends it.
		"PUT /blobs/a//b HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n",
		// A body on a route that reads none.
		"GET /blobs/x HTTP/1.1\r\nHost: test\r\nContent-Length: 100\r\n\r\n",
		"DELETE /blobs/x HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n",
	} {
		conn := dialRaw(t, e)
		// Far less than the body timeout: the close must not wait for it.
		if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
		if _, err := io.WriteString(conn, req); err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%q: no response: %v", req, err)
		}
		io.Copy(io.Discard, resp.Body)
		if !resp.Close {
			t.Errorf("%q: %d without Connection: close", req, resp.StatusCode)
		}
		if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
			t.Errorf("%q: connection not closed: %v", req, err)
		}
	}
}

// TestBodyTimeoutNotSupported: behind a ResponseWriter that cannot set
// deadlines (a recorder), the timeouts are no-ops, not failures.
func TestBodyTimeoutNotSupported(t *testing.T) {
	h := NewHandler(newFakeStore(), Config{BodyReadTimeout: time.Millisecond, WriteTimeout: time.Millisecond})
	req, err := http.NewRequest(http.MethodPut, "/blobs/k", strings.NewReader("data"))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Length", "4")
	rec := &plainRecorder{header: http.Header{}}
	h.ServeHTTP(rec, req)
	if rec.status != http.StatusCreated {
		t.Fatalf("status %d %s", rec.status, rec.body.String())
	}
}

// plainRecorder is a ResponseWriter with no deadline support.
type plainRecorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (p *plainRecorder) Header() http.Header { return p.header }
func (p *plainRecorder) WriteHeader(s int) {
	if p.status == 0 {
		p.status = s
	}
}
func (p *plainRecorder) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return p.body.Write(b)
}
