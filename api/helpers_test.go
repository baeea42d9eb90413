package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// testEnv is one API handler over a fakeStore, served by httptest.
type testEnv struct {
	t      *testing.T
	store  *fakeStore
	srv    *httptest.Server
	reg    *prometheus.Registry
	logs   *syncBuffer
	served chan string // "METHOD escaped-path" of every request whose handler returned
}

// newTestEnv starts a server; cfg.Registerer and cfg.Logger default to a
// fresh registry and a captured Debug log.
func newTestEnv(t *testing.T, cfg Config) *testEnv {
	t.Helper()
	e := &testEnv{t: t, store: newFakeStore(), logs: &syncBuffer{}, served: make(chan string, 1024)}
	if cfg.Registerer == nil {
		e.reg = prometheus.NewRegistry()
		cfg.Registerer = e.reg
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h := NewHandler(e.store, cfg)
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			select {
			case e.served <- r.Method + " " + r.URL.EscapedPath():
			default:
			}
		}()
		h.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		e.srv.Close() // waits for outstanding requests
		if n := e.store.openObjects(); n != 0 {
			t.Errorf("%d store objects were never closed", n)
		}
	})
	return e
}

// result is a response with its body read.
type result struct {
	status  int
	header  http.Header
	body    []byte
	readErr error
}

// errorCode is the code of a JSON error body, or "" if there is none.
func (r result) errorCode() string {
	var eb errorBody
	if json.Unmarshal(r.body, &eb) != nil {
		return ""
	}
	return eb.Error.Code
}

func (r result) errorMessage() string {
	var eb errorBody
	_ = json.Unmarshal(r.body, &eb)
	return eb.Error.Message
}

// do sends one request. headers are name, value pairs (a name may repeat).
// body == nil sends no body; a body that is not a *bytes.Reader or
// *strings.Reader is sent chunked.
func (e *testEnv) do(method, path string, body io.Reader, headers ...string) result {
	e.t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, body)
	if err != nil {
		e.t.Fatalf("new request %s %s: %v", method, path, err)
	}
	switch body.(type) {
	case nil, *bytes.Reader, *strings.Reader:
	default:
		req.ContentLength = -1
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, readErr := io.ReadAll(resp.Body)
	return result{status: resp.StatusCode, header: resp.Header, body: b, readErr: readErr}
}

// put stores data under key and fails the test unless it is created.
func (e *testEnv) put(key string, data []byte, headers ...string) result {
	e.t.Helper()
	r := e.do(http.MethodPut, "/blobs/"+key, bytes.NewReader(data), headers...)
	if r.status != http.StatusCreated {
		e.t.Fatalf("PUT %s: status %d, body %s", key, r.status, r.body)
	}
	return r
}

// raw sends bytes over a fresh TCP connection, half-closes it and parses
// the response.
func (e *testEnv) raw(request string) *http.Response {
	e.t.Helper()
	return e.rawRequest(request, true)
}

// rawComplete is raw for a complete request: the client keeps its side
// open until the answer (a half-close after the request reads as a client
// that went away, and may cancel the request before it is answered).
func (e *testEnv) rawComplete(request string) *http.Response {
	e.t.Helper()
	return e.rawRequest(request, false)
}

func (e *testEnv) rawRequest(request string, halfClose bool) *http.Response {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		e.t.Fatal(err)
	}
	if _, err := io.WriteString(conn, request); err != nil {
		e.t.Fatal(err)
	}
	if halfClose {
		if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
			e.t.Fatal(err)
		}
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		e.t.Fatalf("read response: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("read response body: %v", err)
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	return resp
}

// waitServed waits until the handler for a request ("PUT /blobs/k") has
// returned.
func (e *testEnv) waitServed(request string) {
	e.t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		select {
		case p := <-e.served:
			if p == request {
				return
			}
		case <-deadline:
			e.t.Fatalf("handler for %s did not return", request)
		}
	}
}

// metrics scrapes /metrics.
func (e *testEnv) metrics() string {
	e.t.Helper()
	r := e.do(http.MethodGet, "/metrics", nil)
	if r.status != http.StatusOK {
		e.t.Fatalf("GET /metrics: %d %s", r.status, r.body)
	}
	return string(r.body)
}

// syncBuffer is a bytes.Buffer safe for the server's goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// dialRaw opens a TCP connection to the test server, closed at cleanup.
func dialRaw(t *testing.T, e *testEnv) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", e.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if err := conn.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	return conn
}
