package volume

import (
	"fmt"
	"strings"
)

// Placement is everything that decides at which device offset an
// allocation lands: catalog extents are absolute offsets, so two volumes
// hold a group's blobs at the same offsets only if their placements are
// equal. Page sizes and volume size alone are not enough: format versions
// 1 and 2 put the heap 8 KiB apart, and the journal size moves the heap
// too. It is the layout a group records and checks (at Init, snapshot
// restore and join).
type Placement struct {
	Version     uint32 // format version
	Geometry    Geometry
	JournalSize int64
	HeapOffset  int64
	HeapSize    int64
}

// Placement returns the volume's placement.
func (sb Superblock) Placement() Placement {
	return Placement{
		Version:     sb.Version,
		Geometry:    sb.Geometry,
		JournalSize: sb.Layout.JournalSize,
		HeapOffset:  sb.Layout.HeapOffset,
		HeapSize:    sb.Layout.HeapSize,
	}
}

// String is the placement's frozen text form, as groups record it:
// "format=3 spage=4096 lpage=16777216 size=1073741824 journal=16777216 heap=17838080+1056964608".
func (p Placement) String() string {
	return fmt.Sprintf("format=%d %v journal=%d heap=%d+%d", p.Version, p.Geometry, p.JournalSize, p.HeapOffset, p.HeapSize)
}

// ParsePlacement parses a placement's text form. It also accepts the bare
// Geometry text that releases before format 3 recorded ("spage=4096
// lpage=16777216 size=1073741824"), as a partial placement: only Geometry
// set, Version 0 (see Partial).
func ParsePlacement(s string) (p Placement, err error) {
	if !strings.HasPrefix(s, "format=") {
		g, err := parseGeometry(s)
		if err != nil {
			return Placement{}, err
		}
		return Placement{Geometry: g}, nil
	}
	var spage, lpage int64
	n, err := fmt.Sscanf(s, "format=%d spage=%d lpage=%d size=%d journal=%d heap=%d+%d",
		&p.Version, &spage, &lpage, &p.Geometry.VolumeSize, &p.JournalSize, &p.HeapOffset, &p.HeapSize)
	if err != nil || n != 7 {
		return Placement{}, fmt.Errorf("volume: placement %q: %w", s, err)
	}
	if p.Geometry, err = parseGeometry(fmt.Sprintf("spage=%d lpage=%d size=%d", spage, lpage, p.Geometry.VolumeSize)); err != nil {
		return Placement{}, err
	}
	if p.Version == 0 || p.String() != s {
		return Placement{}, fmt.Errorf("volume: placement %q is not in canonical form", s)
	}
	return p, nil
}

// Partial reports whether p is a partial placement, parsed from the bare
// geometry text of releases before format 3: only its Geometry is known.
func (p Placement) Partial() bool { return p.Version == 0 }

// parseGeometry parses Geometry.String's form.
func parseGeometry(s string) (Geometry, error) {
	var spage, lpage, size int64
	if _, err := fmt.Sscanf(s, "spage=%d lpage=%d size=%d", &spage, &lpage, &size); err != nil {
		return Geometry{}, fmt.Errorf("volume: geometry %q: %w", s, err)
	}
	g := Geometry{SpageShift: shiftOf(spage), LpageShift: shiftOf(lpage), VolumeSize: size}
	if g.SpageSize() != spage || g.LpageSize() != lpage || g.String() != s {
		return Geometry{}, fmt.Errorf("volume: geometry %q: page sizes are not powers of two in range: %w", s, ErrBadGeometry)
	}
	if err := g.Validate(); err != nil {
		return Geometry{}, err
	}
	return g, nil
}

// shiftOf returns log2(n) for a power of two n up to 1<<MaxLpageShift, and
// 0 otherwise.
func shiftOf(n int64) uint8 {
	for s := uint8(0); s <= MaxLpageShift; s++ {
		if int64(1)<<s == n {
			return s
		}
	}
	return 0
}

// Matches reports whether volumes of placements p and q put every
// allocation at the same offsets. Where either is partial only the
// geometry can be compared (a group recorded by an earlier release).
func (p Placement) Matches(q Placement) bool {
	if p.Partial() || q.Partial() {
		return p.Geometry == q.Geometry
	}
	return p == q
}
