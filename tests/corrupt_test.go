package tests

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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
	chunk1 := off - (at - 256<<10)
	code, out := n.fsck()
	wantFsck := fmt.Sprintf(" chunk 1 at device offset %d: stored data failed verification", chunk1)
	if code != 1 || !strings.Contains(out, `problem: blob "corrupt/victim" version `) || !strings.Contains(out, wantFsck) ||
		strings.Count(out, "problem:") != 1 || strings.Contains(out, "corrupt/bystander") {
		t.Fatalf("fsck of a volume with one flipped byte in corrupt/victim: exit %d, want 1 with one problem naming that blob and%s:\n%s", code, wantFsck, out)
	}

	n.start()
	requireCorruptCount := func(want string) {
		t.Helper()
		if got := n.metric(t, "blobnode_chunks_corrupt_total"); got != want {
			t.Errorf("blobnode_chunks_corrupt_total = %v, want %v", got, want)
		}
		if got := n.metric(t, "blobnode_chunk_read_errors_total"); got != "0" {
			t.Errorf("blobnode_chunk_read_errors_total = %v, want 0 (corruption is not a read error)", got)
		}
	}
	requireCorruptCount("0")
	// The whole blob: the bad chunk is never sent as if it were good.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.base+blobPath("corrupt/victim"), nil)
	resp, err := n.client.Do(req)
	if err == nil {
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && rerr == nil {
			t.Fatalf("GET of a corrupt blob: 200 with %d bytes and no error (identical to what was stored: %v)", len(body), bytes.Equal(body, victim))
		}
		if resp.StatusCode == http.StatusOK && !bytes.Equal(body, victim[:len(body)]) {
			t.Fatalf("GET of a corrupt blob sent %d bytes that differ from what was stored", len(body))
		}
		if resp.StatusCode == http.StatusOK && len(body) > 2*256<<10 {
			t.Errorf("GET of a corrupt blob sent %d bytes, past the bad chunk", len(body))
		}
	}
	requireCorruptCount("1")
	// A range inside the bad chunk fails before any byte: an error status.
	if r := n.do(t, http.MethodGet, blobPath("corrupt/victim"), nil, "Range", "bytes=290000-290099"); r.status != http.StatusInternalServerError || r.code() != "Corrupt" {
		t.Errorf("range in the bad chunk: %v, want 500 Corrupt", r)
	}
	requireCorruptCount("2")
	// The good chunks and the other blob still read.
	if r := n.do(t, http.MethodGet, blobPath("corrupt/victim"), nil, "Range", "bytes=0-1000"); r.status != http.StatusPartialContent || !bytes.Equal(r.body, victim[:1001]) {
		t.Errorf("range in a good chunk: %v", r)
	}
	if r := n.do(t, http.MethodGet, blobPath("corrupt/victim"), nil, "Range", "bytes=550000-"); r.status != http.StatusPartialContent || !bytes.Equal(r.body, victim[550000:]) {
		t.Errorf("range in the last good chunk: %v", r)
	}
	n.requireBlob(t, "corrupt/bystander", int64(len(bystander)), sha256Of(bystander))
	requireCorruptCount("2")
	// One Error line per read that met the bad chunk, and no other.
	logged, errs := 0, 0
	const wantLog = `msg="chunk failed verification" key=corrupt/victim version=`
	for _, line := range strings.Split(tailFile(n.logPath, 1000), "\n") {
		if !strings.Contains(line, "level=ERROR") {
			continue
		}
		errs++
		if strings.Contains(line, wantLog) && strings.Contains(line, fmt.Sprintf(" chunk=1 offset=%d ", chunk1)) {
			logged++
		}
	}
	if logged != 2 || errs != 2 {
		t.Errorf("%d Error lines, %d of them naming corrupt/victim chunk 1 offset %d; want 2 and 2:\n%s", errs, logged, chunk1, tailFile(n.logPath, 40))
	}

	// Replacing the blob heals it.
	n.put(t, "corrupt/victim", victim)
	n.requireBlob(t, "corrupt/victim", int64(len(victim)), sha256Of(victim))
	n.stop()
	n.requireFsckClean()
}
