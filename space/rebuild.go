package space

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/bits"

	"github.com/blobnode/blobnode/volume"
)

func depthOf(node int) int { return bits.Len(uint(node)) - 1 }

// Rebuild replaces the allocator's state with the one in which exactly the
// owned extents are allocated (the PMDK lesson: derived state is recreated
// from what is known to be true, here the catalog). Because decisions depend
// only on the set of allocated pages, the rebuilt allocator decides exactly
// as an allocator that reached the same set by any history.
//
// Rebuild writes directly, not through the journal: it first checkpoints the
// journal, marks the header "rebuilding" durably (through the journal),
// writes and syncs the new lpage trees and summaries directly, then
// commits the new header, its mark cleared, through the journal. A crash in between makes the next Open return
// ErrNeedsRebuild. The applied index is kept. On ErrOverlap or ErrBadExtent
// nothing changed.
func (a *Allocator) Rebuild(ctx context.Context, owned []Extent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failed != nil {
		return a.failed
	}
	entries, frontier, err := a.build(owned)
	if err != nil {
		return err
	}
	// Nothing submitted earlier may be replayed over the direct writes.
	a.sealLocked()
	if a.last != nil {
		if err := a.last.Wait(ctx); err != nil {
			return fmt.Errorf("space: rebuild: %w", err)
		}
	}
	if err := a.vol.Journal().Checkpoint(ctx); err != nil {
		return fmt.Errorf("space: rebuild: %w", err)
	}
	a.failed = ErrFailed // until the new state is fully in place
	if err := a.writeFlags(ctx, a.hdr.w[hwFlags]|flagRebuilding); err != nil {
		return err
	}

	hdr := newWords(a.l.stateOff, len(a.hdr.w))
	copy(hdr.w, a.hdr.w)
	hdr.w[hwFrontier] = uint64(frontier)
	summaries := make([]*words, a.l.classes)
	for c := range a.l.classes {
		summaries[c] = newWords(a.l.summaryOff+int64(c*a.l.summaryWords*8), a.l.summaryWords)
		hdr.w[a.allocCountIdx(c)], hdr.w[a.freeCountIdx(c)] = 0, 0
	}
	var buf []byte
	for lp := range frontier {
		e := entries[lp]
		for node := 1; node < 1<<a.l.classes; node++ {
			c := a.l.classes - 1 - depthOf(node)
			if e.bit(a.allocBit(node)) {
				hdr.w[a.allocCountIdx(c)]++
			}
		}
		for c := range a.l.classes {
			hdr.w[a.freeCountIdx(c)] += uint64(e.freeCount[c])
			if e.freeCount[c] > 0 {
				summaries[c].w[lp>>6] |= 1 << (lp & 63)
			}
		}
		buf = encodeWords(buf[:0], e.w)
		if err := a.vol.WriteMetaDirect(buf, e.off); err != nil {
			return fmt.Errorf("space: rebuild lpage %d: %w", lp, err)
		}
	}
	for c, s := range summaries {
		buf = encodeWords(buf[:0], s.w)
		if err := a.vol.WriteMetaDirect(buf, s.off); err != nil {
			return fmt.Errorf("space: rebuild summary %d: %w", c, err)
		}
	}
	if err := a.vol.Sync(); err != nil {
		return fmt.Errorf("space: rebuild: %w", err)
	}
	// The new header, its flag cleared, in one journaled write: until it
	// is durable the flag says the rebuild did not finish.
	hdr.w[hwFlags] &^= flagRebuilding
	var t volume.Txn
	t.Write(hdr.off, encodeWords(buf[:0], hdr.w))
	if err := a.vol.Journal().Commit(ctx, &t); err != nil {
		return fmt.Errorf("space: rebuild header: %w", err)
	}
	a.hdr = hdr
	a.summaries = summaries
	clear(a.summaryLow)
	a.entries = entries
	a.dirty = a.dirty[:0]
	a.last = nil
	a.failed = nil
	return nil
}

// writeFlags sets the header's flags word through the journal. The header
// is never written directly, only through the journal: an in-place write
// of its sector that a power cut tears (into neither the old nor the new
// bytes) is then replayed from the log, whereas a torn direct write would
// leave a volume whose allocator cannot be opened.
func (a *Allocator) writeFlags(ctx context.Context, f uint64) error {
	a.hdr.w[hwFlags] = f
	var t volume.Txn
	t.Write(a.l.stateOff+hwFlags*8, binary.LittleEndian.AppendUint64(nil, f))
	if err := a.vol.Journal().Commit(ctx, &t); err != nil {
		return fmt.Errorf("space: write flags: %w", err)
	}
	return nil
}

func encodeWords(b []byte, w []uint64) []byte {
	for _, v := range w {
		b = binary.LittleEndian.AppendUint64(b, v)
	}
	return b
}

// build computes, in fresh memory, the trees in which exactly owned is
// allocated. The frontier is one past the highest lpage owned.
func (a *Allocator) build(owned []Extent) ([]*entry, int, error) {
	entries := make([]*entry, a.l.lpages)
	frontier := 0
	n := 2 * a.l.entryWords
	get := func(lp int) *entry {
		if entries[lp] == nil {
			e := &entry{words: *newWords(a.l.entryOff+int64(lp*n*8), n)}
			e.w[0] |= 1 << 1 // the whole lpage free
			e.freeCount[a.l.classes-1] = 1
			entries[lp] = e
		}
		return entries[lp]
	}
	for _, x := range owned {
		lp, node, c, err := a.l.locate(x)
		if err != nil {
			return nil, 0, err
		}
		e := get(lp)
		frontier = max(frontier, lp+1)
		// The free page that contains node, if any.
		top, tc := node, c
		for top >= 1 && !e.bit(top) {
			top >>= 1
			tc++
		}
		if top == 0 || e.bit(a.allocBit(node)) {
			return nil, 0, fmt.Errorf("space: rebuild: extent %d+%d: %w", x.Offset, x.Length, ErrOverlap)
		}
		e.w[top>>6] &^= 1 << (top & 63)
		e.freeCount[tc]--
		for k := depthOf(node) - depthOf(top); k > 0; k-- {
			// The child of the current page on the path to node stays
			// split; its buddy becomes a free page.
			child := node >> (k - 1)
			sib := child ^ 1
			e.w[sib>>6] |= 1 << (sib & 63)
			e.freeCount[a.l.classes-1-depthOf(sib)]++
		}
		ab := a.allocBit(node)
		e.w[ab>>6] |= 1 << (ab & 63)
	}
	for lp := range frontier {
		get(lp)
	}
	return entries, frontier, nil
}
