package space

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/blobnode/blobnode/volume"
)

// small is a geometry with 4 KiB spages and 256 KiB lpages (7 classes), so
// tests reach every class and run out of space quickly.
func small(volumeSize int64) volume.Geometry {
	return volume.Geometry{SpageShift: 12, LpageShift: 18, VolumeSize: volumeSize}
}

// testVolume formats a MemDevice and returns it with its volume and
// allocator; Check runs at cleanup.
func testVolume(t testing.TB, g volume.Geometry, seed int64) (*volume.MemDevice, *volume.Volume, *Allocator) {
	t.Helper()
	dev := volume.NewMemDevice(g.VolumeSize, seed)
	vol, err := FormatVolume(dev, volume.FormatOptions{Geometry: g, JournalSize: 256 << 10})
	if err != nil {
		t.Fatalf("format: %v", err)
	}
	a, err := Open(vol)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		if err := a.Check(); err != nil && !errors.Is(err, ErrFailed) {
			t.Errorf("check at cleanup: %v", err)
		}
	})
	return dev, vol, a
}

func reopen(t testing.TB, dev volume.Device, g volume.Geometry) (*volume.Volume, *Allocator) {
	t.Helper()
	vol, err := volume.Open(dev, &g)
	if err != nil {
		t.Fatalf("reopen volume: %v", err)
	}
	a, err := Open(vol)
	if err != nil {
		t.Fatalf("reopen allocator: %v", err)
	}
	return vol, a
}

func mustCommit(t testing.TB, a *Allocator) {
	t.Helper()
	if err := a.Commit(context.Background()); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

// logUniform returns a size between lo and hi, uniform in log scale.
func logUniform(r *rand.Rand, lo, hi int64) int64 {
	x := float64(lo) * math.Pow(float64(hi)/float64(lo), r.Float64())
	return max(lo, min(hi, int64(x)))
}

func sum(exts []Extent) int64 {
	var n int64
	for _, x := range exts {
		n += x.Length
	}
	return n
}

// flatten lists every extent of live.
func flatten(live map[int][]Extent) []Extent {
	var out []Extent
	for _, exts := range live {
		out = append(out, exts...)
	}
	return out
}

// waitFor polls cond, a condition nothing signals, until it holds or ten
// seconds pass.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}
