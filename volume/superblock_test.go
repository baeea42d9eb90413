package volume

import (
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestSuperblockRoundTrip(t *testing.T) {
	for _, opts := range []FormatOptions{
		smallOpts(),
		mediumOpts(),
		{Geometry: Geometry{SpageShift: 20, LpageShift: 30, VolumeSize: 3<<30 + 12345}, StateSize: 1<<20 + 1},
		{Geometry: Geometry{SpageShift: 12, LpageShift: 27, VolumeSize: 1 << 40}, JournalSize: 5000},
	} {
		l, err := ComputeLayout(opts)
		if err != nil {
			t.Fatalf("layout %+v: %v", opts, err)
		}
		sb := Superblock{Version: FormatVersion, UUID: [16]byte{0xde, 0xad, 15: 0xef}, Geometry: opts.Geometry, Layout: l}
		b := EncodeSuperblock(sb)
		if len(b) != SuperblockSize {
			t.Fatalf("encoded %d bytes", len(b))
		}
		got, err := DecodeSuperblock(b)
		if err != nil {
			t.Fatalf("decode %+v: %v", sb, err)
		}
		if got != sb {
			t.Fatalf("round trip: got %+v, want %+v", got, sb)
		}
	}
}

func TestComputeLayout(t *testing.T) {
	opts := FormatOptions{Geometry: Geometry{SpageShift: 12, LpageShift: 20, VolumeSize: 1<<30 + 63}, StateSize: 5000}
	l, err := ComputeLayout(opts)
	if err != nil {
		t.Fatal(err)
	}
	want := Layout{
		JournalOffset: 3 * 4096, JournalSize: 16 << 20, // after the superblock and 2 mark pages; 1 GiB / 64
		StateOffset: 3*4096 + 16<<20, StateSize: 8192,
		HeapOffset: 3*4096 + 16<<20 + 8192,
	}
	want.HeapSize = (opts.Geometry.VolumeSize - want.HeapOffset) >> 20 << 20
	if l != want {
		t.Fatalf("layout %+v, want %+v", l, want)
	}
	if err := checkLayout(opts.Geometry, l, FormatVersion); err != nil {
		t.Fatal(err)
	}
	// Default journal size is clamped to [1 MiB, 64 MiB].
	for size, wantJ := range map[int64]int64{8 << 20: 1 << 20, 1 << 40: 64 << 20} {
		l, err := ComputeLayout(FormatOptions{Geometry: Geometry{SpageShift: 12, LpageShift: 12, VolumeSize: size}})
		if err != nil || l.JournalSize != wantJ {
			t.Errorf("volume %d: journal %d (%v), want %d", size, l.JournalSize, err, wantJ)
		}
	}
}

// reseal recomputes the superblock CRC after a test edits b.
func reseal(b []byte) []byte {
	binary.LittleEndian.PutUint32(b[superCRCOff:], crc32c(b[:superCRCOff]))
	return b
}

func TestDecodeSuperblockErrors(t *testing.T) {
	opts := mediumOpts()
	l, err := ComputeLayout(opts)
	if err != nil {
		t.Fatal(err)
	}
	good := EncodeSuperblock(Superblock{Version: FormatVersion, Geometry: opts.Geometry, Layout: l})
	edit := func(f func(b []byte)) []byte {
		b := append([]byte(nil), good...)
		f(b)
		return b
	}
	put64 := func(off int, v uint64) func([]byte) {
		return func(b []byte) { binary.LittleEndian.PutUint64(b[off:], v); reseal(b) }
	}
	for _, tc := range []struct {
		name string
		b    []byte
		want error
	}{
		{"empty", nil, ErrTruncated},
		{"short", good[:superEncoded-1], ErrTruncated},
		{"zeros", make([]byte, SuperblockSize), ErrNotVolume},
		{"magic", edit(func(b []byte) { b[0] = 'b' }), ErrNotVolume},
		{"version", edit(func(b []byte) { binary.LittleEndian.PutUint32(b[8:], FormatVersion+1); reseal(b) }), ErrUnsupportedVersion},
		{"version 0", edit(func(b []byte) { binary.LittleEndian.PutUint32(b[8:], 0); reseal(b) }), ErrUnsupportedVersion},
		// Version 1 put the journal right after the superblock.
		{"version 1 layout", edit(func(b []byte) { binary.LittleEndian.PutUint32(b[8:], 1); reseal(b) }), ErrBadGeometry},
		{"crc", edit(func(b []byte) { b[12] ^= 1 }), ErrChecksum},
		{"crc field", edit(func(b []byte) { b[superCRCOff] ^= 1 }), ErrChecksum},
		{"spage small", edit(func(b []byte) { b[36], b[37] = 11, 12; reseal(b) }), ErrBadGeometry},
		{"lpage below spage", edit(func(b []byte) { b[37] = 11; reseal(b) }), ErrBadGeometry},
		{"lpage range", edit(func(b []byte) { b[37] = 28; reseal(b) }), ErrBadGeometry},
		{"volume size negative", edit(put64(28, 1<<63)), ErrBadGeometry},
		{"journal offset", edit(put64(40, 8192)), ErrBadGeometry},
		{"journal unaligned", edit(put64(48, uint64(l.JournalSize)+1)), ErrBadGeometry},
		{"state overlaps", edit(put64(56, uint64(l.StateOffset)-4096)), ErrBadGeometry},
		{"heap past end", edit(put64(80, uint64(l.HeapSize)+1<<16)), ErrBadGeometry},
		{"heap short", edit(put64(80, uint64(l.HeapSize)-1<<16)), ErrBadGeometry},
		{"heap not lpages", edit(put64(80, uint64(l.HeapSize)-4096)), ErrBadGeometry},
		{"huge bound", edit(put64(72, 1<<63-4096)), ErrBadGeometry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeSuperblock(tc.b)
			if !errors.Is(err, tc.want) {
				t.Fatalf("decode: %v, want %v", err, tc.want)
			}
		})
	}
}

