package tests

import (
	"bytes"
	"context"
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
// volume file: fsck must report that blob, and the restarted node must
// never serve the bad bytes (a read of the bad chunk fails; a response that
// already started is cut), while other blobs and the good chunk still read.
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

	code, out := n.fsck()
	if code != 1 || !strings.Contains(out, "corrupt/victim") || strings.Contains(out, "corrupt/bystander") {
		t.Fatalf("fsck of a volume with one flipped byte in corrupt/victim: exit %d, want 1 naming only that blob:\n%s", code, out)
	}

	n.start()
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
	// A range inside the bad chunk fails before any byte: an error status.
	if r := n.do(t, http.MethodGet, blobPath("corrupt/victim"), nil, "Range", "bytes=290000-290099"); r.status != http.StatusInternalServerError {
		t.Errorf("range in the bad chunk: %v, want 500", r)
	}
	// The good chunks and the other blob still read.
	if r := n.do(t, http.MethodGet, blobPath("corrupt/victim"), nil, "Range", "bytes=0-1000"); r.status != http.StatusPartialContent || !bytes.Equal(r.body, victim[:1001]) {
		t.Errorf("range in a good chunk: %v", r)
	}
	if r := n.do(t, http.MethodGet, blobPath("corrupt/victim"), nil, "Range", "bytes=550000-"); r.status != http.StatusPartialContent || !bytes.Equal(r.body, victim[550000:]) {
		t.Errorf("range in the last good chunk: %v", r)
	}
	n.requireBlob(t, "corrupt/bystander", int64(len(bystander)), sha256Of(bystander))

	// Replacing the blob heals it.
	n.put(t, "corrupt/victim", victim)
	n.requireBlob(t, "corrupt/victim", int64(len(victim)), sha256Of(victim))
	n.stop()
	n.requireFsckClean()
}
