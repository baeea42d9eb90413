package space

import (
	"context"
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"sync"

	"github.com/blobnode/blobnode/volume"
)

// Allocator hands out pages of one volume's heap. All methods are safe for
// concurrent use; decisions are serialised by one mutex, so the same calls in
// the same order give the same extents on every replica.
type Allocator struct {
	vol *volume.Volume
	l   layout

	mu sync.Mutex // guards everything below
	// hdr mirrors the header's words; header() views it.
	hdr *words
	// summaries[c] is loaded on first use of class c; nil until then.
	summaries []*words
	// summaryLow[c] is a word index below which summaries[c] is all zero.
	summaryLow []int
	// entries[lp] is loaded on first touch; nil until then.
	entries []*entry
	// dirty lists every words value with dirty bits, in first-touch order.
	dirty []*words
	// last is the newest transaction submitted; waiting on it waits for all
	// earlier ones (the journal completes in order).
	last   *volume.Commit
	txn    volume.Txn
	buf    []byte
	failed error
}

// entry is one lpage's tree: free bits then allocated bits, by node.
type entry struct {
	words
	// freeCount[c] is the number of free pages of class c in this lpage.
	freeCount [maxClasses]uint32
}

// Format writes an empty allocator into a freshly formatted volume (see
// volume.Format with StateSize) and syncs it.
func Format(vol *volume.Volume) error {
	l, err := layoutOf(vol.Superblock())
	if err != nil {
		return err
	}
	hdr := make([]byte, headerSize)
	binary.LittleEndian.PutUint64(hdr[hwMagic*8:], headerMagic)
	if err := vol.WriteMetaDirect(hdr, l.stateOff); err != nil {
		return fmt.Errorf("space: format header: %w", err)
	}
	zero := make([]byte, l.classes*l.summaryWords*8)
	if err := vol.WriteMetaDirect(zero, l.summaryOff); err != nil {
		return fmt.Errorf("space: format summaries: %w", err)
	}
	if err := vol.Sync(); err != nil {
		return fmt.Errorf("space: format: %w", err)
	}
	return nil
}

// Open loads the allocator of an opened volume, reading only its header.
// It returns ErrNeedsRebuild (with a usable *Allocator to call Rebuild on)
// when an earlier Rebuild did not finish.
func Open(vol *volume.Volume) (*Allocator, error) {
	l, err := layoutOf(vol.Superblock())
	if err != nil {
		return nil, err
	}
	a := &Allocator{
		vol:        vol,
		l:          l,
		hdr:        newWords(l.stateOff, hwCounts+2*l.classes),
		summaries:  make([]*words, l.classes),
		summaryLow: make([]int, l.classes),
		entries:    make([]*entry, l.lpages),
	}
	b := make([]byte, len(a.hdr.w)*8)
	if err := vol.ReadMeta(b, l.stateOff); err != nil {
		return nil, fmt.Errorf("space: read header: %w", err)
	}
	a.hdr.decode(b)
	if a.hdr.w[hwMagic] != headerMagic {
		return nil, fmt.Errorf("space: header magic %#x: %w", a.hdr.w[hwMagic], ErrCorrupt)
	}
	if f := a.hdr.w[hwFrontier]; f > uint64(l.lpages) {
		return nil, fmt.Errorf("space: frontier %d beyond %d lpages: %w", f, l.lpages, ErrCorrupt)
	}
	if a.hdr.w[hwFlags]&flagRebuilding != 0 {
		return a, ErrNeedsRebuild
	}
	return a, nil
}

// Geometry facts callers need.
func (a *Allocator) SpageSize() int64 { return a.l.pageSize(0) }
func (a *Allocator) LpageSize() int64 { return a.l.lpageSize() }

func (a *Allocator) frontier() int             { return int(a.hdr.w[hwFrontier]) }
func (a *Allocator) allocCountIdx(c int) int   { return hwCounts + c }
func (a *Allocator) freeCountIdx(c int) int    { return hwCounts + a.l.classes + c }
func (a *Allocator) freePages(c int) uint64    { return a.hdr.w[a.freeCountIdx(c)] }
func (a *Allocator) usedPages(c int) uint64    { return a.hdr.w[a.allocCountIdx(c)] }
func (a *Allocator) untouchedLpages() uint64   { return uint64(a.l.lpages - a.frontier()) }
func (a *Allocator) addHdr(i int, delta int64) { a.setWord(a.hdr, i, a.hdr.w[i]+uint64(delta)) }

// setWord changes one word and marks it dirty. REQUIRES: a.mu held.
func (a *Allocator) setWord(ws *words, i int, v uint64) {
	ws.w[i] = v
	ws.dirty[i>>6] |= 1 << (i & 63)
	if !ws.listed {
		ws.listed = true
		a.dirty = append(a.dirty, ws)
	}
}

