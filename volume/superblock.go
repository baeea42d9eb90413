package volume

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
)

// Frozen superblock format; see the package documentation.
const (
	// SuperblockSize is the space reserved for the superblock at offset 0.
	SuperblockSize = 4096
	// FormatVersion is the on-disk format version this code writes. It also
	// reads version 2, whose journal header slots share one page (see
	// journalSlots), and version 1, whose data mark also lives in the
	// superblock's page (see markSlots) and whose journal starts right
	// after the superblock.
	FormatVersion  = 3
	oldestReadable = 1

	superMagic   = "BLOBNODE"
	superCRCOff  = 88 // CRC32C over bytes [0, superCRCOff)
	superEncoded = superCRCOff + 4

	// regionAlign is the alignment of every region in the layout.
	regionAlign = 4096
)

// Allowed page shifts.
const (
	MinSpageShift = 12 // 4 KiB
	MaxSpageShift = 20 // 1 MiB
	MaxLpageShift = 30 // 1 GiB
	MaxClasses    = 16 // LpageShift - SpageShift <= MaxClasses-1
)

// crc32c returns the CRC-32C (Castagnoli) of b, the checksum of every
// on-disk structure.
func crc32c(b []byte) uint32 {
	return crc32.Checksum(b, crc32.MakeTable(crc32.Castagnoli)) // MakeTable caches the Castagnoli table
}

// Geometry is fixed at format time and must be identical on every node of a
// group.
type Geometry struct {
	SpageShift uint8 // smallest page = 1<<SpageShift bytes; 12..20 allowed (4 KiB..1 MiB)
	LpageShift uint8 // largest page; SpageShift <= LpageShift <= SpageShift+15, LpageShift <= 30
	VolumeSize int64 // whole file
}

// SpageSize returns the smallest page size in bytes.
func (g Geometry) SpageSize() int64 { return 1 << g.SpageShift }

// LpageSize returns the largest page size in bytes.
func (g Geometry) LpageSize() int64 { return 1 << g.LpageShift }

// Validate checks the page shifts and that VolumeSize is positive. It does
// not check that the regions fit; ComputeLayout does.
func (g Geometry) Validate() error {
	switch {
	case g.SpageShift < MinSpageShift || g.SpageShift > MaxSpageShift:
		return fmt.Errorf("volume: spage shift %d outside [%d, %d]: %w", g.SpageShift, MinSpageShift, MaxSpageShift, ErrBadGeometry)
	case g.LpageShift < g.SpageShift || int(g.LpageShift) > int(g.SpageShift)+MaxClasses-1:
		return fmt.Errorf("volume: lpage shift %d outside [%d, %d]: %w", g.LpageShift, g.SpageShift, int(g.SpageShift)+MaxClasses-1, ErrBadGeometry)
	case g.LpageShift > MaxLpageShift:
		return fmt.Errorf("volume: lpage shift %d above %d: %w", g.LpageShift, MaxLpageShift, ErrBadGeometry)
	case g.VolumeSize <= 0:
		return fmt.Errorf("volume: volume size %d: %w", g.VolumeSize, ErrBadGeometry)
	}
	return nil
}

func (g Geometry) String() string {
	return fmt.Sprintf("spage=%d lpage=%d size=%d", g.SpageSize(), g.LpageSize(), g.VolumeSize)
}

// Layout places the regions. All offsets are absolute in the device and
// multiples of 4096.
type Layout struct {
	JournalOffset, JournalSize int64
	StateOffset, StateSize     int64
	HeapOffset, HeapSize       int64 // HeapSize is a multiple of the lpage size, >= 1 lpage
}

// Superblock is the decoded volume header at offset 0.
type Superblock struct {
	Version  uint32
	UUID     [16]byte
	Geometry Geometry
	Layout   Layout
}

