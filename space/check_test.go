package space

import (
	"errors"
	"fmt"
	"slices"
	"testing"
)

// TestCheckOwned: CheckOwned compares the allocator with the complete set
// of owned extents, whatever slice holds it. In particular one allocated
// page with nothing owned is a leak, both for an empty slice and for nil
// (what raftfsm.OwnedExtents returns for a catalog with no blob and no
// reservation); Check alone never looks at ownership.
func TestCheckOwned(t *testing.T) {
	g := small(16 << 20)
	_, _, a := testVolume(t, g, 1)
	exts, err := a.Allocate(a.SpageSize())
	if err != nil {
		t.Fatal(err)
	}
	mustCommit(t, a)
	page := exts[0]
	leaked := fmt.Sprintf("page %d+%d allocated but owned by nothing (leaked)", page.Offset, page.Length)
	spage := a.SpageSize()
	for _, tc := range []struct {
		name  string
		check func() error
		want  []string // every problem, in order
	}{
		{"nothing owned, nil", func() error { return a.CheckOwned(nil) }, []string{leaked}},
		{"nothing owned, empty", func() error { return a.CheckOwned([]Extent{}) }, []string{leaked}},
		{"owned", func() error { return a.CheckOwned([]Extent{page}) }, nil},
		{"owned twice", func() error { return a.CheckOwned([]Extent{page, page}) },
			[]string{fmt.Sprintf("extent %d+%d owned twice", page.Offset, page.Length)}},
		{"owned with another length", func() error { return a.CheckOwned([]Extent{{page.Offset, 2 * spage}}) }, []string{
			fmt.Sprintf("extent %d+%d owned, but the page allocated there is %d bytes", page.Offset, 2*spage, spage),
			leaked,
		}},
		{"owned but free", func() error { return a.CheckOwned([]Extent{page, {page.Offset + spage, spage}}) },
			[]string{fmt.Sprintf("extent %d+%d owned but not allocated", page.Offset+spage, spage)}},
		{"ownership not checked", func() error { return a.Check() }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.check()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("got %v, want no problem", err)
				}
				return
			}
			var ce *CheckError
			if !errors.As(err, &ce) || !errors.Is(err, ErrInconsistent) {
				t.Fatalf("got %v, want a *CheckError", err)
			}
			if !slices.Equal(ce.Problems, tc.want) {
				t.Fatalf("problems %q, want %q", ce.Problems, tc.want)
			}
		})
	}
}