func (a *Allocator) setBit(ws *words, i int)   { a.setWord(ws, i>>6, ws.w[i>>6]|1<<(i&63)) }
func (a *Allocator) clearBit(ws *words, i int) { a.setWord(ws, i>>6, ws.w[i>>6]&^(1<<(i&63))) }

// summary returns class c's summary, reading it on first use.
func (a *Allocator) summary(c int) (*words, error) {
	if s := a.summaries[c]; s != nil {
		return s, nil
	}
	s := newWords(a.l.summaryOff+int64(c*a.l.summaryWords*8), a.l.summaryWords)
	b := make([]byte, a.l.summaryWords*8)
	if err := a.vol.ReadMeta(b, s.off); err != nil {
		return nil, fmt.Errorf("space: read summary of class %d: %w", c, err)
	}
	s.decode(b)
	a.summaries[c] = s
	return s, nil
}

// entryAt returns lpage lp's tree, reading it on first touch.
// REQUIRES: lp < frontier.
func (a *Allocator) entryAt(lp int) (*entry, error) {
	if e := a.entries[lp]; e != nil {
		return e, nil
	}
	n := 2 * a.l.entryWords
	e := &entry{words: *newWords(a.l.entryOff+int64(lp*n*8), n)}
	b := make([]byte, n*8)
	if err := a.vol.ReadMeta(b, e.off); err != nil {
		return nil, fmt.Errorf("space: read lpage %d: %w", lp, err)
	}
	e.decode(b)
	for node := 1; node < 1<<a.l.classes; node++ {
		if e.bit(node) {
			e.freeCount[a.l.classes-bits.Len(uint(node))]++
		}
	}
	a.entries[lp] = e
	return e, nil
}

func (a *Allocator) allocBit(node int) int { return a.l.entryWords*64 + node }

// markFree records node (class c) of lpage lp as a free page.
func (a *Allocator) markFree(lp int, e *entry, node, c int) error {
	a.setBit(&e.words, node)
	e.freeCount[c]++
	a.addHdr(a.freeCountIdx(c), 1)
	if e.freeCount[c] == 1 {
		s, err := a.summary(c)
		if err != nil {
			return err
		}
		a.setBit(s, lp)
		a.summaryLow[c] = min(a.summaryLow[c], lp>>6)
	}
	return nil
}

// unmarkFree takes node (class c) of lpage lp off the free set.
func (a *Allocator) unmarkFree(lp int, e *entry, node, c int) error {
	a.clearBit(&e.words, node)
	e.freeCount[c]--
	a.addHdr(a.freeCountIdx(c), -1)
	if e.freeCount[c] == 0 {
		s, err := a.summary(c)
		if err != nil {
			return err
		}
		a.clearBit(s, lp)
	}
	return nil
}

// lowestLpageWithFree returns the lowest lpage holding a free page of class
// c, or -1.
func (a *Allocator) lowestLpageWithFree(c int) (int, error) {
	s, err := a.summary(c)
	if err != nil {
		return -1, err
	}
	for i := a.summaryLow[c]; i < len(s.w); i++ {
		if s.w[i] != 0 {
			a.summaryLow[c] = i
			return i*64 + bits.TrailingZeros64(s.w[i]), nil
		}
	}
	a.summaryLow[c] = len(s.w)
	return -1, nil
}

// lowestFreeNode returns the lowest free node at depth d of e, or 0.
func lowestFreeNode(e *entry, d int) int {
	lo, hi := 1<<d, 1<<(d+1)
	if hi <= 64 {
		m := e.w[0] & (^uint64(0) << lo) & (^uint64(0) >> (64 - hi))
		if m == 0 {
			return 0
		}
		return bits.TrailingZeros64(m)
	}
	for i := lo >> 6; i < hi>>6; i++ {
		if e.w[i] != 0 {
			return i*64 + bits.TrailingZeros64(e.w[i])
		}
	}
	return 0
}

// takeFrontier initialises the never-used lpage at the frontier as one free
// lpage and returns it.
func (a *Allocator) takeFrontier() (int, *entry, error) {
	lp := a.frontier()
	n := 2 * a.l.entryWords
	e := &entry{words: *newWords(a.l.entryOff+int64(lp*n*8), n)}
	e.markAll()
	e.listed = true
	a.dirty = append(a.dirty, &e.words)
	a.entries[lp] = e
	a.setWord(a.hdr, hwFrontier, uint64(lp+1))
	return lp, e, a.markFree(lp, e, 1, a.l.classes-1)
}

