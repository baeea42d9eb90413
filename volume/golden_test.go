package volume_test

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/binary"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/blobnode/blobnode/space"
	"github.com/blobnode/blobnode/volume"
)

// The golden volumes in testdata/format2-*.blob.gz were written by the last
// format-2 release, faf62a3^ (09afc03), not by this code: a throwaway
// program built in a worktree at that commit (never committed) and run
// once. It made two 2 MiB volumes of geometry spage=4096 lpage=65536
// size=2097152 through space.FormatVolume with FormatOptions{Geometry,
// UUID} (the node's format path, so the default 1 MiB journal), fixed
// UUIDs "golden-f2-clean!" and "golden-f2-crash!", and a data mark source
// returning the index of the last blob written. Then it played these
// entries as the state machine does: Allocate (or Free),
// SetAppliedIndex(index), Submit; a put's bytes (goldenPattern) written
// with Volume.WriteAt across its extents in order:
//
//	1 put 102400 bytes, 2 put 4096, 3 put 20000, 4 free entry 2's blob,
//	5 put 8192; then SyncData and Commit (FSM.Sync).
//
// format2-clean: the entries above on a CreateFileDevice file, then Close.
// Its newest journal header (generation 2) is slot B at journal +512; the
// log (one record, seq 1) starts at journal +4096.
// format2-unclean: the entries above on a MemDevice zero-filled first (so
// that it compresses), then entry 6, a put of 12288 bytes, as Allocate,
// write, SyncData, SetAppliedIndex(6), Commit, and a power cut
// (MemDevice.Crash with CrashDropAll) before any checkpoint; the image is
// the device read whole after the crash. Its allocator header on the
// device still says applied index 5 and entry 6's allocation exists only
// in the log, so opening must replay both records (seq 1 and 2) from the
// format-2 log area at journal +4096, after slot A (generation 1) at +0.
// The extents below, and next (what that release's allocator chose for 24
// KiB more, opened from a copy of the image), are what the program
// printed. Each image was gzipped at best compression. To regenerate,
// write the same program again at faf62a3^ and replace the files; never
// regenerate them with this code, which would prove nothing.
type goldenVolume struct {
	file     string
	uuid     string
	mark     uint64 // DataMark
	applied  uint64 // the allocator's applied index
	replayed uint64 // records Open replays
	blobs    []goldenBlob
	next     []space.Extent // the old release's choice for 24 KiB
}

type goldenBlob struct {
	index int
	size  int
	exts  []space.Extent
}

var goldenCleanBlobs = []goldenBlob{
	{1, 102400, []space.Extent{ext(1073152, 65536), ext(1138688, 32768), ext(1171456, 4096)}},
	{3, 20000, []space.Extent{ext(1187840, 16384), ext(1179648, 4096)}},
	{5, 8192, []space.Extent{ext(1204224, 8192)}},
}

var goldenVolumes = []goldenVolume{
	{
		file: "format2-clean.blob.gz", uuid: "golden-f2-clean!", mark: 5, applied: 5,
		blobs: goldenCleanBlobs,
		next:  []space.Extent{ext(1220608, 16384), ext(1212416, 8192)},
	},
	{
		file: "format2-unclean.blob.gz", uuid: "golden-f2-crash!", mark: 6, applied: 6, replayed: 2,
		// Entry 6 takes entry 2's freed spage.
		blobs: append(slices.Clone(goldenCleanBlobs), goldenBlob{6, 12288, []space.Extent{ext(1212416, 8192), ext(1175552, 4096)}}),
		next:  []space.Extent{ext(1220608, 16384), ext(1236992, 8192)},
	},
}

// Format 2 as that release laid out this geometry.
var goldenPlacement = volume.Placement{
	Version:     2,
	Geometry:    volume.Geometry{SpageShift: 12, LpageShift: 16, VolumeSize: 2 << 20},
	JournalSize: 1 << 20,
	HeapOffset:  1073152,
	HeapSize:    983040,
}

