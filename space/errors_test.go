package space

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
)

func TestAllocateAndFreeErrors(t *testing.T) {
	g := small(4 << 20)
	_, _, a := testVolume(t, g, 1)
	spage, lpage := a.SpageSize(), a.LpageSize()
	heap := a.l.heapOffset
	live, err := a.Allocate(2 * spage)
	if err != nil {
		t.Fatal(err)
	}
	freed, err := a.Allocate(spage)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Free(freed); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, a)

	for _, tc := range []struct {
		name string
		do   func() error
		want error
	}{
		{"zero size", func() error { _, err := a.Allocate(0); return err }, ErrInvalidSize},
		{"negative size", func() error { _, err := a.Allocate(-5); return err }, ErrInvalidSize},
		{"larger than the heap", func() error { _, err := a.Allocate(a.Stats().TotalBytes + 1); return err }, ErrNoSpace},
		{"double free", func() error { return a.Free(freed) }, ErrDoubleFree},
		{"listed twice", func() error { return a.Free([]Extent{live[0], live[0]}) }, ErrDoubleFree},
		{"half of a page", func() error { return a.Free([]Extent{{live[0].Offset, spage}}) }, ErrNotAllocated},
		{"never-used lpage", func() error { return a.Free([]Extent{{heap + 10*lpage, lpage}}) }, ErrDoubleFree},
		{"misaligned", func() error { return a.Free([]Extent{{live[0].Offset + spage, 2 * spage}}) }, ErrBadExtent},
		{"not a power of two", func() error { return a.Free([]Extent{{live[0].Offset, 3 * spage}}) }, ErrBadExtent},
		{"below spage", func() error { return a.Free([]Extent{{live[0].Offset, spage / 2}}) }, ErrBadExtent},
		{"above lpage", func() error { return a.Free([]Extent{{heap, 2 * lpage}}) }, ErrBadExtent},
		{"before the heap", func() error { return a.Free([]Extent{{heap - spage, spage}}) }, ErrBadExtent},
		{"after the heap", func() error { return a.Free([]Extent{{heap + a.Stats().TotalBytes, spage}}) }, ErrBadExtent},
		{"valid then invalid", func() error { return a.Free([]Extent{live[0], freed[0]}) }, ErrDoubleFree},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := fmt.Sprint(a.Stats())
			if err := tc.do(); !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if after := fmt.Sprint(a.Stats()); after != before {
				t.Fatalf("state changed:\n%s\n%s", before, after)
			}
			if err := a.CheckOwned(live); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestFillFreeFill: a heap filled to ErrNoSpace, emptied and filled again
// holds as much the second time.
func TestFillFreeFill(t *testing.T) {
	g := small(8 << 20)
	_, _, a := testVolume(t, g, 1)
	fill := func() (n int64, all [][]Extent) {
		sizes := []int64{1, 4000, 20000, 280000, 12000, 520000}
		for i := 0; ; i++ {
			exts, err := a.Allocate(sizes[i%len(sizes)])
			if errors.Is(err, ErrNoSpace) {
				// Fill the rest with spages so both passes end full.
				for {
					exts, err := a.Allocate(1)
					if errors.Is(err, ErrNoSpace) {
						return n, all
					}
					n += sum(exts)
					all = append(all, exts)
				}
			}
			if err != nil {
				t.Fatal(err)
			}
			n += sum(exts)
			all = append(all, exts)
		}
	}
	first, all := fill()
	if st := a.Stats(); st.FreeBytes != 0 || first != st.TotalBytes {
		t.Fatalf("full heap: stored %d of %d, %d free", first, st.TotalBytes, st.FreeBytes)
	}
	for _, exts := range all {
		if err := a.Free(exts); err != nil {
			t.Fatal(err)
		}
	}
	mustCommit(t, a)
	second, _ := fill()
	if second != first {
		t.Fatalf("second fill stored %d bytes, first %d", second, first)
	}
}

func TestPlan(t *testing.T) {
	l := layout{spageShift: 12, lpageShift: 18, classes: 7} // 4 KiB .. 256 KiB
	const k = 1 << 10
	for _, tc := range []struct {
		size int64
		want []int64 // page sizes
	}{
		{1, []int64{4 * k}},
		{4 * k, []int64{4 * k}},
		{4*k + 1, []int64{8 * k}},
		{12 * k, []int64{8 * k, 4 * k}},
		{256*k - 1, []int64{256 * k}},
		{256 * k, []int64{256 * k}},
		{256*k + 1, []int64{256 * k, 4 * k}},
		{2*256*k + 20*k, []int64{256 * k, 256 * k, 16 * k, 4 * k}},
	} {
		var got []int64
		for _, c := range l.plan(nil, tc.size) {
			got = append(got, l.pageSize(c))
		}
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("plan(%d) = %v, want %v", tc.size, got, tc.want)
		}
	}
}

// TestSpaceEfficiency: log-uniform sizes from 1 KiB to 64 MiB with the
// default geometry waste under one spage per blob, and allocate at most
// 1.05 times what blobs of 64 KiB and more request.
func TestSpaceEfficiency(t *testing.T) {
	l := layout{spageShift: 12, lpageShift: 24, classes: 13}
	r := rand.New(rand.NewPCG(3, 3))
	var req, alloc int64
	for range 20000 {
		size := logUniform(r, 1<<10, 64<<20)
		var got int64
		for _, c := range l.plan(nil, size) {
			got += l.pageSize(c)
		}
		if got < size || got-size >= l.pageSize(0) {
			t.Fatalf("size %d: %d bytes allocated", size, got)
		}
		if size >= 64<<10 {
			req, alloc = req+size, alloc+got
		}
	}
	if ratio := float64(alloc) / float64(req); ratio > 1.05 {
		t.Fatalf("allocated/requested = %.4f", ratio)
	}
}
