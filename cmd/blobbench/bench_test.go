package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

func testConfig(addr string) Config {
	return Config{
		Addr:        addr,
		N:           200,
		Size:        3000,
		Concurrency: 8,
		Ops:         []Op{OpPut, OpGet, OpDelete},
		Prefix:      "t/run 1/", // a space, to exercise escaping
		Timeout:     10 * time.Second,
		Verify:      true,
	}
}

// runBench runs cfg and returns its results keyed by position and what it
// printed to out and errOut.
func runBench(t *testing.T, cfg Config) ([]Result, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	res, err := Run(context.Background(), cfg, &out, &errOut)
	if err != nil {
		t.Fatalf("Run: %v\nstdout:\n%s\nstderr:\n%s", err, &out, &errOut)
	}
	if len(res) != len(cfg.Ops) {
		t.Fatalf("got %d results, want %d", len(res), len(cfg.Ops))
	}
	return res, out.String(), errOut.String()
}

func checkResult(t *testing.T, r Result, op Op, ops, errs, mismatches int) {
	t.Helper()
	if r.Phase != op || r.Ops != ops || r.Errors != errs || r.Mismatches != mismatches {
		t.Errorf("%s: got phase %s ops %d errors %d mismatches %d, want %s %d %d %d",
			op, r.Phase, r.Ops, r.Errors, r.Mismatches, op, ops, errs, mismatches)
	}
	if ok := ops - errs; len(r.latencies) != ok {
		t.Errorf("%s: %d latencies recorded, want %d", op, len(r.latencies), ok)
	}
}

func TestAllPhases(t *testing.T) {
	for _, size := range []int64{0, 1, 7, 3000, 1<<20 + 3} {
		t.Run(formatSize(size), func(t *testing.T) {
			s := &memServer{}
			srv := newMemServer(t, s)
			cfg := testConfig(srv.URL)
			if size > 1<<16 {
				cfg.N = 20
			}
			cfg.Size = size
			res, out, errOut := runBench(t, cfg)
			checkResult(t, res[0], OpPut, cfg.N, 0, 0)
			checkResult(t, res[1], OpGet, cfg.N, 0, 0)
			checkResult(t, res[2], OpDelete, cfg.N, 0, 0)
			if want := int64(cfg.N) * size; res[0].Bytes != want || res[1].Bytes != want || res[2].Bytes != 0 {
				t.Errorf("bytes put %d get %d delete %d, want %d %d 0", res[0].Bytes, res[1].Bytes, res[2].Bytes, want, want)
			}
			if n := s.len(); n != 0 {
				t.Errorf("%d blobs left after delete", n)
			}
			if errOut != "" {
				t.Errorf("unexpected error output:\n%s", errOut)
			}
			for _, p := range []string{"put", "get", "delete"} {
				if !strings.Contains(out, "\n"+p+" ") {
					t.Errorf("table has no %s row:\n%s", p, out)
				}
			}
		})
	}
}

// TestPutWritesPattern checks the stored bytes themselves, independently of
// the GET phase that would regenerate them the same way.
func TestPutWritesPattern(t *testing.T) {
	s := &memServer{}
	srv := newMemServer(t, s)
	cfg := testConfig(srv.URL)
	cfg.N, cfg.Ops = 3, []Op{OpPut}
	runBench(t, cfg)
	var prev []byte
	for i := range cfg.N {
		key := cfg.Prefix + indexString(i)
		got, ok := s.get(key)
		if !ok {
			t.Fatalf("key %q not stored", key)
		}
		want, _ := io.ReadAll(newContentReader(key, cfg.Size))
		if !bytes.Equal(got, want) {
			t.Errorf("key %q: stored bytes differ from its pattern", key)
		}
		if bytes.Equal(got, prev) {
			t.Errorf("key %q: same content as the previous key", key)
		}
		prev = got
	}
}

func TestChunkedGetVerified(t *testing.T) {
	s := &memServer{chunked: true}
	srv := newMemServer(t, s)
	cfg := testConfig(srv.URL)
	cfg.Size = 100 << 10
	cfg.N = 20
	res, _, _ := runBench(t, cfg)
	checkResult(t, res[1], OpGet, cfg.N, 0, 0)

	// A chunked body one byte short has no Content-Length to betray it.
	s.mangle = func(key string, b []byte) []byte { return b[:len(b)-1] }
	cfg.Ops = []Op{OpPut, OpGet}
	res, _, _ = runBench(t, cfg)
	checkResult(t, res[1], OpGet, cfg.N, cfg.N, cfg.N)
}

