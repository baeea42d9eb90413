package main

import (
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
