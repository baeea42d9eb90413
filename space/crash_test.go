package space

import (
	"context"
	"errors"
	"fmt"
	mrand "math/rand"
	"math/rand/v2"
	"testing"

	"github.com/blobnode/blobnode/volume"
)

// crashRun is one run of the crash workload on a fresh device that dies at
// device operation crashAt (0: never).
type crashRun struct {
	dev      *volume.MemDevice
	acked    []Extent // live extents as of the last Commit that returned nil
	crashed  bool     // a Commit failed (the device crashed)
	inflight []Extent // if crashed: live extents as of the Commit that failed
	ops      int64    // device operations the workload used
	// checkpoints is how often the journal reset its log during the run.
	checkpoints uint64
}

func runCrashWorkload(t *testing.T, seed uint64, crashAt int64) crashRun {
	t.Helper()
	g := small(4 << 20)
	dev := volume.NewMemDevice(g.VolumeSize, int64(seed))
	vol, err := FormatVolume(dev, volume.FormatOptions{Geometry: g, JournalSize: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	a, err := Open(vol)
	if err != nil {
		t.Fatal(err)
	}
	base := dev.Ops()
	if crashAt > 0 {
		dev.SetCrashAt(base + crashAt)
	}
	r := rand.New(rand.NewPCG(seed, 5))
	live := map[int][]Extent{}
	run := crashRun{dev: dev}
	next := 0
	for step := range 40 {
		for range 1 + r.IntN(3) {
			if r.IntN(3) > 0 || len(live) == 0 {
				exts, err := a.Allocate(logUniform(r, 1, 2*a.LpageSize()))
				if errors.Is(err, ErrNoSpace) {
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				next++
				live[next] = exts
			} else {
				m := &model{live: live}
				id := m.randomID(r)
				if err := a.Free(live[id]); err != nil {
					t.Fatalf("step %d: %v", step, err)
				}
				delete(live, id)
			}
		}
		if err := a.Commit(context.Background()); err != nil {
			if crashAt == 0 || !errors.Is(err, volume.ErrCrashed) {
				t.Fatalf("step %d: commit: %v", step, err)
			}
			run.crashed, run.inflight = true, flatten(live)
			run.ops = dev.Ops() - base
			vol.Close()
			return run
		}
		run.acked = flatten(live)
	}
	run.ops = dev.Ops() - base
	run.checkpoints = vol.Journal().Stats().Checkpoints
	vol.Close()
	return run
}

// TestCrash crashes the device at every operation of a workload (each
// journal write, fsync and in-place write, so at every commit boundary and
// inside every commit) and with every crash mode, then reopens: the volume
// opens, Check passes, and the allocated set is exactly that of the last
// acknowledged commit or of the one in flight, never anything in between.
// The journal region is small, so the sweep crosses log checkpoints too.
func TestCrash(t *testing.T) {
	modes := volume.CrashModes()
	for _, seed := range []uint64{21, 22} {
		clean := runCrashWorkload(t, seed, 0)
		if clean.checkpoints == 0 {
			t.Fatal("the workload never filled the journal: the sweep misses checkpoints")
		}
		total := clean.ops
		step := int64(1)
		if testing.Short() {
			step = 7
		}
		t.Logf("seed %d: %d device operations; replay: go test ./space -run 'TestCrash$' (seed %d)", seed, total, seed)
		for at := int64(1); at <= total; at += step {
			// Each point gets one mode, rotating, so every mode meets every
			// kind of operation across the sweep.
			for _, mode := range modes[(at+int64(seed))%3:][:1] {
				run := runCrashWorkload(t, seed, at)
				rng := mrand.New(mrand.NewSource(int64(seed)*1000 + at))
				run.dev.Crash(mode, rng)
				g := small(4 << 20)
				vol, err := volume.Open(run.dev, &g)
				if err != nil {
					t.Fatalf("seed %d crash at %d (%v): open volume: %v", seed, at, mode, err)
				}
				a, err := Open(vol)
				if err != nil {
					t.Fatalf("seed %d crash at %d (%v): open allocator: %v", seed, at, mode, err)
				}
				errAcked := a.CheckOwned(run.acked)
				if errAcked != nil && (!run.crashed || a.CheckOwned(run.inflight) != nil) {
					t.Fatalf("seed %d crash at %d (%v): state is neither the acknowledged nor the in-flight one: %v", seed, at, mode, errAcked)
				}
				// The reopened allocator keeps working.
				if _, err := a.Allocate(3000); err != nil && !errors.Is(err, ErrNoSpace) {
					t.Fatal(err)
				}
				if err := a.Commit(context.Background()); err != nil {
					t.Fatal(fmt.Errorf("commit after crash: %w", err))
				}
				vol.Close()
			}
		}
	}
}
