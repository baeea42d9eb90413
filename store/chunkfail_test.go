package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"syscall"
	"testing"
	"time"

	"github.com/blobnode/blobnode/volume"
)

// chunkFault is a way a stored chunk can fail a read.
type chunkFault int

const (
	faultCorrupt chunkFault = iota // a byte flipped on the device
	faultEIO                       // the device fails reads of a range with EIO
)

func (f chunkFault) String() string { return [...]string{"corrupt", "EIO"}[f] }

// TestCorruptOrReadErrorChunk: a read that meets a chunk whose bytes fail their
// checksum, or that the device cannot read, fails with a *ChunkError that
// says which blob, chunk and device offset (ErrCorruptData or
// ErrReadFailed, never both), after writing exactly the chunks before it;
// it is counted once in ChunkStats and logged as one Error record with
// key, chunk and offset. Verify reports the same chunk. Nothing is lost: the blob stays in the catalog,
// other blobs read, and once the fault is gone the blob reads whole.
func TestCorruptOrReadErrorChunk(t *testing.T) {
	// 256 KiB lpages: a 600,000-byte blob is two lpages (chunks 0 and 1)
	// and a tail of 64 KiB + 8 KiB + 4 KiB pages (chunk 2 spans three
	// extents).
	g := volume.Geometry{SpageShift: 12, LpageShift: 18, VolumeSize: 16 << 20}
	dev := &ReadFailDevice{Device: volume.NewMemDevice(g.VolumeSize, 1)}
	logs := NewLogRecorder()
	s := newReviewStackOn(t, g, Config{Logger: slog.New(logs)}, dev)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const size = 600_000
	bystander := reviewBody(99, size)
	if err := s.put(ctx, "bystander", bystander); err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		fault chunkFault
		at    int64 // blob byte the fault is at
		chunk int64
		// offsetOf is the blob byte whose device offset the error names:
		// the chunk's first byte, or the first byte of the failed read.
		offsetOf int64
	}{
		{faultCorrupt, 1000, 0, 0},
		{faultCorrupt, 595_000, 2, 2 * ChunkSize},
		{faultEIO, 1000, 0, 0},
		{faultEIO, 300_000, 1, ChunkSize},
		{faultEIO, 595_000, 2, 589_824}, // in the tail's 8 KiB page
	} {
		t.Run(fmt.Sprintf("%v in chunk %d at %d", tc.fault, tc.chunk, tc.at), func(t *testing.T) {
			key := fmt.Sprintf("victim-%d", i)
			body := reviewBody(uint64(i), size)
			if err := s.put(ctx, key, body); err != nil {
				t.Fatal(err)
			}
			version := s.blob(t, key).Version
			at, wantOffset := s.deviceOffset(t, key, tc.at), s.deviceOffset(t, key, tc.offsetOf)
			heal := injectChunkFault(t, s, dev, tc.fault, at, body[tc.at])
			before := s.st.ChunkStats()
			logs.Reset()

			got, err := s.get(t, key)
			wantKind, otherKind := ErrCorruptData, ErrReadFailed
			if tc.fault == faultEIO {
				wantKind, otherKind = ErrReadFailed, ErrCorruptData
			}
			var ce *ChunkError
			if !errors.As(err, &ce) || !errors.Is(err, wantKind) || errors.Is(err, otherKind) || errors.Is(err, ErrBlobChanged) {
				t.Fatalf("read: %v; want a *ChunkError matching %v only", err, wantKind)
			}
			if tc.fault == faultEIO && !errors.Is(err, syscall.EIO) {
				t.Errorf("read error %v does not match the device's EIO", err)
			}
			want := ChunkError{Key: key, Version: version, Chunk: tc.chunk, Offset: wantOffset}
			if ce.Key != want.Key || ce.Version != want.Version || ce.Chunk != want.Chunk || ce.Offset != want.Offset {
				t.Errorf("error names %q version %d chunk %d offset %d; want %q version %d chunk %d offset %d",
					ce.Key, ce.Version, ce.Chunk, ce.Offset, want.Key, want.Version, want.Chunk, want.Offset)
			}
			if n := tc.chunk * ChunkSize; !bytes.Equal(got, body[:n]) {
				t.Errorf("wrote %d bytes before failing; want exactly the %d verified bytes before chunk %d", len(got), n, tc.chunk)
			}

			after := s.st.ChunkStats()
			wantStats := before
			if tc.fault == faultCorrupt {
				wantStats.Corrupt++
			} else {
				wantStats.ReadErrors++
			}
			if after != wantStats {
				t.Errorf("ChunkStats %+v after one failed read, was %+v; want %+v", after, before, wantStats)
			}
			requireChunkLog(t, logs, key, tc.chunk, wantOffset)

			// Verify (fsck) names the same chunk, and counts nothing.
			bad, err := Verify(s.vol, s.blob(t, key))
			if err != nil || len(bad) != 1 || !errors.Is(bad[0], wantKind) ||
				bad[0].Key != key || bad[0].Chunk != tc.chunk || bad[0].Offset != wantOffset {
				t.Errorf("Verify: %v, %v; want one %v failure of chunk %d at offset %d", bad, err, wantKind, tc.chunk, wantOffset)
			}
			if got := s.st.ChunkStats(); got != after {
				t.Errorf("Verify changed ChunkStats from %+v to %+v", after, got)
			}

			// Nothing is lost, and nothing else is affected.
			if got, err := s.get(t, "bystander"); err != nil || !bytes.Equal(got, bystander) {
				t.Fatalf("GET bystander while %s is failing: %d bytes, %v", key, len(got), err)
			}
			if ro := s.node.ReadOnly(); ro != nil {
				t.Fatalf("a failed chunk read made the node read-only: %v", ro)
			}
			heal()
			if got, err := s.get(t, key); err != nil || !bytes.Equal(got, body) {
				t.Fatalf("GET %s after the fault is gone: %d bytes, %v", key, len(got), err)
			}
		})
	}
}

