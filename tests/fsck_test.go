package tests

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/blobnode/blobnode/space"
	"github.com/blobnode/blobnode/volume"
)

// leakPage allocates one spage in the stopped node's volume, as a crash
// or a bug between allocator and catalog would leave it: allocated, and
// owned by no blob or reservation. It returns the page.
func (n *node) leakPage(t testing.TB) space.Extent {
	t.Helper()
	if n.running() {
		t.Fatal("leakPage: node is running")
	}
	dev, err := volume.OpenFileDevice(filepath.Join(n.dir, "volume.blob"))
	if err != nil {
		t.Fatal(err)
	}
	vol, err := volume.Open(dev, nil)
	if err != nil {
		dev.Close()
		t.Fatal(err)
	}
	defer func() {
		if err := vol.Close(); err != nil {
			t.Fatalf("close volume: %v", err)
		}
	}()
	a, err := space.Open(vol)
	if err != nil {
		t.Fatal(err)
	}
	exts, err := a.Allocate(a.SpageSize())
	if err != nil || len(exts) != 1 {
		t.Fatalf("allocate one spage: %v, %v", exts, err)
	}
	if err := a.Commit(context.Background()); err != nil {
		t.Fatal(err)
	}
	return exts[0]
}

// TestFsckLeakedPageNoBlobs: a data directory whose catalog holds no blob
// and no reservation but whose allocator has one page allocated must fail
// fsck, naming the leaked page. (An empty catalog yields no owned extents
// at all; that must still be compared with the allocator.)
func TestFsckLeakedPageNoBlobs(t *testing.T) {
	n := newNode(t, "-volume-size", "64MiB")
	n.stop()
	n.requireFsckClean()

	leak := n.leakPage(t)
	code, out := n.fsck()
	want := fmt.Sprintf("page %d+%d allocated but owned by nothing (leaked)", leak.Offset, leak.Length)
	if code != 1 || !strings.Contains(out, want) || !strings.Contains(out, "0 blobs") {
		t.Fatalf("fsck of a directory with no blob and one leaked page: exit %d, want 1 with %q:\n%s", code, want, out)
	}
}
