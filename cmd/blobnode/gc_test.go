package main

import (
	"runtime/debug"
	"testing"
)

func TestGCPercent(t *testing.T) {
	for _, tc := range []struct {
		env     string
		want    int
		setsOwn bool
	}{
		{"", defaultGCPercent, true},
		{"100", 0, false},
		{"off", 0, false},
	} {
		got, ok := gcPercent(func(k string) string {
			if k == "GOGC" {
				return tc.env
			}
			return ""
		})
		if got != tc.want || ok != tc.setsOwn {
			t.Errorf("GOGC=%q: gcPercent = %d, %v; want %d, %v", tc.env, got, ok, tc.want, tc.setsOwn)
		}
	}
}

func TestTuneGCSetsTheDefault(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	tuneGC(func(string) string { return "" })
	if now := debug.SetGCPercent(100); now != defaultGCPercent {
		t.Fatalf("GC percent after tuneGC without GOGC = %d, want %d", now, defaultGCPercent)
	}
	tuneGC(func(k string) string { return map[string]string{"GOGC": "50"}[k] })
	if now := debug.SetGCPercent(100); now != 100 {
		t.Fatalf("tuneGC with GOGC=50 in the environment changed the GC percent to %d", now)
	}
}
