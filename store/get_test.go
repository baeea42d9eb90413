package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/volume"
)

// TestReadRacingDeleteAndReuse: a GET opened on a version that is then
// deleted, its page taken by another blob and rewritten, reports
// ErrBlobChanged (not corruption) and writes none of the other blob's
// bytes; a fresh Get sees the key gone.
func TestReadRacingDeleteAndReuse(t *testing.T) {
	t.Run("one node", func(t *testing.T) { testReadRacingDeleteAndReuse(t, nil) })
	// In a group the failed chunk must not be taken for corruption
	// either: no read repair (no replica serves a version that is gone),
	// nothing counted.
	t.Run("group", func(t *testing.T) {
		src := &recordingSource{}
		s := testReadRacingDeleteAndReuse(t, src)
		if src.calls.Load() != 0 {
			t.Errorf("%d chunks fetched from replicas for a version that is gone", src.calls.Load())
		}
		if st := s.st.ChunkStats(); st.Corrupt != 0 {
			t.Errorf("%d corrupt chunks counted for a reused page", st.Corrupt)
		}
	})
}

// recordingSource is a ChunkSource with no replica behind it that counts
// the fetches.
type recordingSource struct{ calls atomic.Int64 }

func (r *recordingSource) FetchChunk(context.Context, catalog.Blob, int64) ([]byte, error) {
	r.calls.Add(1)
	return nil, ErrNotFound
}

