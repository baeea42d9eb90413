package catalog

import (
	"encoding/binary"
	"errors"
	"path/filepath"
	"testing"
)

const testChunk = 256 << 10

// openTest opens a fresh catalog in t.TempDir. Cleanup checks every catalog
// invariant and bbolt's page consistency before closing.
func openTest(tb testing.TB, opts Options) *DB {
	tb.Helper()
	return openAt(tb, filepath.Join(tb.TempDir(), "catalog.db"), opts)
}

func openAt(tb testing.TB, path string, opts Options) *DB {
	tb.Helper()
	if opts.InitialMmapSize == 0 {
		opts.InitialMmapSize = 16 << 20
	}
	db, err := Open(path, opts)
	if err != nil {
		tb.Fatalf("Open(%s): %v", path, err)
	}
	tb.Cleanup(func() {
		if err := db.Check(); err != nil && !errors.Is(err, ErrClosed) {
			tb.Errorf("catalog check: %v", err)
		}
		if err := db.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return db
}

// testBlob builds a valid blob: one extent rounded up to 4 KiB at a
// position derived from version, and one checksum per 256 KiB chunk.
func testBlob(key string, version uint64, size int64) Blob {
	b := Blob{
		Key:           key,
		Version:       version,
		Size:          size,
		ContentType:   "application/octet-stream",
		Created:       1_700_000_000_000_000_000 + int64(version),
		ReservationID: version + 7,
	}
	if size > 0 {
		b.ChunkSize = testChunk
		b.Extents = []Extent{{Offset: int64(version) << 32, Length: (size + 4095) &^ 4095}}
		b.Checksums = make([]uint32, chunkCount(size, testChunk))
		for i := range b.Checksums {
			b.Checksums[i] = uint32(version)*2654435761 + uint32(i)
		}
	}
	return b
}

func testReservation(id uint64, size, deadline int64) Reservation {
	r := Reservation{ID: id, Size: size, Deadline: deadline}
	if size > 0 {
		r.Extents = []Extent{{Offset: int64(id) << 32, Length: size}}
	}
	return r
}

func mustUpdate(tb testing.TB, db *DB, fn func(*Tx) error) {
	tb.Helper()
	if err := db.Update(fn); err != nil {
		tb.Fatalf("Update: %v", err)
	}
}

func mustView(tb testing.TB, db *DB, fn func(*Tx) error) {
	tb.Helper()
	if err := db.View(fn); err != nil {
		tb.Fatalf("View: %v", err)
	}
}

func putBlobs(tb testing.TB, db *DB, blobs ...Blob) {
	tb.Helper()
	mustUpdate(tb, db, func(tx *Tx) error {
		for _, b := range blobs {
			if err := tx.PutBlob(b); err != nil {
				return err
			}
		}
		return nil
	})
}

func blobKeys(blobs []Blob) []string {
	keys := make([]string, len(blobs))
	for i, b := range blobs {
		keys[i] = b.Key
	}
	return keys
}

// spoilLeafPages gives every well-filled leaf page of the bbolt image img
// (4 KiB pages; the meta pages and the freelist are left alone) a page type
// bbolt does not know, so that reading it panics, and fails the test if
// there was none.
func spoilLeafPages(tb testing.TB, img []byte) {
	tb.Helper()
	const pageSize = 4096
	spoilt := 0
	for off := 4 * pageSize; off+16 <= len(img); off += pageSize {
		flags, count := binary.LittleEndian.Uint16(img[off+8:]), binary.LittleEndian.Uint16(img[off+10:])
		if flags == 0x02 && count >= 20 {
			binary.LittleEndian.PutUint16(img[off+8:], 0x55)
			spoilt++
		}
	}
	if spoilt == 0 {
		tb.Fatal("no leaf page to spoil")
	}
}
