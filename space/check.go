package space

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// CheckError lists every inconsistency Check found (the first maxProblems).
// errors.Is(err, ErrInconsistent) matches it.
type CheckError struct {
	Problems []string
}

const maxProblems = 100

func (e *CheckError) Error() string {
	return fmt.Sprintf("space: %d inconsistencies: %s", len(e.Problems), strings.Join(e.Problems, "; "))
}

func (e *CheckError) Is(target error) bool { return target == ErrInconsistent }

type checker struct {
	problems []string
}

func (c *checker) addf(format string, args ...any) {
	if len(c.problems) < maxProblems {
		c.problems = append(c.problems, fmt.Sprintf(format, args...))
	}
}

// Check proves the allocator's own state consistent: every page of every
// used lpage is exactly one of free, allocated or inside one of those; free
// buddies are merged; the summaries and counters agree with the trees. It
// does not look at the catalog; CheckOwned does.
//
// Check reads every used lpage's tree; it is for fsck and tests, not for the
// hot path. It returns nil, an I/O error, or a *CheckError.
func (a *Allocator) Check() error { return a.check(nil, false) }

// CheckOwned is Check plus a comparison with owned, every extent the
// catalog says is in use (blobs and reservations): each owned extent is
// allocated exactly once, with its length, and every allocated page is
// owned. So no page is both free and owned, owned twice, or lost (leaked).
// owned is the complete set: nil and empty both mean that nothing is owned,
// so every allocated page is a leak. (The choice to compare is the method,
// never the nil-ness of a slice: an empty catalog yields a nil one.)
func (a *Allocator) CheckOwned(owned []Extent) error { return a.check(owned, true) }

func (a *Allocator) check(owned []Extent, compare bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	var ck checker
	var freeN, allocN [maxClasses]uint64
	allocated := make(map[int64]int64)
	frontier := a.frontier()
	for lp := range frontier {
		e, err := a.entryAt(lp)
		if err != nil {
			return err
		}
		var counts [maxClasses]uint32
		a.checkNode(&ck, lp, e, 1, &counts, &allocN, allocated)
		for c := range a.l.classes {
			freeN[c] += uint64(counts[c])
			if counts[c] != e.freeCount[c] {
				ck.addf("lpage %d class %d: %d free pages, cached count %d", lp, c, counts[c], e.freeCount[c])
			}
		}
	}
	for c := range a.l.classes {
		s, err := a.summary(c)
		if err != nil {
			return err
		}
		for lp := range a.l.summaryWords * 64 {
			want := lp < frontier && a.entries[lp].freeCount[c] > 0
			if s.bit(lp) != want {
				ck.addf("summary of class %d says lpage %d has free pages: %v, tree says %v", c, lp, s.bit(lp), want)
			}
		}
		if freeN[c] != a.freePages(c) {
			ck.addf("class %d: %d free pages, header counts %d", c, freeN[c], a.freePages(c))
		}
		if allocN[c] != a.usedPages(c) {
			ck.addf("class %d: %d allocated pages, header counts %d", c, allocN[c], a.usedPages(c))
		}
	}
	if compare {
		for _, x := range owned {
			n, ok := allocated[x.Offset]
			switch {
			case !ok || n == 0:
				if ok {
					ck.addf("extent %d+%d owned twice", x.Offset, x.Length)
				} else {
					ck.addf("extent %d+%d owned but not allocated", x.Offset, x.Length)
				}
			case n != x.Length:
				ck.addf("extent %d+%d owned, but the page allocated there is %d bytes", x.Offset, x.Length, n)
			default:
				allocated[x.Offset] = 0
			}
		}
		// In offset order, so a report (and its first maxProblems) is
		// the same on every run.
		for _, off := range slices.Sorted(maps.Keys(allocated)) {
			if n := allocated[off]; n != 0 {
				ck.addf("page %d+%d allocated but owned by nothing (leaked)", off, n)
			}
		}
	}
	if len(ck.problems) > 0 {
		return &CheckError{Problems: ck.problems}
	}
	return nil
}

// checkNode verifies the subtree at node and counts its pages.
func (a *Allocator) checkNode(ck *checker, lp int, e *entry, node int, freeCounts *[maxClasses]uint32, allocN *[maxClasses]uint64, allocated map[int64]int64) {
	d := depthOf(node)
	c := a.l.classes - 1 - d
	isFree, isAlloc := e.bit(node), e.bit(a.allocBit(node))
	x := a.l.extentOf(lp, node)
	if isFree && isAlloc {
		ck.addf("page %d+%d both free and allocated", x.Offset, x.Length)
	}
	if isFree || isAlloc {
		if isFree {
			freeCounts[c]++
		}
		if isAlloc {
			allocN[c]++
			allocated[x.Offset] = x.Length
		}
		if c > 0 && (a.anyBitBelow(e, 2*node) || a.anyBitBelow(e, 2*node+1)) {
			ck.addf("page %d+%d is free or allocated but has pages marked inside it", x.Offset, x.Length)
		}
		return
	}
	if c == 0 {
		ck.addf("page %d+%d lost: neither free, allocated nor part of either", x.Offset, x.Length)
		return
	}
	a.checkNode(ck, lp, e, 2*node, freeCounts, allocN, allocated)
	a.checkNode(ck, lp, e, 2*node+1, freeCounts, allocN, allocated)
	if e.bit(2*node) && e.bit(2*node+1) {
		ck.addf("free buddies inside %d+%d were not merged", x.Offset, x.Length)
	}
}

func (a *Allocator) anyBitBelow(e *entry, node int) bool {
	if e.bit(node) || e.bit(a.allocBit(node)) {
		return true
	}
	if depthOf(node) == a.l.classes-1 {
		return false
	}
	return a.anyBitBelow(e, 2*node) || a.anyBitBelow(e, 2*node+1)
}
