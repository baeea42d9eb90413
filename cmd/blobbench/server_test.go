package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// memServer is a map-backed twin of the blob API's PUT, GET and DELETE,
// with hooks that make chosen requests fail or answer wrongly.
type memServer struct {
	mu    sync.Mutex
	blobs map[string][]byte // guarded by mu

	// fail, if set, makes a request answer 500 when it returns true.
	fail func(method, key string) bool
	// mangle, if set, rewrites the body a GET sends (its Content-Length
	// follows the rewritten body).
	mangle func(key string, body []byte) []byte
	// token, if set, is the bearer token every request must carry.
	token string
	// chunked makes GET answers omit Content-Length.
	chunked bool
}

func newMemServer(t testing.TB, s *memServer) *httptest.Server {
	s.blobs = map[string][]byte{}
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return srv
}

func (s *memServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key, ok := strings.CutPrefix(r.URL.Path, "/blobs/")
	if !ok || key == "" {
		http.NotFound(w, r)
		return
	}
	if s.token != "" && r.Header.Get("Authorization") != "Bearer "+s.token {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	if s.fail != nil && s.fail(r.Method, key) {
		http.Error(w, "injected failure", http.StatusInternalServerError)
		return
	}
	switch r.Method {
	case http.MethodPut:
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		s.blobs[key] = b
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"key":"`+key+`","size":`+strconv.Itoa(len(b))+`,"etag":"x","version":1}`)
	case http.MethodGet:
		s.mu.Lock()
		b, ok := s.blobs[key]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		if s.mangle != nil {
			b = s.mangle(key, append([]byte(nil), b...))
		}
		if s.chunked {
			w.(http.Flusher).Flush() // commits the headers without a length
		} else {
			w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		}
		w.Write(b)
	case http.MethodDelete:
		s.mu.Lock()
		_, ok := s.blobs[key]
		delete(s.blobs, key)
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	default:
		w.Header().Set("Allow", "PUT, GET, DELETE")
		w.WriteHeader(http.StatusMethodNotAllowed)
	}
}

func (s *memServer) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.blobs)
}

func (s *memServer) get(key string) ([]byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[key]
	return b, ok
}