// allocPage allocates one page of class c. The caller has checked that it
// fits (fits), so running out here means corrupt state.
func (a *Allocator) allocPage(c int) (Extent, error) {
	top := a.l.classes - 1
	for from := c; from <= top; from++ {
		if a.freePages(from) == 0 {
			if from < top || a.untouchedLpages() == 0 {
				continue
			}
		}
		lp, err := a.lowestLpageWithFree(from)
		if err != nil {
			return Extent{}, err
		}
		var e *entry
		if lp < 0 {
			// Only never-used lpages are left (every summary bit is below
			// the frontier); the frontier is the lowest of them.
			if from != top || a.untouchedLpages() == 0 {
				return Extent{}, fmt.Errorf("space: class %d counted free but none found: %w", from, ErrCorrupt)
			}
			lp, e, err = a.takeFrontier()
		} else {
			e, err = a.entryAt(lp)
		}
		if err != nil {
			return Extent{}, err
		}
		node := lowestFreeNode(e, a.l.depth(from))
		if node == 0 {
			return Extent{}, fmt.Errorf("space: lpage %d: summary says class %d is free, tree disagrees: %w", lp, from, ErrCorrupt)
		}
		if err := a.unmarkFree(lp, e, node, from); err != nil {
			return Extent{}, err
		}
		for k := from; k > c; k-- {
			// Keep the left half, free the right half.
			if err := a.markFree(lp, e, 2*node+1, k-1); err != nil {
				return Extent{}, err
			}
			node *= 2
		}
		a.setBit(&e.words, a.allocBit(node))
		a.addHdr(a.allocCountIdx(c), 1)
		return a.l.extentOf(lp, node), nil
	}
	return Extent{}, fmt.Errorf("space: no page of class %d: %w", c, ErrNoSpace)
}

// fits reports whether pages of the given classes (largest first) can all be
// allocated, by replaying allocPage's choices on the free counts alone.
func (a *Allocator) fits(classes []int) bool {
	var avail [maxClasses]uint64
	top := a.l.classes - 1
	for c := 0; c <= top; c++ {
		avail[c] = a.freePages(c)
	}
	avail[top] += a.untouchedLpages()
	for _, c := range classes {
		from := c
		for from <= top && avail[from] == 0 {
			from++
		}
		if from > top {
			return false
		}
		avail[from]--
		for k := from - 1; k >= c; k-- {
			avail[k]++
		}
	}
	return true
}

// Allocate returns the pages for a blob of size bytes, lpages first, then the
// tail's pages from largest to smallest. The change is in memory and in the
// next transaction; it is durable once Commit returns. On error nothing
// changed.
func (a *Allocator) Allocate(size int64) ([]Extent, error) {
	if size <= 0 {
		return nil, fmt.Errorf("space: allocate %d bytes: %w", size, ErrInvalidSize)
	}
	if size > int64(a.l.lpages)<<a.l.lpageShift {
		return nil, fmt.Errorf("space: allocate %d bytes, heap is %d: %w", size, int64(a.l.lpages)<<a.l.lpageShift, ErrNoSpace)
	}
	var planBuf [2 * maxClasses]int
	classes := a.l.plan(planBuf[:0], size)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failed != nil {
		return nil, a.failed
	}
	if !a.fits(classes) {
		return nil, fmt.Errorf("space: allocate %d bytes: %w", size, ErrNoSpace)
	}
	exts := make([]Extent, 0, len(classes))
	for _, c := range classes {
		e, err := a.allocPage(c)
		if err != nil {
			// fits said yes, so this is an I/O error or corruption
			// mid-change: memory can no longer be trusted.
			a.failed = fmt.Errorf("%w: %w", ErrFailed, err)
			return nil, a.failed
		}
		exts = append(exts, e)
	}
	return exts, nil
}

// Free returns pages handed out by Allocate, merging buddies. Either every
// extent is freed or, on error, none is.
func (a *Allocator) Free(exts []Extent) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failed != nil {
		return a.failed
	}
	type located struct{ lp, node, class int }
	var locBuf [2 * maxClasses]located
	locs := locBuf[:0]
	var seen map[Extent]struct{} // only for long lists; short ones are scanned
	for i, x := range exts {
		lp, node, class, err := a.l.locate(x)
		if err != nil {
			return err
		}
		dup := false
		if len(exts) <= 32 {
			dup = slices.Contains(exts[:i], x)
		} else {
			if seen == nil {
				seen = make(map[Extent]struct{}, len(exts))
			}
			_, dup = seen[x]
			seen[x] = struct{}{}
		}
		if dup {
			return fmt.Errorf("space: free %d+%d: listed twice: %w", x.Offset, x.Length, ErrDoubleFree)
		}
		if err := a.checkAllocated(lp, node); err != nil {
			return fmt.Errorf("space: free %d+%d: %w", x.Offset, x.Length, err)
		}
		locs = append(locs, located{lp, node, class})
	}
	for _, x := range locs {
		if err := a.freePage(x.lp, x.node, x.class); err != nil {
			a.failed = fmt.Errorf("%w: %w", ErrFailed, err)
			return a.failed
		}
	}
	return nil
}

