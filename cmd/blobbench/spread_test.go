package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// spreadServers starts n servers in front of one shared memServer (the
// nodes of a group serve the same blobs) and returns their URLs and a
// function that reports how many requests of each method each received,
// and in what order (for one client).
func spreadServers(t *testing.T, n int) (urls []string, counts func() []map[string]int, order func() []int) {
	t.Helper()
	s := &memServer{}
	newMemServer(t, s) // initializes s; its own listener goes unused
	var mu sync.Mutex
	perServer := make([]map[string]int, n) // guarded by mu
	var seq []int                          // server of each request, guarded by mu
	for i := range n {
		perServer[i] = map[string]int{}
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			perServer[i][r.Method]++
			seq = append(seq, i)
			mu.Unlock()
			s.ServeHTTP(w, r)
		}))
		t.Cleanup(srv.Close)
		urls = append(urls, srv.URL)
	}
	counts = func() []map[string]int {
		mu.Lock()
		defer mu.Unlock()
		out := make([]map[string]int, n)
		for i, m := range perServer {
			out[i] = map[string]int{}
			for k, v := range m {
				out[i][k] = v
			}
		}
		return out
	}
	order = func() []int {
		mu.Lock()
		defer mu.Unlock()
		return append([]int(nil), seq...)
	}
	return urls, counts, order
}

// TestSpreadOneClient: a lone client sends its requests to the addresses
// in turn, so every address gets exactly its share of every phase.
func TestSpreadOneClient(t *testing.T) {
	urls, counts, order := spreadServers(t, 3)
	cfg := testConfig(strings.Join(urls, ","))
	cfg.N, cfg.Concurrency = 30, 1
	res, out, errOut := runBench(t, cfg)
	for i, op := range cfg.Ops {
		checkResult(t, res[i], op, cfg.N, 0, 0)
	}
	if errOut != "" {
		t.Errorf("unexpected error output:\n%s", errOut)
	}
	if !strings.Contains(out, "addr="+strings.Join(urls, ",")+" ") {
		t.Errorf("table header does not name every address:\n%s", out)
	}
	for i, m := range counts() {
		for _, method := range []string{http.MethodPut, http.MethodGet, http.MethodDelete} {
			if m[method] != cfg.N/3 {
				t.Errorf("server %d got %d %s requests, want %d", i, m[method], method, cfg.N/3)
			}
		}
	}
	for k, got := range order() {
		if want := k % 3; got != want { // 30 per phase: each phase restarts at 0
			t.Fatalf("request %d went to server %d, want %d (round-robin)", k, got, want)
		}
	}
}

// TestSpreadManyClients: with several clients every address gets close to
// its share (each client's own share differs by at most one request), and
// a GET finds a blob whichever address stored it.
func TestSpreadManyClients(t *testing.T) {
	urls, counts, _ := spreadServers(t, 3)
	cfg := testConfig(strings.Join(urls, ", ")) // blanks around commas are allowed
	cfg.N, cfg.Concurrency = 600, 8
	res, _, errOut := runBench(t, cfg)
	for i, op := range cfg.Ops {
		checkResult(t, res[i], op, cfg.N, 0, 0)
	}
	if errOut != "" {
		t.Errorf("unexpected error output:\n%s", errOut)
	}
	for i, m := range counts() {
		for _, method := range []string{http.MethodPut, http.MethodGet, http.MethodDelete} {
			if got, want := m[method], cfg.N/3; got < want-cfg.Concurrency || got > want+cfg.Concurrency {
				t.Errorf("server %d got %d %s requests, want %d ± %d", i, got, method, want, cfg.Concurrency)
			}
		}
	}
}

func TestSpreadAddrRefused(t *testing.T) {
	for _, addr := range []string{
		"http://127.0.0.1:1,", "http://127.0.0.1:1,,http://127.0.0.1:2",
		"http://127.0.0.1:1,127.0.0.1:2", ",http://127.0.0.1:1",
	} {
		cfg := testConfig(addr)
		if _, err := Run(t.Context(), cfg, nil, nil); err == nil {
			t.Errorf("addr %q accepted", addr)
		}
	}
}