func testReadRacingDeleteAndReuse(t *testing.T, src ChunkSource) *reviewStack {
	ctx := context.Background()
	g := volume.Geometry{SpageShift: 12, LpageShift: 16, VolumeSize: 16 << 20}
	cfg := Config{}
	if src != nil {
		cfg.Chunks = src
	}
	s := newReviewStack(t, g, cfg)
	put := func(key string, body []byte) {
		t.Helper()
		if err := s.put(ctx, key, body); err != nil {
			t.Fatalf("put %q: %v", key, err)
		}
	}
	put("a", bytes.Repeat([]byte{'a'}, 3000))
	obj, err := s.st.Get(ctx, "a", ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	if err := s.st.Delete(ctx, "a", Condition{}); err != nil {
		t.Fatal(err)
	}
	put("b", bytes.Repeat([]byte{'b'}, 3000)) // the lowest free page: a's
	var got bytes.Buffer
	err = obj.WriteRange(ctx, &got, 0, 3000)
	if !errors.Is(err, ErrBlobChanged) || errors.Is(err, ErrCorruptData) {
		t.Fatalf("read of a deleted, reused version: %v; want ErrBlobChanged only", err)
	}
	if got.Len() != 0 {
		t.Fatalf("%d bytes written from a reused page", got.Len())
	}
	if _, err := s.st.Get(ctx, "a", ReadOptions{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get after delete: %v", err)
	}
	return s
}

// TestCorruptionStillReported: a mismatch on a version that is still
// current is corruption, whatever else happens.
func TestCorruptionStillReported(t *testing.T) {
	ctx := context.Background()
	g := volume.Geometry{SpageShift: 12, LpageShift: 16, VolumeSize: 16 << 20}
	s := newReviewStack(t, g, Config{})
	body := bytes.Repeat([]byte{'c'}, 3000)
	if err := s.put(ctx, "c", body); err != nil {
		t.Fatal(err)
	}
	obj, err := s.st.Get(ctx, "c", ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer obj.Close()
	ext := obj.(*object).b.Extents[0]
	if _, err := s.vol.WriteAt([]byte{'X'}, ext.Offset+10); err != nil {
		t.Fatal(err)
	}
	if err := obj.WriteRange(ctx, io.Discard, 0, 3000); !errors.Is(err, ErrCorruptData) || errors.Is(err, ErrBlobChanged) {
		t.Fatalf("read of a corrupted current version: %v; want ErrCorruptData", err)
	}
}

// TestBackgroundAfterClose: once Close has begun no background task
// starts, so WaitGroup.Add never races Close's Wait (an upload that ends
// after a shutdown timed out may still try to abort its reservations).
func TestBackgroundAfterClose(t *testing.T) {
	g := volume.Geometry{SpageShift: 12, LpageShift: 16, VolumeSize: 16 << 20}
	s := newReviewStack(t, g, Config{})
	if !s.st.background(func() {}) {
		t.Fatal("a task was refused before Close")
	}
	if err := s.st.Close(); err != nil {
		t.Fatal(err)
	}
	if s.st.background(func() { t.Error("a task ran after Close") }) {
		t.Fatal("a task was started after Close")
	}
	s.st.abortLater(12345) // must neither panic nor block
}

// TestRepairSkipsReplacedVersion: the repairer and the scrubber verify
// blobs from a list taken a moment earlier; a listed version replaced
// since, its pages reused by another blob, fails verification, but that
// is neither corruption (nothing counted) nor work for read repair.
func TestRepairSkipsReplacedVersion(t *testing.T) {
	ctx := context.Background()
	g := volume.Geometry{SpageShift: 12, LpageShift: 16, VolumeSize: 16 << 20}
	src := &recordingSource{}
	s := newReviewStack(t, g, Config{Chunks: src})
	if err := s.put(ctx, "a", bytes.Repeat([]byte{'a'}, 3000)); err != nil {
		t.Fatal(err)
	}
	listed := s.blob(t, "a")
	if err := s.st.Delete(ctx, "a", Condition{}); err != nil {
		t.Fatal(err)
	}
	if err := s.put(ctx, "b", bytes.Repeat([]byte{'b'}, 3000)); err != nil { // a's page
		t.Fatal(err)
	}
	if bad, _ := Verify(s.vol, listed); len(bad) == 0 {
		t.Fatal("the listed version's page was not reused: the test proves nothing")
	}
	if err := s.st.repairBlob(ctx, listed, true); err != nil {
		t.Fatalf("repair of a replaced version: %v", err)
	}
	if src.calls.Load() != 0 || s.st.ChunkStats().Corrupt != 0 {
		t.Fatalf("repair of a replaced version fetched %d chunks and counted %d corrupt", src.calls.Load(), s.st.ChunkStats().Corrupt)
	}
}

// TestScrubWritesNothingForIntactBlobs: the scrubber reads and verifies
// blobs this node already holds verified; finding them intact, it writes
// nothing to the catalog (it once committed a transaction per blob, 256 a
// second with small blobs, beside the state machine's own batches). A
// corrupt one is still repaired and counted. With the old catalog's marks
// of an unclean start at hand (OldMarks), it is the same: those serve the
// repairer's unmarked blobs, not a blob the scrubber is to read.
func TestScrubWritesNothingForIntactBlobs(t *testing.T) {
	for _, inherited := range []bool{false, true} {
		t.Run(fmt.Sprintf("old marks %v", inherited), func(t *testing.T) { testScrubWritesNothing(t, inherited) })
	}
}

func testScrubWritesNothing(t *testing.T, inherited bool) {
	ctx := context.Background()
	g := volume.Geometry{SpageShift: 12, LpageShift: 16, VolumeSize: 16 << 20}
	src := &recordingSource{}
	dev := volume.NewMemDevice(g.VolumeSize, 1)
	cfg := Config{Chunks: src}
	var oldMu sync.Mutex // the repairer may ask while the test fills it
	old := map[string]uint64{}
	if inherited {
		cfg.OldMarks = func(key string) (uint64, bool) {
			oldMu.Lock()
			defer oldMu.Unlock()
			v, ok := old[key]
			return v, ok
		}
	}
	s := newReviewStackOn(t, g, cfg, dev)
	for i := range 20 {
		key := fmt.Sprintf("k%02d", i)
		if err := s.put(ctx, key, bytes.Repeat([]byte{byte('a' + i)}, 1000+i)); err != nil {
			t.Fatal(err)
		}
		oldMu.Lock()
		old[key] = s.blob(t, key).Version
		oldMu.Unlock()
	}
	if _, ok := s.localVersion(t, "k07"); !ok {
		t.Fatal("an inline blob is not marked held verified after its commit: the test proves nothing")
	}
	before := s.cat.Commits()
	if next := s.st.scrubPass("", 1<<30); next != "k19" {
		t.Fatalf("scrubPass returned %q, want k19 (every blob in one pass)", next)
	}
	if got := s.st.ChunkStats().ScrubbedBytes; got < 20*1000 {
		t.Fatalf("scrubbed %d bytes, want every blob's", got)
	}
	if d := s.cat.Commits() - before; d != 0 {
		t.Fatalf("scrubbing 20 intact blobs committed %d catalog transactions, want 0", d)
	}
	if src.calls.Load() != 0 || s.st.ChunkStats().Corrupt != 0 {
		t.Fatalf("scrubbing intact blobs fetched %d chunks and counted %d corrupt", src.calls.Load(), s.st.ChunkStats().Corrupt)
	}

	off := s.deviceOffset(t, "k07", 500)
	if _, err := dev.WriteAt([]byte{'a' + 7 ^ 0x55}, off); err != nil {
		t.Fatal(err)
	}
	s.st.scrubPass("", 1<<30)
	if src.calls.Load() != 1 || s.st.ChunkStats().Corrupt != 1 {
		t.Fatalf("scrubbing a corrupt blob fetched %d chunks and counted %d corrupt, want 1 and 1", src.calls.Load(), s.st.ChunkStats().Corrupt)
	}
}