// injectChunkFault makes the byte at device offset at fail a read: flipped
// (orig is its stored value) or unreadable. The returned func heals it.
func injectChunkFault(t testing.TB, s *reviewStack, dev *ReadFailDevice, f chunkFault, at int64, orig byte) (heal func()) {
	t.Helper()
	switch f {
	case faultCorrupt:
		if _, err := s.vol.WriteAt([]byte{orig ^ 0x40}, at); err != nil {
			t.Fatal(err)
		}
		return func() {
			t.Helper()
			if _, err := s.vol.WriteAt([]byte{orig}, at); err != nil {
				t.Fatal(err)
			}
		}
	case faultEIO:
		dev.Fail(at, at+1, syscall.EIO)
		return func() { dev.Fail(0, 0, nil) }
	}
	t.Fatalf("unknown fault %v", f)
	return nil
}

// requireChunkLog fails unless logs hold exactly one record at Error or
// above, naming key, chunk and device offset.
func requireChunkLog(t testing.TB, logs *LogRecorder, key string, chunk, offset int64) {
	t.Helper()
	errs := logs.AtLeast(slog.LevelError)
	if len(errs) != 1 {
		var msgs []string
		for _, r := range errs {
			msgs = append(msgs, r.Message)
		}
		t.Fatalf("%d Error log records %q; want exactly one", len(errs), msgs)
	}
	a := RecordAttrs(errs[0])
	if a["key"].String() != key || a["chunk"].Kind() != slog.KindInt64 || a["chunk"].Int64() != chunk ||
		a["offset"].Kind() != slog.KindInt64 || a["offset"].Int64() != offset {
		t.Errorf("Error record %q: key=%v chunk=%v offset=%v; want key=%s chunk=%d offset=%d",
			errs[0].Message, a["key"], a["chunk"], a["offset"], key, chunk, offset)
	}
}
