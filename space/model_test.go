package space

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"testing"
)

// model is what the allocator must be equivalent to: a set of live
// allocations whose pages never overlap.
type model struct {
	live  map[int][]Extent
	pages map[int64]int64 // page offset -> length, every live page
	next  int
}

func (m *model) add(t *testing.T, exts []Extent) int {
	t.Helper()
	for _, x := range exts {
		// No overlap with any live page: pages are aligned powers of two,
		// so two overlap iff one contains the other's offset.
		for off, n := range m.pages {
			if x.Offset < off+n && off < x.Offset+x.Length {
				t.Fatalf("extent %d+%d overlaps live page %d+%d", x.Offset, x.Length, off, n)
			}
		}
		m.pages[x.Offset] = x.Length
	}
	m.next++
	m.live[m.next] = exts
	return m.next
}

func (m *model) remove(id int) {
	for _, x := range m.live[id] {
		delete(m.pages, x.Offset)
	}
	delete(m.live, id)
}

func (m *model) usedBytes() int64 {
	var n int64
	for _, l := range m.pages {
		n += l
	}
	return n
}

// randomID picks a live allocation deterministically (map order is random).
func (m *model) randomID(r *rand.Rand) int {
	ids := make([]int, 0, len(m.live))
	for id := range m.live {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids[r.IntN(len(ids))]
}

// TestModel drives random Allocate and Free calls, valid and invalid,
// against the model: no overlap ever, exact byte accounting, a rejected call
// changes nothing, reopening loses nothing committed, and freeing everything
// coalesces the heap back into whole free lpages.
func TestModel(t *testing.T) {
	ops := 4000
	if testing.Short() {
		ops = 1000
	}
	for _, seed := range []uint64{1, 2, 3, 4, 5} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			t.Logf("replay: go test ./space -run 'TestModel/seed=%d$'", seed)
			runModel(t, seed, ops)
		})
	}
}

func runModel(t *testing.T, seed uint64, ops int) {
	r := rand.New(rand.NewPCG(seed, 0))
	g := small(32 << 20) // ~100 lpages of 64 KiB
	dev, vol, a := testVolume(t, g, int64(seed))
	m := &model{live: map[int][]Extent{}, pages: map[int64]int64{}}
	var freed []Extent // extents freed earlier: freeing again must fail
	spage, lpage := a.SpageSize(), a.LpageSize()

	for i := range ops {
		before := a.Stats()
		switch op := r.IntN(10); {
		case op < 5: // allocate
			size := logUniform(r, 1, 4*lpage)
			exts, err := a.Allocate(size)
			if errors.Is(err, ErrNoSpace) {
				if after := a.Stats(); fmt.Sprint(after) != fmt.Sprint(before) {
					t.Fatalf("op %d: failed allocate changed stats", i)
				}
				continue
			}
			if err != nil {
				t.Fatalf("op %d: allocate %d: %v", i, size, err)
			}
			got := sum(exts)
			if got < size || got-size >= spage {
				t.Fatalf("op %d: allocate %d got %d bytes (waste must be under one spage)", i, size, got)
			}
			m.add(t, exts)
		case op < 8 && len(m.live) > 0: // free
			id := m.randomID(r)
			if err := a.Free(m.live[id]); err != nil {
				t.Fatalf("op %d: free: %v", i, err)
			}
			freed = append(freed, m.live[id]...)
			m.remove(id)
		case op == 8 && len(freed) > 0: // invalid frees change nothing
			x := freed[r.IntN(len(freed))]
			if _, live := m.pages[x.Offset]; live {
				continue // reallocated since
			}
			err := a.Free([]Extent{x})
			if !errors.Is(err, ErrDoubleFree) && !errors.Is(err, ErrNotAllocated) {
				t.Fatalf("op %d: free of freed %+v: got %v", i, x, err)
			}
			bad := []Extent{{Offset: x.Offset + 1, Length: x.Length}, {Offset: x.Offset, Length: 3 * spage}, {Offset: -spage, Length: spage}}
			if err := a.Free(bad[r.IntN(len(bad)):][:1]); !errors.Is(err, ErrBadExtent) {
				t.Fatalf("op %d: bad extent: got %v", i, err)
			}
			if len(m.live) > 0 { // a valid extent and a bad one: neither is freed
				id := m.randomID(r)
				mixed := append([]Extent{m.live[id][0]}, x)
				if err := a.Free(mixed); err == nil {
					t.Fatalf("op %d: free of live+freed succeeded", i)
				}
			}
			if after := a.Stats(); fmt.Sprint(after) != fmt.Sprint(before) {
				t.Fatalf("op %d: rejected free changed stats", i)
			}
		default: // commit, sometimes reopen
			mustCommit(t, a)
			if r.IntN(8) == 0 {
				if err := vol.Close(); err != nil {
					t.Fatal(err)
				}
				dev.Reopen()
				vol, a = reopen(t, dev, g)
			}
		}
		st := a.Stats()
		if st.UsedBytes != m.usedBytes() || st.FreeBytes+st.UsedBytes != st.TotalBytes {
			t.Fatalf("op %d: used %d free %d total %d, model used %d", i, st.UsedBytes, st.FreeBytes, st.TotalBytes, m.usedBytes())
		}
		if i%500 == 0 {
			if err := a.CheckOwned(flatten(m.live)); err != nil {
				t.Fatalf("op %d: %v", i, err)
			}
		}
	}
	if err := a.CheckOwned(flatten(m.live)); err != nil {
		t.Fatal(err)
	}
	for id, exts := range m.live {
		if err := a.Free(exts); err != nil {
			t.Fatalf("final free: %v", err)
		}
		m.remove(id)
	}
	st := a.Stats()
	top := len(st.Classes) - 1
	if st.UsedBytes != 0 || st.Classes[top].FreePages != uint64(st.TotalBytes/lpage) || st.Fragmentation != 0 {
		t.Fatalf("after freeing everything: %+v", st)
	}
	for c := range top {
		if st.Classes[c].FreePages != 0 {
			t.Fatalf("class %d still has %d free pages: not coalesced", c, st.Classes[c].FreePages)
		}
	}
	mustCommit(t, a)
	if err := a.CheckOwned(nil); err != nil {
		t.Fatal(err)
	}
}