func TestCorruptGetDetected(t *testing.T) {
	const bad = 3
	cases := []struct {
		name   string
		mangle func([]byte) []byte
	}{
		{"first byte", func(b []byte) []byte { b[0] ^= 1; return b }},
		{"middle byte", func(b []byte) []byte { b[len(b)/2] ^= 0x80; return b }},
		{"last byte", func(b []byte) []byte { b[len(b)-1]++; return b }},
		{"truncated", func(b []byte) []byte { return b[:len(b)-1] }},
		{"extra byte", func(b []byte) []byte { return append(b, 0) }},
		{"empty", func(b []byte) []byte { return nil }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := &memServer{}
			srv := newMemServer(t, s)
			cfg := testConfig(srv.URL)
			badKey := cfg.Prefix + indexString(bad)
			s.mangle = func(key string, b []byte) []byte {
				if key == badKey {
					return tc.mangle(b)
				}
				return b
			}
			res, _, errOut := runBench(t, cfg)
			checkResult(t, res[0], OpPut, cfg.N, 0, 0)
			checkResult(t, res[1], OpGet, cfg.N, 1, 1)
			checkResult(t, res[2], OpDelete, cfg.N, 0, 0)
			if !res[1].Failed() {
				t.Error("GET phase not marked failed")
			}
			if !strings.Contains(errOut, badKey) || !strings.Contains(errOut, "verification failed") {
				t.Errorf("error output does not name the bad key and the failure:\n%s", errOut)
			}

			// Without -verify the same answers are not checked.
			cfg.Verify = false
			res, _, _ = runBench(t, cfg)
			checkResult(t, res[1], OpGet, cfg.N, 0, 0)
		})
	}
}

func TestServerErrorsCounted(t *testing.T) {
	s := &memServer{}
	srv := newMemServer(t, s)
	cfg := testConfig(srv.URL)
	failKey := cfg.Prefix + indexString(5)
	s.fail = func(method, key string) bool { return method == http.MethodPut && key == failKey }
	res, _, errOut := runBench(t, cfg)
	checkResult(t, res[0], OpPut, cfg.N, 1, 0)
	// The blob that was never stored is then a 404 for GET and DELETE.
	checkResult(t, res[1], OpGet, cfg.N, 1, 0)
	checkResult(t, res[2], OpDelete, cfg.N, 1, 0)
	if !strings.Contains(errOut, "status 500") || !strings.Contains(errOut, "injected failure") {
		t.Errorf("error output does not show the 500:\n%s", errOut)
	}
	if !strings.Contains(errOut, "status 404") {
		t.Errorf("error output does not show the 404s:\n%s", errOut)
	}
}

func TestErrorOutputBounded(t *testing.T) {
	s := &memServer{fail: func(string, string) bool { return true }}
	srv := newMemServer(t, s)
	cfg := testConfig(srv.URL)
	cfg.Ops = []Op{OpPut}
	res, _, errOut := runBench(t, cfg)
	checkResult(t, res[0], OpPut, cfg.N, cfg.N, 0)
	if n := strings.Count(errOut, "\n"); n != maxShownErrors {
		t.Errorf("%d error lines printed, want %d", n, maxShownErrors)
	}
}

func TestUnreachableCounted(t *testing.T) {
	s := &memServer{}
	srv := newMemServer(t, s)
	srv.Close()
	cfg := testConfig(srv.URL)
	cfg.N, cfg.Ops = 10, []Op{OpPut}
	res, _, _ := runBench(t, cfg)
	checkResult(t, res[0], OpPut, cfg.N, cfg.N, 0)
}

func TestToken(t *testing.T) {
	s := &memServer{token: "sesame"}
	srv := newMemServer(t, s)
	cfg := testConfig(srv.URL)
	cfg.N = 10
	res, _, _ := runBench(t, cfg)
	checkResult(t, res[0], OpPut, cfg.N, cfg.N, 0) // 401 without the token

	cfg.Token = "sesame"
	res, _, _ = runBench(t, cfg)
	for i, op := range cfg.Ops {
		checkResult(t, res[i], op, cfg.N, 0, 0)
	}
}