const (
	goldenJournalOffset = 12288   // after the superblock and two data mark pages
	goldenStateOffset   = 1060864 // after the journal
)

// goldenPattern is blob index's content: byte i is byte(i%251) ^ byte(index).
func goldenPattern(index, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i%251) ^ byte(index)
	}
	return b
}

// TestGoldenFormat2 opens volumes written by the last format-2 release
// with today's code: the superblock and layout are format 2's, the blobs'
// bytes are where that release put them, the allocator owns exactly their
// extents (after replaying the unclean copy's log), the next allocation is
// the one that release would make, and the volume keeps working: a new
// blob is allocated, written, synced and committed, and survives a
// reopen, with the journal headers still checkpointed in format 2's slots.
func TestGoldenFormat2(t *testing.T) {
	for _, g := range goldenVolumes {
		t.Run(g.file, func(t *testing.T) {
			path := gunzipGolden(t, g.file)
			gen := format2Generation(t, path)
			ctx := context.Background()

			vol := openGolden(t, path, g.uuid)
			if got := vol.Journal().Stats().Replayed; got != g.replayed {
				t.Errorf("open replayed %d journal records, want %d", got, g.replayed)
			}
			if got := vol.DataMark(); got != g.mark {
				t.Errorf("data mark %d, want %d", got, g.mark)
			}
			a := openGoldenAllocator(t, vol, g.applied, g.blobs)
			if g.replayed > 0 {
				// The node rebuilds the allocator from its catalog after
				// an unclean stop.
				if err := a.Rebuild(ctx, ownedExtents(g.blobs)); err != nil {
					t.Fatalf("rebuild: %v", err)
				}
				checkOwned(t, a, g.blobs)
			}

			exts, err := a.Allocate(24 << 10)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(exts, g.next) {
				t.Errorf("24 KiB allocated at %v; the format-2 release chose %v", exts, g.next)
			}
			blobs := append(slices.Clone(g.blobs), goldenBlob{7, 24 << 10, exts})
			writeBlob(t, vol, blobs[len(blobs)-1])
			vol.SetDataMarkSource(func() uint64 { return 7 })
			if err := vol.SyncData(ctx); err != nil {
				t.Fatal(err)
			}
			a.SetAppliedIndex(g.applied + 1)
			if err := a.Commit(ctx); err != nil {
				t.Fatal(err)
			}
			checkpoints := closeGolden(t, vol)

			vol = openGolden(t, path, g.uuid)
			if got := vol.Journal().Stats().Replayed; got != 0 {
				t.Errorf("reopen after a clean close replayed %d records", got)
			}
			if got := vol.DataMark(); got != 7 {
				t.Errorf("data mark %d after reopen, want 7", got)
			}
			openGoldenAllocator(t, vol, g.applied+1, blobs)
			checkpoints += closeGolden(t, vol)

			// Every checkpoint today's code made went to a header slot
			// where format 2 has it; none into its log area.
			if got := format2Generation(t, path); got != gen+checkpoints {
				t.Errorf("newest journal header in format 2's slots has generation %d; %d before and %d checkpoints since make %d",
					got, gen, checkpoints, gen+checkpoints)
			}
		})
	}
}

// gunzipGolden writes testdata/name, uncompressed, into a temporary
// directory and returns its path.
func gunzipGolden(t *testing.T, name string) string {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "volume")
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// openGolden opens the volume file with today's code and checks that it is
// still the format-2 volume the old release wrote, with its placement.
func openGolden(t *testing.T, path, uuid string) *volume.Volume {
	t.Helper()
	dev, err := volume.OpenFileDevice(path)
	if err != nil {
		t.Fatal(err)
	}
	vol, err := volume.Open(dev, nil)
	if err != nil {
		dev.Close()
		t.Fatalf("open the format-2 volume: %v", err)
	}
	t.Cleanup(func() { _ = vol.Close() })
	sb := vol.Superblock()
	if sb.Version != 2 || string(sb.UUID[:]) != uuid {
		t.Fatalf("superblock: version %d uuid %q, want 2 and %q", sb.Version, sb.UUID[:], uuid)
	}
	if p := sb.Placement(); p != goldenPlacement {
		t.Fatalf("placement %v, want %v", p, goldenPlacement)
	}
	if sb.Layout.JournalOffset != goldenJournalOffset || sb.Layout.StateOffset != goldenStateOffset {
		t.Fatalf("layout %+v: journal at %d and state at %d in format 2", sb.Layout, goldenJournalOffset, goldenStateOffset)
	}
	return vol
}

