package tests

import (
	"fmt"
	"net/http"
	"testing"
)

// fillResult is what one fill of the volume stored.
type fillResult struct {
	blobs int
	bytes int64 // blob bytes
	used  int64 // volume.used_bytes when the volume refused the next blob
}

// TestFillDeleteFill fills a small volume with blobs of mixed sizes until
// it answers 507, deletes everything, and fills it again with the same
// sequence: freed space must be fully reusable, so the second fill stores
// exactly what the first did.
func TestFillDeleteFill(t *testing.T) {
	n := newNode(t, "-volume-size", "64MiB")
	sizes := []int64{4 << 10, 100 << 10, 1<<20 + 1}
	vol := n.volume(t)
	if vol.UsedBytes != 0 || vol.TotalBytes <= 0 || vol.TotalBytes > 64<<20 {
		t.Fatalf("fresh 64 MiB volume: %+v", vol)
	}

	fill := func(round int) fillResult {
		t.Helper()
		var res fillResult
		for i := range 5000 {
			size := sizes[i%len(sizes)]
			key := fmt.Sprintf("fill/%05d", i)
			r := n.do(t, http.MethodPut, blobPath(key), payload(fillSeed(round, i), size))
			switch r.status {
			case http.StatusCreated:
				res.blobs++
				res.bytes += size
				continue
			case http.StatusInsufficientStorage:
			default:
				t.Fatalf("round %d: PUT %q (%d bytes): %v", round, key, size, r)
			}
			if r.code() != "NoSpace" {
				t.Errorf("round %d: 507 with error code %q, want NoSpace: %s", round, r.code(), r.body)
			}
			n.requireAbsent(t, key)
			var want int64
			for j := range res.blobs {
				want += allocSize(sizes[j%len(sizes)])
			}
			n.waitHeld(t, want, settleTimeout) // the refused upload holds nothing
			res.used = want
			if free := vol.TotalBytes - res.used; free >= allocSize(size) {
				t.Errorf("round %d: 507 for %d bytes (%d allocated) while blobs hold %d of %d", round, size, allocSize(size), res.used, vol.TotalBytes)
			}
			t.Logf("round %d: %d blobs, %d bytes stored, %d of %d bytes used at the first 507", round, res.blobs, res.bytes, res.used, vol.TotalBytes)
			return res
		}
		t.Fatalf("round %d: no 507 after 5000 PUTs into a 64 MiB volume", round)
		return res
	}
	deleteAll := func() {
		t.Helper()
		for _, b := range n.listAll(t, "fill/", 1000) {
			if r := n.do(t, http.MethodDelete, blobPath(b.Key), nil); r.status != http.StatusNoContent {
				t.Fatalf("DELETE %q: %v", b.Key, r)
			}
		}
		if p := n.listPage(t, "", "", 0); len(p.Blobs) != 0 {
			t.Fatalf("listing after deleting everything: %d blobs", len(p.Blobs))
		}
		n.waitHeld(t, 0, settleTimeout)
	}

	verify := func(round int, res fillResult) {
		t.Helper()
		for i := range res.blobs {
			size := sizes[i%len(sizes)]
			n.requireBlob(t, fmt.Sprintf("fill/%05d", i), size, sha256Of(payload(fillSeed(round, i), size)))
		}
	}

	first := fill(1)
	if first.blobs < 3 {
		t.Fatalf("the first fill stored only %d blobs", first.blobs)
	}
	verify(1, first) // everything stored before the 507 is intact
	deleteAll()
	second := fill(2)
	if second != first {
		t.Fatalf("second fill stored %d blobs / %d bytes (used %d); the first %d / %d (used %d)",
			second.blobs, second.bytes, second.used, first.blobs, first.bytes, first.used)
	}
	verify(2, second) // the second round's bytes, not the first's
	deleteAll()
	n.stop()
	n.requireFsckClean()
}

// fillSeed gives each round different content for the same key, so a read
// of the first round's stale bytes in the second round is noticed.
func fillSeed(round, i int) uint64 { return uint64(round)<<32 | uint64(i) }
