package store

import (
	"bytes"
	"context"
	"testing"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/volume"
)

// TestRepairMarksOnlyDurableBytes: a blob this node holds unmarked, whose
// bytes verify but are not yet durable (a replica stream cut off in its
// sync, a write-back not synced), is marked held verified only once they
// are: the mark outlives a crash (an unclean start inherits it without
// reading the blob), so a mark over bytes a power cut could drop would
// hide a missing copy.
func TestRepairMarksOnlyDurableBytes(t *testing.T) {
	ctx := context.Background()
	g := volume.Geometry{SpageShift: 12, LpageShift: 16, VolumeSize: 16 << 20}
	dev := volume.NewMemDevice(g.VolumeSize, 1)
	s := newReviewStackOn(t, g, Config{Chunks: &recordingSource{}}, dev)
	if err := s.put(ctx, "k", bytes.Repeat([]byte{'k'}, 3000)); err != nil {
		t.Fatal(err)
	}
	// As if its bytes had come from a stream whose sync never finished.
	if err := s.cat.Update(func(tx *catalog.Tx) error { return tx.ClearLocal("k") }); err != nil {
		t.Fatal(err)
	}
	if dev.Unsynced() == 0 {
		t.Fatal("the blob's bytes are already durable: the test proves nothing")
	}
	if err := s.st.repairBlob(ctx, s.blob(t, "k"), false); err != nil {
		t.Fatalf("repair: %v", err)
	}
	if _, ok := s.localVersion(t, "k"); !ok {
		t.Fatal("an intact blob is not marked held verified after the repairer verified it")
	}
	if n := dev.Unsynced(); n != 0 {
		t.Fatalf("the blob is marked held verified with %d writes not yet durable", n)
	}
}
