package space

import (
	"fmt"
	"math/bits"

	"github.com/blobnode/blobnode/volume"
)

const (
	headerSize         = 4096
	headerMagic uint64 = 0x3145434150534e42 // "BNSPACE1" little-endian

	// Header word indexes.
	hwMagic    = 0
	hwFrontier = 1
	hwApplied  = 2
	hwFlags    = 3
	hwCounts   = 4 // allocated[K] then free[K]

	flagRebuilding = 1

	// maxClasses bounds K (the tree of an lpage has 2^K-1 nodes).
	maxClasses = 16
)

// layout is where each piece of allocator state lives, derived from the
// superblock alone.
type layout struct {
	spageShift uint8
	lpageShift uint8
	classes    int   // K
	lpages     int   // nL: lpages in the heap
	heapOffset int64 // absolute
	stateOff   int64 // absolute
	stateSize  int64

	summaryWords int   // SW: words per class summary
	summaryOff   int64 // absolute
	entryWords   int   // W: words per bitmap (free or allocated) of one entry
	entryOff     int64 // absolute
}

type sizing struct {
	classes, summaryWords, entryWords int
	summaryRel, entryRel, size        int64
}

func sizeFor(g volume.Geometry) (sizing, error) {
	if g.LpageShift < g.SpageShift || int(g.LpageShift-g.SpageShift)+1 > maxClasses {
		return sizing{}, fmt.Errorf("space: %d classes from spage 2^%d to lpage 2^%d (at most %d): %w",
			int(g.LpageShift)-int(g.SpageShift)+1, g.SpageShift, g.LpageShift, maxClasses, volume.ErrBadGeometry)
	}
	k := int(g.LpageShift-g.SpageShift) + 1
	maxLpages := g.VolumeSize >> g.LpageShift
	sw := int((maxLpages + 63) / 64)
	w := max(1, (1<<k)/64)
	s := sizing{classes: k, summaryWords: sw, entryWords: w}
	s.summaryRel = headerSize
	s.entryRel = roundUp(s.summaryRel+int64(k*sw*8), 4096)
	s.size = roundUp(s.entryRel+maxLpages*int64(2*w*8), 4096)
	return s, nil
}

// StateSize is the size of the state region the allocator needs for g; pass
// it to volume.Format.
func StateSize(g volume.Geometry) (int64, error) {
	s, err := sizeFor(g)
	if err != nil {
		return 0, err
	}
	return s.size, nil
}

func layoutOf(sb volume.Superblock) (layout, error) {
	s, err := sizeFor(sb.Geometry)
	if err != nil {
		return layout{}, err
	}
	if sb.Layout.StateSize < s.size {
		return layout{}, fmt.Errorf("space: state region of %d bytes, need %d: %w", sb.Layout.StateSize, s.size, ErrCorrupt)
	}
	return layout{
		spageShift:   sb.Geometry.SpageShift,
		lpageShift:   sb.Geometry.LpageShift,
		classes:      s.classes,
		lpages:       int(sb.Layout.HeapSize >> sb.Geometry.LpageShift),
		heapOffset:   sb.Layout.HeapOffset,
		stateOff:     sb.Layout.StateOffset,
		stateSize:    s.size,
		summaryWords: s.summaryWords,
		summaryOff:   sb.Layout.StateOffset + s.summaryRel,
		entryWords:   s.entryWords,
		entryOff:     sb.Layout.StateOffset + s.entryRel,
	}, nil
}

func roundUp(v, to int64) int64 { return (v + to - 1) / to * to }

func (l *layout) pageSize(class int) int64 { return 1 << (int(l.spageShift) + class) }
func (l *layout) lpageSize() int64         { return 1 << l.lpageShift }

// depth of class c's nodes in an lpage tree.
func (l *layout) depth(class int) int { return l.classes - 1 - class }

// Extent is a run of heap bytes at an absolute device offset: always exactly
// one page (a power of two from spage to lpage, aligned to its size).
type Extent struct {
	Offset int64
	Length int64
}

func (l *layout) extentOf(lp, node int) Extent {
	d := bits.Len(uint(node)) - 1
	class := l.classes - 1 - d
	idx := int64(node - 1<<d)
	size := l.pageSize(class)
	return Extent{Offset: l.heapOffset + int64(lp)<<l.lpageShift + idx*size, Length: size}
}

// locate maps an extent to its lpage, tree node and class.
func (l *layout) locate(e Extent) (lp, node, class int, err error) {
	if e.Length <= 0 || e.Length&(e.Length-1) != 0 || e.Length < l.pageSize(0) || e.Length > l.lpageSize() {
		return 0, 0, 0, fmt.Errorf("space: extent %d+%d: length is not a page size: %w", e.Offset, e.Length, ErrBadExtent)
	}
	rel := e.Offset - l.heapOffset
	if rel < 0 || rel >= int64(l.lpages)<<l.lpageShift {
		return 0, 0, 0, fmt.Errorf("space: extent %d+%d: outside the heap: %w", e.Offset, e.Length, ErrBadExtent)
	}
	if rel&(e.Length-1) != 0 {
		return 0, 0, 0, fmt.Errorf("space: extent %d+%d: offset not aligned to its length: %w", e.Offset, e.Length, ErrBadExtent)
	}
	class = bits.Len64(uint64(e.Length)) - 1 - int(l.spageShift)
	d := l.depth(class)
	lp = int(rel >> l.lpageShift)
	within := rel & (l.lpageSize() - 1)
	node = 1<<d + int(within/e.Length)
	return lp, node, class, nil
}

// plan appends to dst the classes of the pages a blob of size bytes needs,
// largest first: floor(size/lpage) lpages, then the tail rounded up to
// spages.
func (l *layout) plan(dst []int, size int64) []int {
	lps := size >> l.lpageShift
	spage := l.pageSize(0)
	tail := (size&(l.lpageSize()-1) + spage - 1) &^ (spage - 1)
	if tail == l.lpageSize() {
		lps++
		tail = 0
	}
	classes := dst
	for range lps {
		classes = append(classes, l.classes-1)
	}
	for c := l.classes - 2; c >= 0; c-- {
		if tail&l.pageSize(c) != 0 {
			classes = append(classes, c)
		}
	}
	return classes
}