// TestDurationCap runs phases with far more blobs than fit in the cap: each
// phase must stop early, and GET and DELETE must touch only what PUT issued.
func TestDurationCap(t *testing.T) {
	s := &memServer{}
	srv := newMemServer(t, s)
	cfg := testConfig(srv.URL)
	cfg.N = 1_000_000
	cfg.Size = 16
	cfg.Duration = 50 * time.Millisecond
	start := time.Now()
	res, _, errOut := runBench(t, cfg)
	if el := time.Since(start); el > 20*time.Second {
		t.Errorf("run took %v with a 50ms cap per phase", el)
	}
	put := res[0]
	if put.Ops == 0 || put.Ops >= cfg.N || put.Errors != 0 {
		t.Fatalf("put: ops %d errors %d, want 0 < ops < %d and no errors\n%s", put.Ops, put.Errors, cfg.N, errOut)
	}
	for _, r := range res[1:] {
		if r.Ops == 0 || r.Ops > put.Ops || r.Errors != 0 {
			t.Errorf("%s: ops %d errors %d, want 0 < ops <= %d and no errors", r.Phase, r.Ops, r.Errors, put.Ops)
		}
	}
	if got, want := s.len(), put.Ops-res[2].Ops; got != want {
		t.Errorf("%d blobs left, want %d", got, want)
	}
}

// TestCancel checks that a cancelled context ends Run promptly, even with a
// server that never answers, and reports the cancellation.
func TestCancel(t *testing.T) {
	release := make(chan struct{})
	arrived := make(chan struct{}, 1)
	s := &memServer{fail: func(string, string) bool {
		select {
		case arrived <- struct{}{}:
		default:
		}
		<-release
		return true
	}}
	srv := newMemServer(t, s)
	defer close(release) // before srv.Close, which waits for handlers
	cfg := testConfig(srv.URL)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := Run(ctx, cfg, io.Discard, io.Discard)
		done <- err
	}()
	<-arrived // a request is in flight
	cancel()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
}

func TestJSONOutput(t *testing.T) {
	s := &memServer{}
	srv := newMemServer(t, s)
	cfg := testConfig(srv.URL)
	cfg.JSON = true
	_, out, _ := runBench(t, cfg)
	sc := bufio.NewScanner(strings.NewReader(out))
	var phases []string
	for sc.Scan() {
		var r struct {
			Phase  string  `json:"phase"`
			Ops    int     `json:"ops"`
			Errors int     `json:"errors"`
			P99    float64 `json:"p99_ms"`
			Rate   float64 `json:"ops_per_s"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		if r.Ops != cfg.N || r.Errors != 0 || r.P99 <= 0 || r.Rate <= 0 {
			t.Errorf("line %q: implausible figures", sc.Text())
		}
		phases = append(phases, r.Phase)
	}
	if got := fmt.Sprint(phases); got != "[put get delete]" {
		t.Errorf("phases %s, want [put get delete]", got)
	}
}

func TestConfigRefused(t *testing.T) {
	base := testConfig("http://127.0.0.1:1")
	for name, mod := range map[string]func(*Config){
		"bad addr":     func(c *Config) { c.Addr = "127.0.0.1:8080" },
		"zero n":       func(c *Config) { c.N = 0 },
		"zero c":       func(c *Config) { c.Concurrency = 0 },
		"no ops":       func(c *Config) { c.Ops = nil },
		"no prefix":    func(c *Config) { c.Prefix = "" },
		"zero timeout": func(c *Config) { c.Timeout = 0 },
		"neg duration": func(c *Config) { c.Duration = -time.Second },
	} {
		cfg := base
		mod(&cfg)
		if _, err := Run(context.Background(), cfg, io.Discard, io.Discard); err == nil {
			t.Errorf("%s: Run accepted the config", name)
		}
	}
}

func TestPercentile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i))
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 50}, {0.9, 90}, {0.99, 99}, {1, 100}} {
		if got := percentile(d, c.q); got != c.want {
			t.Errorf("percentile(1..100, %v) = %v, want %v", c.q, got, c.want)
		}
	}
	if got := percentile(d[:1], 0.5); got != 1 {
		t.Errorf("percentile of one = %v, want 1", got)
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile of none = %v, want 0", got)
	}
}
