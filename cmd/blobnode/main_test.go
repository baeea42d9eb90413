package main

import (
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1", 1, true},
		{"4096", 4096, true},
		{"1KiB", 1 << 10, true},
		{"64MiB", 64 << 20, true},
		{"1GiB", 1 << 30, true},
		{"2G", 2 << 30, true},
		{"3TB", 3 << 40, true},
		{"0", 0, false},
		{"-1GiB", 0, false},
		{"1.5GiB", 0, false},
		{"GiB", 0, false},
		{"12abc", 0, false},
		{"", 0, false},
		{"99999999999TiB", 0, false},
	} {
		got, err := parseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d, ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestParseConfigFlagsAndEnvironment(t *testing.T) {
	env := map[string]string{
		"BLOBNODE_DATA_DIR":        "/env/data",
		"BLOBNODE_HTTP_ADDR":       "127.0.0.1:9999",
		"BLOBNODE_VOLUME_SIZE":     "2GiB",
		"BLOBNODE_RESERVATION_TTL": "5m",
	}
	c, err := parseConfig([]string{"-http-addr", "127.0.0.1:1234", "-max-blob-size", "1MiB"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if c.dataDir != "/env/data" || c.volumeSize != 2<<30 || c.reservationTTL != 5*time.Minute {
		t.Errorf("environment not applied: %+v", c)
	}
	if c.httpAddr != "127.0.0.1:1234" || c.maxBlobSize != 1<<20 {
		t.Errorf("a flag on the command line must win over the environment: %+v", c)
	}

	d, err := parseConfig(nil, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if d.dataDir != "./data" || d.httpAddr != "127.0.0.1:8080" || d.volumeSize != 1<<30 {
		t.Errorf("defaults: %+v", d)
	}

	for _, bad := range [][]string{{"-volume-size", "huge"}, {"-log-level", "loud"}, {"extra"}} {
		if _, err := parseConfig(bad, func(string) string { return "" }); err == nil {
			t.Errorf("parseConfig(%q) accepted", bad)
		}
	}
	if _, err := parseConfig(nil, func(k string) string {
		if k == "BLOBNODE_RESERVATION_TTL" {
			return "soon"
		}
		return ""
	}); err == nil {
		t.Error("a malformed environment value was accepted")
	}
}

func TestParseConfigLimits(t *testing.T) {
	none := func(string) string { return "" }
	d, err := parseConfig(nil, none)
	if err != nil {
		t.Fatal(err)
	}
	if d.maxHeaderBytes != 64<<10 || d.readHeaderTimeout != 10*time.Second || d.idleTimeout != 2*time.Minute ||
		d.bodyReadTimeout != time.Minute || d.writeTimeout != time.Minute || d.maxConcurrentUploads != 64 {
		t.Errorf("limit defaults: %+v", d)
	}
	c, err := parseConfig([]string{
		"-max-header-bytes", "8KiB", "-read-header-timeout", "1s", "-idle-timeout", "5s",
		"-body-read-timeout", "0", "-write-timeout", "250ms", "-max-concurrent-uploads", "3",
	}, none)
	if err != nil {
		t.Fatal(err)
	}
	if c.maxHeaderBytes != 8<<10 || c.readHeaderTimeout != time.Second || c.idleTimeout != 5*time.Second ||
		c.bodyReadTimeout != 0 || c.writeTimeout != 250*time.Millisecond || c.maxConcurrentUploads != 3 {
		t.Errorf("limit flags not applied: %+v", c)
	}
	srv := newHTTPServer(c, nil, slog.New(slog.DiscardHandler))
	if srv.MaxHeaderBytes != 8<<10 || srv.ReadHeaderTimeout != time.Second || srv.IdleTimeout != 5*time.Second ||
		srv.ReadTimeout != 0 || srv.WriteTimeout != 0 {
		t.Errorf("http.Server limits: header %d, read header %v, idle %v, read %v, write %v",
			srv.MaxHeaderBytes, srv.ReadHeaderTimeout, srv.IdleTimeout, srv.ReadTimeout, srv.WriteTimeout)
	}

	for _, bad := range [][]string{
		{"-max-header-bytes", "0"},
		{"-max-header-bytes", "2GiB"},
		{"-max-concurrent-uploads", "0"},
		{"-read-header-timeout", "0"},
		{"-idle-timeout", "-1s"},
		{"-body-read-timeout", "-1s"},
		{"-write-timeout", "soon"},
		{"-raft-heartbeat-timeout", "1ms"},
	} {
		if _, err := parseConfig(bad, none); err == nil {
			t.Errorf("parseConfig(%q) accepted", bad)
		}
	}
}

// TestPprofStops: the profiler serves until stop, which closes its
// listener and returns only after the serving goroutine has ended.
func TestPprofStops(t *testing.T) {
	addr, stop, err := startPprof("127.0.0.1:0", slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/debug/pprof/")
	if err != nil {
		t.Fatalf("pprof not served: %v", err)
	}
	resp.Body.Close()
	stop()
	if c, err := net.Dial("tcp", addr.String()); err == nil {
		c.Close()
		t.Fatal("pprof still listening after stop")
	}
	if _, _, err := startPprof("256.0.0.1:0", slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("a bad address was accepted")
	}
}