// checkAllocated explains why node of lpage lp cannot be freed, or is nil.
func (a *Allocator) checkAllocated(lp, node int) error {
	if lp >= a.frontier() {
		return ErrDoubleFree // never-used lpages are free
	}
	e, err := a.entryAt(lp)
	if err != nil {
		return err
	}
	if e.bit(a.allocBit(node)) {
		return nil
	}
	for n := node; n >= 1; n >>= 1 {
		if e.bit(n) {
			return ErrDoubleFree
		}
	}
	return ErrNotAllocated
}

func (a *Allocator) freePage(lp, node, c int) error {
	e, err := a.entryAt(lp)
	if err != nil {
		return err
	}
	a.clearBit(&e.words, a.allocBit(node))
	a.addHdr(a.allocCountIdx(c), -1)
	for c < a.l.classes-1 && e.bit(node^1) {
		if err := a.unmarkFree(lp, e, node^1, c); err != nil {
			return err
		}
		node >>= 1
		c++
	}
	return a.markFree(lp, e, node, c)
}

// SetAppliedIndex records the Raft index the allocator state reflects; it
// becomes durable with the next Commit, atomically with the changes made
// before it.
func (a *Allocator) SetAppliedIndex(i uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.setWord(a.hdr, hwApplied, i)
}

// AppliedIndex returns the last index given to SetAppliedIndex (or loaded).
func (a *Allocator) AppliedIndex() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.hdr.w[hwApplied]
}

// Commit makes every change made before the call durable. Concurrent callers
// share journal transactions and fsyncs.
func (a *Allocator) Commit(ctx context.Context) error {
	a.mu.Lock()
	if a.failed != nil {
		a.mu.Unlock()
		return a.failed
	}
	a.sealLocked()
	last := a.last
	a.mu.Unlock()
	if last == nil {
		return nil
	}
	if err := last.Wait(ctx); err != nil {
		if ctx.Err() == nil {
			a.mu.Lock()
			if a.failed == nil {
				a.failed = fmt.Errorf("%w: journal: %w", ErrFailed, err)
			}
			a.mu.Unlock()
		}
		return fmt.Errorf("space: commit: %w", err)
	}
	return nil
}

// Submit hands every change made so far to the journal without waiting
// for it, as a lazy transaction (see volume.Journal.SubmitLazy): it is
// written with later ones, sharing their fsync; a later Commit waits for
// it. Use it when durability comes from elsewhere (the Raft log) and only
// the order of the allocator's own transactions matters.
func (a *Allocator) Submit() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.failed != nil {
		return a.failed
	}
	a.sealLockedWith(a.vol.Journal().SubmitLazy)
	if a.last != nil {
		select {
		case <-a.last.Done(): // refused at once (e.g. too large for the log)
			if err := a.last.Wait(context.Background()); err != nil {
				a.failed = fmt.Errorf("%w: journal: %w", ErrFailed, err)
				return a.failed
			}
		default:
		}
	}
	if err := a.vol.Journal().Err(); err != nil {
		// Nothing submitted from now on reaches the device.
		a.failed = fmt.Errorf("%w: journal: %w", ErrFailed, err)
		return a.failed
	}
	return nil
}

// sealLocked turns the dirty words into one journal transaction and submits
// it. REQUIRES: a.mu held.
func (a *Allocator) sealLocked() { a.sealLockedWith(a.vol.Journal().Submit) }

func (a *Allocator) sealLockedWith(submit func(*volume.Txn) *volume.Commit) {
	if len(a.dirty) == 0 {
		return
	}
	a.txn.Reset()
	for _, ws := range a.dirty {
		a.buf = ws.appendRuns(&a.txn, a.buf)
	}
	clear(a.dirty)
	a.dirty = a.dirty[:0]
	a.last = submit(&a.txn)
}

// FormatVolume formats dev as a volume sized for the allocator, writes an
// empty allocator into it and returns the opened volume, which the caller
// owns. opts.StateSize is computed here.
func FormatVolume(dev volume.Device, opts volume.FormatOptions) (*volume.Volume, error) {
	size, err := StateSize(opts.Geometry)
	if err != nil {
		return nil, err
	}
	opts.StateSize = size
	if _, err := volume.Format(dev, opts); err != nil {
		return nil, err
	}
	vol, err := volume.Open(dev, &opts.Geometry)
	if err != nil {
		return nil, err
	}
	if err := Format(vol); err != nil {
		vol.Close()
		return nil, err
	}
	return vol, nil
}
