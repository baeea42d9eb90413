package space

import (
	"context"
	"errors"
	"fmt"
	"maps"
	mrand "math/rand"
	"math/rand/v2"
	"slices"
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

// Events of the lazy crash workload, recorded in its trace.
type (
	indexSubmitted uint64 // SetAppliedIndex(i) and Submit are about to run
	indexAcked     uint64 // a Commit after SetAppliedIndex(i) returned nil
)

// lazyRun is one recorded run of the lazy workload.
type lazyRun struct {
	trace volume.Trace
	from  int // trace position where the workload began
	// models[i] lists the live extents as of applied index i; models[0]
	// is the empty allocator.
	models   [][]Extent
	stats    volume.JournalStats
	rebuilds int // rebuilds that moved the frontier down
	timed    int // transactions written by the journal's timer, not a Commit
}

// recordLazyRun drives the allocator as raftfsm's FSM does (see its
// ApplyBatch): each step is one batch of Allocate and Free calls, then
// SetAppliedIndex(step) and Submit, which hands the changes to the journal
// lazily. Now and then a Commit makes everything durable (a snapshot, a
// clean shutdown), or the test waits for the journal's timer to write the
// lazy transactions with nobody waiting. Twice the allocator is rebuilt
// from the live set, as the FSM does on Open and Restore, after freeing
// everything in the highest used lpage so that the rebuild moves the
// frontier down. The run is recorded from the formatted volume on.
func recordLazyRun(t *testing.T, g volume.Geometry, seed uint64, steps int) lazyRun {
	t.Helper()
	ctx := context.Background()
	rec := volume.NewRecorder(volume.NewMemDevice(g.VolumeSize, int64(seed)))
	vol, err := FormatVolume(rec, volume.FormatOptions{Geometry: g, JournalSize: 16 << 10})
	if err != nil {
		t.Fatal(err)
	}
	a, err := Open(vol)
	if err != nil {
		t.Fatal(err)
	}
	run := lazyRun{from: rec.Len(), models: [][]Extent{{}}}
	r := rand.New(rand.NewPCG(seed, 7))
	m := &model{live: map[int][]Extent{}, pages: map[int64]int64{}}
	free := func(id int) {
		if err := a.Free(m.live[id]); err != nil {
			t.Fatalf("free: %v", err)
		}
		m.remove(id)
	}
	for i := 1; i <= steps; i++ {
		rebuild := i == steps/3 || i == 2*steps/3
		if rebuild {
			top := a.frontier() - 1
			inTop := func(x Extent) bool { lp, _, _, _ := a.l.locate(x); return lp == top }
			for _, id := range sortedIDs(m) {
				if slices.ContainsFunc(m.live[id], inTop) {
					free(id)
				}
			}
		}
		for range 1 + r.IntN(4) {
			if rebuild {
				break // the frees above are this step's batch
			}
			if r.IntN(3) > 0 || len(m.live) == 0 {
				exts, err := a.Allocate(logUniform(r, 1, 2*a.LpageSize()))
				if errors.Is(err, ErrNoSpace) {
					continue
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				m.add(t, exts)
			} else {
				free(m.randomID(r))
			}
		}
		rec.Event(indexSubmitted(i))
		a.SetAppliedIndex(uint64(i))
		if err := a.Submit(); err != nil {
			t.Fatalf("step %d: submit: %v", i, err)
		}
		run.models = append(run.models, flatten(m.live))
		switch p := r.IntN(100); {
		case rebuild:
			before := a.frontier()
			if err := a.Rebuild(ctx, run.models[i]); err != nil {
				t.Fatalf("step %d: rebuild: %v", i, err)
			}
			if a.frontier() < before {
				run.rebuilds++
			}
			a.SetAppliedIndex(uint64(i))
			fallthrough
		case p < 20:
			if err := a.Commit(ctx); err != nil {
				t.Fatalf("step %d: commit: %v", i, err)
			}
			rec.Event(indexAcked(i))
		case p < 27:
			commits := vol.Journal().Stats().Commits
			waitFor(t, "the journal's timer to write a lazy transaction", func() bool {
				return vol.Journal().Stats().Commits > commits
			})
			run.timed++
		}
	}
	run.stats = vol.Journal().Stats()
	if err := vol.Close(); err != nil { // the final checkpoint is swept too
		t.Fatal(err)
	}
	run.trace = rec.Trace()
	return run
}

// sortedIDs lists the model's allocation ids in order (map order is
// random).
func sortedIDs(m *model) []int {
	ids := slices.Collect(maps.Keys(m.live))
	slices.Sort(ids)
	return ids
}

// TestLazyCrashSweep records one run of the FSM's lazy allocator workload
// (recordLazyRun) and crashes it at every sync boundary, in every crash
// mode (see volume.Trace). After the crash the volume and the allocator
// open (an interrupted rebuild is redone from the model, as the FSM does
// from its catalog); the durable applied index is at least the last one
// acknowledged by a Commit and at most the last one submitted; and the
// allocator is exactly the model at that index: Check proves its state
// consistent and its allocated pages those of the model's live extents.
// BLOBNODE_FULL_SWEEP=1 sweeps more and longer runs, and more rng seeds.
func TestLazyCrashSweep(t *testing.T) {
	runs, steps, seeds := 1, 40, 2
	if volume.FullSweep() {
		runs, steps, seeds = 4, 100, 6
	}
	g := volume.Geometry{SpageShift: 12, LpageShift: 16, VolumeSize: 2 << 20}
	for run := range runs {
		seed := uint64(31 + run)
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Logf("replay: go test ./space -run 'TestLazyCrashSweep/seed=%d$' (BLOBNODE_FULL_SWEEP=1 for seeds above 31)", seed)
			sweepLazy(t, g, seed, steps, seeds)
		})
	}
}