func TestFormatRefusesBadGeometry(t *testing.T) {
	ok := mediumOpts()
	for _, tc := range []struct {
		name string
		edit func(o *FormatOptions)
		want error
	}{
		{"spage 11", func(o *FormatOptions) { o.Geometry.SpageShift = 11 }, ErrBadGeometry},
		{"spage 21", func(o *FormatOptions) { o.Geometry.SpageShift, o.Geometry.LpageShift = 21, 21 }, ErrBadGeometry},
		{"lpage below spage", func(o *FormatOptions) { o.Geometry.SpageShift, o.Geometry.LpageShift = 13, 12 }, ErrBadGeometry},
		{"lpage above spage+15", func(o *FormatOptions) { o.Geometry.LpageShift = 28 }, ErrBadGeometry},
		{"lpage above 30", func(o *FormatOptions) { o.Geometry.SpageShift, o.Geometry.LpageShift = 20, 31 }, ErrBadGeometry},
		{"zero volume", func(o *FormatOptions) { o.Geometry.VolumeSize = 0 }, ErrBadGeometry},
		{"no room for one lpage", func(o *FormatOptions) { o.Geometry.VolumeSize = 4096 + 1<<20 + 64<<10 + 1<<16 - 1 }, ErrBadGeometry},
		{"state fills the volume", func(o *FormatOptions) { o.StateSize = 4<<20 - 4096 - 1<<20 }, ErrBadGeometry},
		{"negative state", func(o *FormatOptions) { o.StateSize = -1 }, ErrBadGeometry},
		{"journal bigger than volume", func(o *FormatOptions) { o.JournalSize = 8 << 20 }, ErrBadGeometry},
		{"negative journal", func(o *FormatOptions) { o.JournalSize = -4096 }, ErrBadGeometry},
		{"device too small", func(o *FormatOptions) { o.Geometry.VolumeSize = 8 << 20 }, ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := ok
			tc.edit(&o)
			dev := NewMemDevice(4<<20, 1)
			_, err := Format(dev, o)
			if !errors.Is(err, tc.want) {
				t.Fatalf("format: %v, want %v", err, tc.want)
			}
			if dev.Writes() != 0 {
				t.Fatalf("refused format wrote %d times", dev.Writes())
			}
		})
	}
	// The smallest volume that fits is accepted.
	o := ok
	o.Geometry.VolumeSize = journalOffset(FormatVersion) + 1<<20 + 64<<10 + 1<<16
	if _, err := Format(NewMemDevice(o.Geometry.VolumeSize, 1), o); err != nil {
		t.Fatalf("minimal volume: %v", err)
	}
}

// TestOpenErrors checks each Open error on real files.
func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	opts := mediumOpts()
	g := opts.Geometry
	// formatted creates a formatted volume file, applies edit to it, and
	// returns its path.
	formatted := func(name string, edit func(f *os.File)) string {
		t.Helper()
		path := filepath.Join(dir, name)
		dev, err := CreateFileDevice(path, g.VolumeSize)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Format(dev, opts); err != nil {
			t.Fatal(err)
		}
		if err := dev.Close(); err != nil {
			t.Fatal(err)
		}
		if edit != nil {
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			edit(f)
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
		}
		return path
	}
	patchSuper := func(f func(b []byte)) func(*os.File) {
		return func(file *os.File) {
			b := make([]byte, SuperblockSize)
			if _, err := file.ReadAt(b, 0); err != nil {
				t.Fatal(err)
			}
			f(b)
			if _, err := file.WriteAt(b, 0); err != nil {
				t.Fatal(err)
			}
		}
	}
	other := g
	other.LpageShift = 20
	for _, tc := range []struct {
		name   string
		path   string
		expect *Geometry
		want   error
	}{
		{"never formatted", func() string {
			p := filepath.Join(dir, "raw")
			d, err := CreateFileDevice(p, g.VolumeSize)
			if err != nil {
				t.Fatal(err)
			}
			_ = d.Close()
			return p
		}(), nil, ErrNotVolume},
		{"version", formatted("version", patchSuper(func(b []byte) { binary.LittleEndian.PutUint32(b[8:], 7); reseal(b) })), nil, ErrUnsupportedVersion},
		{"checksum", formatted("crc", patchSuper(func(b []byte) { b[30] ^= 0x40 })), nil, ErrChecksum},
		{"geometry", formatted("geom", nil), &other, ErrGeometryMismatch},
		{"truncated", formatted("trunc", func(f *os.File) { _ = f.Truncate(g.VolumeSize - 4096) }), nil, ErrTruncated},
		{"shorter than superblock", formatted("tiny", func(f *os.File) { _ = f.Truncate(100) }), nil, ErrTruncated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev, err := OpenFileDevice(tc.path)
			if err != nil {
				t.Fatal(err)
			}
			defer dev.Close()
			v, err := Open(dev, tc.expect)
			if err == nil {
				_ = v.Close()
				t.Fatalf("open succeeded, want %v", tc.want)
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("open: %v, want %v", err, tc.want)
			}
			if tc.want == ErrGeometryMismatch && (!strings.Contains(err.Error(), g.String()) || !strings.Contains(err.Error(), other.String())) {
				t.Fatalf("mismatch error %q does not name both geometries", err)
			}
		})
	}
	// The same file opens with the right expectation.
	dev, err := OpenFileDevice(formatted("good", nil))
	if err != nil {
		t.Fatal(err)
	}
	v, err := Open(dev, &g)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
}