// openGoldenAllocator opens the allocator and checks its applied index,
// that it owns exactly the blobs' extents, and the blobs' bytes.
func openGoldenAllocator(t *testing.T, vol *volume.Volume, applied uint64, blobs []goldenBlob) *space.Allocator {
	t.Helper()
	a, err := space.Open(vol)
	if err != nil {
		t.Fatalf("open the allocator: %v", err)
	}
	if got := a.AppliedIndex(); got != applied {
		t.Errorf("allocator applied index %d, want %d", got, applied)
	}
	checkOwned(t, a, blobs)
	for _, b := range blobs {
		got := make([]byte, 0, b.size)
		for _, e := range b.exts {
			p := make([]byte, min(e.Length, int64(b.size-len(got))))
			if _, err := vol.ReadAt(p, e.Offset); err != nil {
				t.Fatal(err)
			}
			got = append(got, p...)
		}
		if !bytes.Equal(got, goldenPattern(b.index, b.size)) {
			t.Errorf("blob %d at %v: bytes differ from what was written", b.index, b.exts)
		}
	}
	return a
}

func checkOwned(t *testing.T, a *space.Allocator, blobs []goldenBlob) {
	t.Helper()
	owned := ownedExtents(blobs)
	if err := a.CheckOwned(owned); err != nil {
		t.Fatalf("allocator against the blobs' extents: %v", err)
	}
	var want int64
	for _, e := range owned {
		want += e.Length
	}
	if got := a.Stats().UsedBytes; got != want {
		t.Errorf("allocator uses %d bytes, the blobs own %d", got, want)
	}
}

func ext(off, n int64) space.Extent { return space.Extent{Offset: off, Length: n} }

func ownedExtents(blobs []goldenBlob) []space.Extent {
	var owned []space.Extent
	for _, b := range blobs {
		owned = append(owned, b.exts...)
	}
	return owned
}

func writeBlob(t *testing.T, vol *volume.Volume, b goldenBlob) {
	t.Helper()
	data := goldenPattern(b.index, b.size)
	for _, e := range b.exts {
		n := min(int64(len(data)), e.Length)
		if _, err := vol.WriteAt(data[:n], e.Offset); err != nil {
			t.Fatal(err)
		}
		data = data[n:]
	}
}

// closeGolden closes vol and returns how many checkpoints its journal made
// since it was opened.
func closeGolden(t *testing.T, vol *volume.Volume) uint64 {
	t.Helper()
	if err := vol.Close(); err != nil {
		t.Fatal(err)
	}
	return vol.Journal().Stats().Checkpoints
}

// format2Generation reads the journal header slots of the file where
// format 2 puts them (journal region +0 and +512; magic "BNJH",
// generation u64, nextSeq u64, CRC32C of the 20 bytes before it) and
// returns the newest valid slot's generation.
func format2Generation(t *testing.T, path string) uint64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var newest uint64
	for _, off := range []int64{goldenJournalOffset, goldenJournalOffset + 512} {
		b := make([]byte, 24)
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatal(err)
		}
		crc := crc32.Checksum(b[:20], crc32.MakeTable(crc32.Castagnoli))
		if string(b[:4]) == "BNJH" && binary.LittleEndian.Uint32(b[20:]) == crc {
			newest = max(newest, binary.LittleEndian.Uint64(b[4:]))
		}
	}
	if newest == 0 {
		t.Fatalf("no valid journal header at format 2's slots %d and %d", goldenJournalOffset, goldenJournalOffset+512)
	}
	return newest
}