// EncodeSuperblock returns the SuperblockSize-byte encoding of sb, CRC
// included. It encodes what it is given; Format and DecodeSuperblock are
// the places that validate.
func EncodeSuperblock(sb Superblock) []byte {
	b := make([]byte, SuperblockSize)
	le := binary.LittleEndian
	copy(b[0:8], superMagic)
	le.PutUint32(b[8:12], sb.Version)
	copy(b[12:28], sb.UUID[:])
	le.PutUint64(b[28:36], uint64(sb.Geometry.VolumeSize))
	b[36] = sb.Geometry.SpageShift
	b[37] = sb.Geometry.LpageShift
	// b[38:40] padding, zero.
	l := sb.Layout
	for i, v := range []int64{l.JournalOffset, l.JournalSize, l.StateOffset, l.StateSize, l.HeapOffset, l.HeapSize} {
		le.PutUint64(b[40+8*i:], uint64(v))
	}
	le.PutUint32(b[superCRCOff:], crc32c(b[:superCRCOff]))
	return b
}

// DecodeSuperblock decodes and validates a superblock: magic, version, CRC,
// geometry ranges and layout consistency (regions in order, adjacent,
// aligned, inside VolumeSize, heap a whole number of lpages). Bytes after
// the CRC are ignored. It never panics.
func DecodeSuperblock(b []byte) (Superblock, error) {
	var sb Superblock
	if len(b) < superEncoded {
		return sb, fmt.Errorf("volume: superblock needs %d bytes, have %d: %w", superEncoded, len(b), ErrTruncated)
	}
	if string(b[0:8]) != superMagic {
		return sb, ErrNotVolume
	}
	le := binary.LittleEndian
	sb.Version = le.Uint32(b[8:12])
	if sb.Version < oldestReadable || sb.Version > FormatVersion {
		return sb, fmt.Errorf("volume: superblock version %d (this code reads %d to %d): %w", sb.Version, oldestReadable, FormatVersion, ErrUnsupportedVersion)
	}
	if got, want := crc32c(b[:superCRCOff]), le.Uint32(b[superCRCOff:]); got != want {
		return sb, fmt.Errorf("volume: superblock crc %08x, stored %08x: %w", got, want, ErrChecksum)
	}
	copy(sb.UUID[:], b[12:28])
	sb.Geometry = Geometry{
		VolumeSize: int64(le.Uint64(b[28:36])),
		SpageShift: b[36],
		LpageShift: b[37],
	}
	var f [6]int64
	for i := range f {
		f[i] = int64(le.Uint64(b[40+8*i:]))
	}
	sb.Layout = Layout{f[0], f[1], f[2], f[3], f[4], f[5]}
	if err := sb.Geometry.Validate(); err != nil {
		return sb, err
	}
	if err := checkLayout(sb.Geometry, sb.Layout, sb.Version); err != nil {
		return sb, err
	}
	return sb, nil
}

// checkLayout verifies what ComputeLayout guarantees, without overflow on
// arbitrary input.
func checkLayout(g Geometry, l Layout, version uint32) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("volume: layout: "+format+": %w", append(a, ErrBadGeometry)...)
	}
	for _, v := range []int64{l.JournalOffset, l.JournalSize, l.StateOffset, l.StateSize, l.HeapOffset, l.HeapSize} {
		if v < 0 || v > g.VolumeSize {
			return bad("region bound %d outside volume of %d bytes", v, g.VolumeSize)
		}
		if v%regionAlign != 0 {
			return bad("region bound %d not a multiple of %d", v, regionAlign)
		}
	}
	lpage := g.LpageSize()
	switch {
	case l.JournalOffset != journalOffset(version):
		return bad("journal at %d, want %d", l.JournalOffset, journalOffset(version))
	case l.JournalSize < minJournalSize(version):
		return bad("journal of %d bytes, minimum %d", l.JournalSize, minJournalSize(version))
	case l.StateOffset != l.JournalOffset+l.JournalSize:
		return bad("state region at %d, want %d", l.StateOffset, l.JournalOffset+l.JournalSize)
	case l.HeapOffset != l.StateOffset+l.StateSize:
		return bad("heap at %d, want %d", l.HeapOffset, l.StateOffset+l.StateSize)
	case l.HeapSize < lpage || l.HeapSize%lpage != 0:
		return bad("heap of %d bytes is not a positive multiple of the lpage (%d)", l.HeapSize, lpage)
	case l.HeapSize > g.VolumeSize-l.HeapOffset:
		return bad("heap [%d,+%d) past the volume end %d", l.HeapOffset, l.HeapSize, g.VolumeSize)
	case g.VolumeSize-l.HeapOffset-l.HeapSize >= lpage:
		return bad("heap of %d bytes leaves a whole lpage unused", l.HeapSize)
	}
	return nil
}
