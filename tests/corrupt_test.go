package tests

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/blobnode/blobnode/store"
)

// findInFile returns the offset of the first occurrence of needle in the
// file at path, reading it in windows.
func findInFile(t testing.TB, path string, needle []byte) int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	const window = 4 << 20
	buf := make([]byte, window+len(needle))
	for off := int64(0); ; off += window {
		n, err := f.ReadAt(buf, off)
		if i := bytes.Index(buf[:n], needle); i >= 0 {
			return off + int64(i)
		}
		if err == io.EOF {
			t.Fatalf("%d bytes not found in %s", len(needle), path)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestCorruptBlob flips one byte of a stored blob in the stopped node's
// volume file: fsck must report that blob's chunk and its device offset,
// and the restarted node must never serve the bad bytes (a read that
// meets the bad chunk first is 500 Corrupt; a response that already
// started is cut), while other blobs and the good chunks still read. Each
// read that meets the bad chunk counts once in blobnode_chunks_corrupt_total
// and logs one Error line naming key, chunk and offset.
func TestCorruptBlob(t *testing.T) {
	n := newNode(t, "-volume-size", "64MiB")
	victim := payload(30, 600_000) // three 256 KiB checksum chunks
	bystander := payload(31, 5000)
	n.put(t, "corrupt/victim", victim)
	n.put(t, "corrupt/bystander", bystander)
	n.stop()
	n.requireFsckClean()

	// Flip a byte in the second chunk of the victim.
	const at = 300_000
	vol := filepath.Join(n.dir, "volume.blob")
	off := findInFile(t, vol, victim[at:at+64])
	f, err := os.OpenFile(vol, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := []byte{victim[at] ^ 0x40}
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	// The volume file is the device: chunk 1 starts 300,000 - 262,144
	// bytes before the flipped byte (both lie in the blob's first page).
	chunk1 := off - (at - store.ChunkSize)
	n.requireFsckChunkProblem(t, "corrupt/victim", 1, chunk1, store.ErrCorruptData.Error())

	n.start()
	n.requireFailedChunks(t, 0, 0)
	// The whole blob: the bad chunk is never sent as if it were good.
	n.requireCutBefore(t, "corrupt/victim", victim, store.ChunkSize)
	n.requireFailedChunks(t, 1, 0) // corruption is not a read error
	// A range inside the bad chunk fails before any byte: an error status.
	if r := n.do(t, http.MethodGet, blobPath("corrupt/victim"), nil, "Range", "bytes=290000-290099"); r.status != http.StatusInternalServerError || r.code() != "Corrupt" {
		t.Errorf("range in the bad chunk: %v, want 500 Corrupt", r)
	}
	n.requireFailedChunks(t, 2, 0)
	// The good chunks and the other blob still read.
	if r := n.do(t, http.MethodGet, blobPath("corrupt/victim"), nil, "Range", "bytes=0-1000"); r.status != http.StatusPartialContent || !bytes.Equal(r.body, victim[:1001]) {
		t.Errorf("range in a good chunk: %v", r)
	}
	if r := n.do(t, http.MethodGet, blobPath("corrupt/victim"), nil, "Range", "bytes=550000-"); r.status != http.StatusPartialContent || !bytes.Equal(r.body, victim[550000:]) {
		t.Errorf("range in the last good chunk: %v", r)
	}
	n.requireBlob(t, "corrupt/bystander", int64(len(bystander)), sha256Of(bystander))
	n.requireFailedChunks(t, 2, 0)
	// One Error line per read that met the bad chunk, and no other.
	requireChunkErrorLines(t, tailFile(n.logPath, 1000), "chunk failed verification", "corrupt/victim", 1, chunk1, 2)

	// Replacing the blob heals it.
	n.put(t, "corrupt/victim", victim)
	n.requireBlob(t, "corrupt/victim", int64(len(victim)), sha256Of(victim))
	n.stop()
	n.requireFsckClean()
}

// requireFsckChunkProblem runs fsck on the stopped node and requires exit
// 1 with exactly one problem: chunk of key at device offset off, failed
// for reason (a store error's text).
func (n *node) requireFsckChunkProblem(t testing.TB, key string, chunk, off int64, reason string) {
	t.Helper()
	code, out := n.fsck()
	want := fmt.Sprintf(" chunk %d at device offset %d: %s", chunk, off, reason)
	if code != 1 || !strings.Contains(out, fmt.Sprintf("problem: blob %q version ", key)) || !strings.Contains(out, want) ||
		strings.Count(out, "problem:") != 1 {
		t.Fatalf("fsck: exit %d, want 1 with one problem, naming %q and%s:\n%s", code, key, want, out)
	}
	t.Logf("fsck: exit %d: %s", code, strings.TrimSpace(out))
}

// requireFailedChunks checks the node's counts of chunk reads that failed
// their checksum and that the disk could not read.
func (n *node) requireFailedChunks(t testing.TB, corrupt, readErrors int) {
	t.Helper()
	for _, m := range []struct {
		name string
		want int
	}{{"blobnode_chunks_corrupt_total", corrupt}, {"blobnode_chunk_read_errors_total", readErrors}} {
		if got := n.metric(t, m.name); got != strconv.Itoa(m.want) {
			t.Errorf("%s = %v, want %d", m.name, got, m.want)
		}
	}
}

// requireCutBefore GETs key, stored as body, whose chunk at byte bad (not
// the first chunk) cannot be served: the response starts (200) and is cut
// before that chunk, every byte it sent right. The bad chunk is never sent,
// and the response never looks complete.
func (n *node) requireCutBefore(t testing.TB, key string, body []byte, bad int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.base+blobPath(key), nil)
	resp, err := n.client.Do(req)
	if err != nil {
		t.Fatalf("GET %q: %v, want 200 and a body cut before byte %d", key, err, bad)
	}
	got, rerr := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case resp.StatusCode != http.StatusOK:
		t.Fatalf("GET %q: status %d %q, want 200 and a body cut before byte %d", key, resp.StatusCode, got, bad)
	case rerr == nil:
		t.Fatalf("GET %q: 200 with %d bytes and no error (identical to what was stored: %v), want a cut before byte %d",
			key, len(got), bytes.Equal(got, body), bad)
	case int64(len(got)) > bad:
		t.Fatalf("GET %q sent %d bytes, past the bad chunk at %d", key, len(got), bad)
	case !bytes.Equal(got, body[:len(got)]):
		t.Fatalf("GET %q sent %d bytes that differ from what was stored", key, len(got))
	}
	t.Logf("GET %q: 200, cut after %d of %d bytes (the bad chunk starts at %d): %v", key, len(got), len(body), bad, rerr)
}

// requireChunkErrorLines requires that log hold exactly want Error lines,
// each the store's line msg for chunk of key at device offset off.
func requireChunkErrorLines(t testing.TB, log, msg, key string, chunk, off int64, want int) {
	t.Helper()
	naming, all := 0, 0
	line1 := fmt.Sprintf("msg=%q key=%s version=", msg, key)
	line2 := fmt.Sprintf(" chunk=%d offset=%d ", chunk, off)
	var errLines []string
	for line := range strings.SplitSeq(log, "\n") {
		if !strings.Contains(line, "level=ERROR") {
			continue
		}
		all++
		errLines = append(errLines, line)
		if strings.Contains(line, line1) && strings.Contains(line, line2) {
			naming++
		}
	}
	if naming != want || all != want {
		t.Errorf("%d Error lines, %d of them %s naming %s chunk %d offset %d; want %d and %d:\n%s",
			all, naming, msg, key, chunk, off, want, want, strings.Join(errLines, "\n"))
	}
}
