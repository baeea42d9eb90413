package raftfsm

import (
	"testing"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
)

// TestLogStoreReopensAfterSuffixTruncation: a follower that clears a log
// suffix (entries a new leader does not have) and then stops can read its
// whole log at the next start. raft-wal v0.4.0 marked the tail segment
// sealed at a tail truncation without writing the segment's index block,
// so every later open failed to read it ("sealed segment has no index
// block") and raft.NewRaft panicked at each start: the node could never
// rejoin (hashicorp/raft-wal#31, fixed in v0.4.1). Found by the fault
// campaign (scripts/jepsen.sh --seed 7: a bridge made node1 clear a
// suffix, a kill then left it in a restart loop).
func TestLogStoreReopensAfterSuffixTruncation(t *testing.T) {
	dir := t.TempDir()
	open := func() (*wal.WAL, *metadb.BoltMetaDB) {
		t.Helper()
		meta := &metadb.BoltMetaDB{} // as StartNode opens it
		w, err := wal.Open(dir, wal.WithMetaStore(meta))
		if err != nil {
			t.Fatalf("open the log: %v", err)
		}
		return w, meta
	}
	entries := func(from, to, term uint64) []*raft.Log {
		var ls []*raft.Log
		for i := from; i <= to; i++ {
			ls = append(ls, &raft.Log{Index: i, Term: term, Type: raft.LogCommand, Data: []byte{byte(i)}})
		}
		return ls
	}

	w, meta := open()
	if err := w.StoreLogs(entries(1, 10, 1)); err != nil {
		t.Fatalf("append 1..10: %v", err)
	}
	// What raft does on a follower whose entries 8..10 conflict with the
	// new leader's ("clearing log suffix"), then the leader's entries.
	if err := w.DeleteRange(8, 10); err != nil {
		t.Fatalf("clear the suffix 8..10: %v", err)
	}
	if err := w.StoreLogs(entries(8, 12, 2)); err != nil {
		t.Fatalf("append 8..12: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("close the log: %v", err)
	}
	meta.Close()

	w, meta = open()
	defer meta.Close()
	defer w.Close()
	for i := uint64(1); i <= 12; i++ {
		var l raft.Log
		if err := w.GetLog(i, &l); err != nil {
			t.Fatalf("after the restart, entry %d: %v", i, err)
		}
		want := uint64(1)
		if i >= 8 {
			want = 2
		}
		if l.Index != i || l.Term != want {
			t.Fatalf("after the restart, entry %d is index %d term %d, want term %d", i, l.Index, l.Term, want)
		}
	}
}
