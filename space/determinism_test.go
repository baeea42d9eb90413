package space

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/blobnode/blobnode/volume"
)

// workload applies n random operations and returns the live extents. The
// choices depend only on r and on the allocator's answers.
func workload(t *testing.T, a *Allocator, r *rand.Rand, n int, live map[int][]Extent) {
	t.Helper()
	next := 0
	for id := range live {
		next = max(next, id)
	}
	for range n {
		if r.IntN(3) > 0 || len(live) == 0 {
			exts, err := a.Allocate(logUniform(r, 1, 3*a.LpageSize()))
			if err != nil {
				continue // out of space is part of the workload
			}
			next++
			live[next] = exts
		} else {
			m := &model{live: live}
			id := m.randomID(r)
			if err := a.Free(live[id]); err != nil {
				t.Fatal(err)
			}
			delete(live, id)
		}
	}
}

func stateRegion(t *testing.T, vol *volume.Volume) []byte {
	t.Helper()
	sb := vol.Superblock()
	b := make([]byte, sb.Layout.StateSize)
	if err := vol.ReadMeta(b, sb.Layout.StateOffset); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDeterminism: two allocators fed the same operations make the same
// decisions and leave byte-identical state regions.
func TestDeterminism(t *testing.T) {
	for _, seed := range []uint64{7, 8, 9} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			g := small(16 << 20)
			_, va, a := testVolume(t, g, 42)
			_, vb, b := testVolume(t, g, 42)
			la, lb := map[int][]Extent{}, map[int][]Extent{}
			workload(t, a, rand.New(rand.NewPCG(seed, 1)), 3000, la)
			workload(t, b, rand.New(rand.NewPCG(seed, 1)), 3000, lb)
			if fmt.Sprint(la) != fmt.Sprint(lb) {
				t.Fatal("same operations, different extents")
			}
			for _, x := range []*Allocator{a, b} {
				mustCommit(t, x)
			}
			for _, v := range []*volume.Volume{va, vb} {
				if err := v.Journal().Checkpoint(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if !bytes.Equal(stateRegion(t, va), stateRegion(t, vb)) {
				t.Fatal("state regions differ")
			}
		})
	}
}

// TestRebuildDecidesLikePeers: an allocator rebuilt from the set of owned
// extents (as a node does from its catalog after a crash) makes exactly the
// decisions of the allocator that reached that set through its history.
// That is what keeps blobs at the same offsets on every replica.
func TestRebuildDecidesLikePeers(t *testing.T) {
	for _, seed := range []uint64{11, 12, 13} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			g := small(16 << 20)
			_, _, a := testVolume(t, g, 1)
			live := map[int][]Extent{}
			workload(t, a, rand.New(rand.NewPCG(seed, 2)), 2000, live)
			mustCommit(t, a)

			dev, _, b := testVolume(t, g, 2) // different garbage underneath
			owned := flatten(live)
			if err := b.Rebuild(context.Background(), owned); err != nil {
				t.Fatal(err)
			}
			if err := b.CheckOwned(owned); err != nil {
				t.Fatal(err)
			}
			if fmt.Sprint(a.Stats()) != fmt.Sprint(b.Stats()) {
				t.Fatalf("stats differ:\n%+v\n%+v", a.Stats(), b.Stats())
			}
			// Survives reopen.
			_, b = reopen(t, dev, g)
			la, lb := map[int][]Extent{}, map[int][]Extent{}
			for k, v := range live {
				la[k], lb[k] = v, v
			}
			workload(t, a, rand.New(rand.NewPCG(seed, 3)), 2000, la)
			workload(t, b, rand.New(rand.NewPCG(seed, 3)), 2000, lb)
			if fmt.Sprint(la) != fmt.Sprint(lb) {
				t.Fatal("rebuilt allocator decided differently")
			}
			if err := b.CheckOwned(flatten(lb)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRebuildRejectsOverlap(t *testing.T) {
	g := small(16 << 20)
	_, _, a := testVolume(t, g, 1)
	exts, err := a.Allocate(3 * a.SpageSize())
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, a)
	before := a.Stats()
	overlapping := append(exts, Extent{Offset: exts[0].Offset, Length: a.SpageSize()})
	if err := a.Rebuild(context.Background(), overlapping); !errors.Is(err, ErrOverlap) {
		t.Fatalf("got %v, want ErrOverlap", err)
	}
	if fmt.Sprint(before) != fmt.Sprint(a.Stats()) {
		t.Fatal("failed rebuild changed state")
	}
	if err := a.CheckOwned(exts); err != nil {
		t.Fatal(err)
	}
}