func sweepLazy(t *testing.T, g volume.Geometry, seed uint64, steps, seeds int) {
	ctx := context.Background()
	run := recordLazyRun(t, g, seed, steps)
	tr := run.trace
	if run.stats.Checkpoints == 0 || run.rebuilds == 0 || run.timed == 0 {
		t.Fatalf("the recorded run had %d checkpoints, %d frontier-moving rebuilds, %d timer writes: the sweep needs each",
			run.stats.Checkpoints, run.rebuilds, run.timed)
	}
	states := tr.CrashStates(run.from, seeds, int64(seed))
	redone := 0
	for _, cs := range states {
		var submitted, acked uint64
		for _, e := range tr.Events(cs.Op) {
			switch e := e.(type) {
			case indexSubmitted:
				submitted = uint64(e)
			case indexAcked:
				acked = uint64(e)
			}
		}
		dev := volume.NewMemDevice(g.VolumeSize, int64(seed))
		if err := tr.Build(dev, cs); err != nil {
			t.Fatalf("%v: %v", cs, err)
		}
		vol, err := volume.Open(dev, &g)
		if err != nil {
			t.Fatalf("%v: open volume: %v", cs, err)
		}
		a, err := Open(vol)
		if errors.Is(err, ErrNeedsRebuild) {
			redone++
			idx := a.AppliedIndex()
			if idx > uint64(len(run.models)-1) {
				t.Fatalf("%v: interrupted rebuild at applied index %d, beyond the run", cs, idx)
			}
			if err = a.Rebuild(ctx, run.models[idx]); err != nil {
				t.Fatalf("%v: redo the rebuild: %v", cs, err)
			}
		} else if err != nil {
			t.Fatalf("%v: open allocator: %v", cs, err)
		}
		idx := a.AppliedIndex()
		if idx < acked || idx > submitted {
			t.Fatalf("%v: durable applied index %d; want between the acknowledged %d and the submitted %d", cs, idx, acked, submitted)
		}
		if err := a.CheckOwned(run.models[idx]); err != nil {
			t.Fatalf("%v: the allocator at applied index %d is not the model's: %v", cs, idx, err)
		}
		// The reopened allocator keeps working.
		if _, err := a.Allocate(3000); err != nil && !errors.Is(err, ErrNoSpace) {
			t.Fatalf("%v: allocate after the crash: %v", cs, err)
		}
		if err := a.Commit(ctx); err != nil {
			t.Fatalf("%v: commit after the crash: %v", cs, err)
		}
		if err := vol.Close(); err != nil {
			t.Fatalf("%v: close: %v", cs, err)
		}
	}
	t.Logf("%d steps: %d device ops, %d syncs, %+v, %d timer writes, %d rebuilds",
		steps, len(tr.Ops), tr.Syncs(), run.stats, run.timed, run.rebuilds)
	t.Logf("checked %d crash states (%d of them redid an interrupted rebuild)", len(states), redone)
}
