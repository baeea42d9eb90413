package tests

import (
	"bytes"
	"fmt"
	"maps"
	"net/http"
	"path/filepath"
	"slices"
	"testing"

	"github.com/blobnode/blobnode/internal/powercutfs"
	"github.com/blobnode/blobnode/store"
)

// TestReadErrorLosesNothing runs the real binary on a powercutfs mount and
// makes one sector of the volume file unreadable (reads of it fail with
// EIO, as a disk's bad sector does) inside chunk 1 of a streamed blob.
// While it is unreadable: a GET of the whole blob starts and is cut
// before that chunk, every byte sent right; a range inside the chunk is
// 500 ReadError before any byte; the other chunks and the other blobs
// (inline and streamed) read back byte for byte; each read that met the
// chunk counts once in blobnode_chunk_read_errors_total (none in
// blobnode_chunks_corrupt_total) and logs one Error line naming key,
// chunk and device offset; the node stays writable. Once the disk reads
// again the same node serves the blob whole. fsck of the stopped node
// reports the chunk (key, index, device offset, the EIO) and exits 1
// while the sector is unreadable, and is clean once it reads again;
// restarted, the node serves every blob byte for byte: nothing was lost.
func TestReadErrorLosesNothing(t *testing.T) {
	if err := powercutfs.Available(); err != nil {
		t.Skipf("failing a read needs FUSE: %v", err)
	}
	pm := newPowerMount(t)
	n := newNodeIn(t, pm.dir, "-volume-size", "64MiB")
	const victimKey = "readerr/victim"
	blobs := map[string][]byte{}
	for _, b := range []struct {
		key  string
		size int64
	}{
		{"readerr/inline", 4 << 10},   // inline: at most store.DefaultInlineMax
		{"readerr/streamed", 600_000}, // three chunks
		{victimKey, 3 << 20},          // twelve chunks
	} {
		blobs[b.key] = payload(seedOf(b.key), b.size)
		n.put(t, b.key, blobs[b.key])
	}
	victim := blobs[victimKey]

	// The volume file is the device. Reading it through the mount leaves
	// chunk 1 in the kernel's page cache, from which a read would be served
	// without reaching the file system, had FailReads not dropped it.
	vol := filepath.Join(pm.dir, "volume.blob")
	chunk1 := findInFile(t, vol, victim[store.ChunkSize:][:64])
	// The bad sector lies at a 128 KiB boundary of the file inside chunk 1,
	// so that no page or folio the kernel reads in one request (128 KiB at
	// most) holds both bad bytes and another chunk's.
	const folio = 128 << 10
	sector := (chunk1 + folio - 1) &^ (folio - 1)
	if at := findInFile(t, vol, victim[store.ChunkSize+sector-chunk1:][:64]); at != sector {
		t.Fatalf("chunk 1 of %q starts at device offset %d but its byte %d is at %d: not in one extent, as this test needs",
			victimKey, chunk1, sector-chunk1, at)
	}
	fault, err := pm.fs.FailReads("volume.blob", sector, spage)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("chunk 1 of %q at device offset %d; reads of bytes [%d, %d) fail", victimKey, chunk1, sector, sector+spage)

	n.requireFailedChunks(t, 0, 0)
	n.requireCutBefore(t, victimKey, victim, store.ChunkSize)
	n.requireFailedChunks(t, 0, 1)
	// A range inside the chunk fails before any byte: an error status.
	in := fmt.Sprintf("bytes=%d-%d", store.ChunkSize+1000, store.ChunkSize+1099)
	if r := n.do(t, http.MethodGet, blobPath(victimKey), nil, "Range", in); r.status != http.StatusInternalServerError || r.code() != "ReadError" {
		t.Errorf("GET %q %s, in the unreadable chunk: %v, want 500 ReadError", victimKey, in, r)
	}
	n.requireFailedChunks(t, 0, 2)
	// The good chunks and the other blobs still read.
	for _, rng := range [][2]int64{{0, store.ChunkSize - 1}, {2 * store.ChunkSize, int64(len(victim)) - 1}} {
		h := fmt.Sprintf("bytes=%d-%d", rng[0], rng[1])
		if r := n.do(t, http.MethodGet, blobPath(victimKey), nil, "Range", h); r.status != http.StatusPartialContent || !bytes.Equal(r.body, victim[rng[0]:rng[1]+1]) {
			t.Errorf("GET %q %s, of good chunks: %v, want 206 and the stored bytes", victimKey, h, r)
		}
	}
	for _, key := range []string{"readerr/inline", "readerr/streamed"} {
		n.requireBlob(t, key, int64(len(blobs[key])), sha256Of(blobs[key]))
	}
	n.requireFailedChunks(t, 0, 2)
	if fault.Failed() == 0 {
		t.Fatal("the node's reads failed, but none of them reached the armed fault")
	}
	requireChunkErrorLines(t, lastRun(t, n.logPath), "chunk could not be read", victimKey, 1, chunk1, 2)
	// A read error does not make the node read-only.
	if s := n.readOnlyStatus(t); s.ReadOnly {
		t.Fatalf("the node turned read-only after a read error: %s", s.Reason)
	}
	const during = "readerr/during"
	blobs[during] = payload(seedOf(during), 100<<10)
	n.put(t, during, blobs[during])

	// The disk reads again: the same node serves the chunk.
	pm.fs.ClearReadFaults()
	n.requireBlob(t, victimKey, int64(len(victim)), sha256Of(victim))
	n.requireFailedChunks(t, 0, 2)

	// Unreadable again, for fsck of the stopped node (the chunk's pages
	// are in the page cache once more: the node just read them).
	fault, err = pm.fs.FailReads("volume.blob", sector, spage)
	if err != nil {
		t.Fatal(err)
	}
	n.stop()
	// FileDevice.ReadAt names the piece of the chunk it read, from its start.
	reason := fmt.Sprintf("%v: volume: read %s at %d: read %s: input/output error", store.ErrReadFailed, vol, chunk1, vol)
	n.requireFsckChunkProblem(t, victimKey, 1, chunk1, reason)
	if fault.Failed() == 0 {
		t.Fatal("fsck found the chunk unreadable, but none of its reads reached the armed fault")
	}
	pm.fs.ClearReadFaults()
	n.requireFsckClean()

	n.start()
	for _, key := range slices.Sorted(maps.Keys(blobs)) {
		n.requireBlob(t, key, int64(len(blobs[key])), sha256Of(blobs[key]))
	}
	n.requireFailedChunks(t, 0, 0)
	t.Logf("%d blobs read back byte for byte after the disk recovered and the node restarted", len(blobs))
}
