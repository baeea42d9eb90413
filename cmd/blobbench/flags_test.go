package main

import (
	"slices"
	"testing"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0": 0, "1024": 1024, "1B": 1, "1KiB": 1024, "1kib": 1024, "1K": 1024,
		"4MiB": 4 << 20, "1GiB": 1 << 30, "1KB": 1000, "2MB": 2e6, "1GB": 1e9, " 8 KiB ": 8192,
	} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "KiB", "-1", "1.5KiB", "1TiB", "99999999999GiB", "x"} {
		if got, err := parseSize(in); err == nil {
			t.Errorf("parseSize(%q) = %d, want an error", in, got)
		}
	}
	for n, want := range map[int64]string{1024: "1KiB", 1 << 20: "1MiB", 1000: "1000B", 0: "0B"} {
		if got := formatSize(n); got != want {
			t.Errorf("formatSize(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestParseOps(t *testing.T) {
	got, err := parseOps("put, GET,delete,get")
	if want := []Op{OpPut, OpGet, OpDelete, OpGet}; err != nil || !slices.Equal(got, want) {
		t.Errorf("parseOps = %v, %v; want %v", got, err, want)
	}
	for _, in := range []string{"", "put,", "post", "put,,get"} {
		if _, err := parseOps(in); err == nil {
			t.Errorf("parseOps(%q) accepted", in)
		}
	}
}
