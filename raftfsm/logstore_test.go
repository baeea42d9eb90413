package raftfsm

import (
	"errors"
	"io/fs"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
)

// countingLogStore counts the reads that reach it.
type countingLogStore struct {
	raft.LogStore
	gets atomic.Int64
}

func (s *countingLogStore) GetLog(index uint64, l *raft.Log) error {
	s.gets.Add(1)
	return s.LogStore.GetLog(index, l)
}

// TestLogStoreCachesDurableEntries: the log store Raft is given serves
// the latest appended entries from memory, caches none that failed to
// append (and still makes the node read-only with the store's own error),
// and forgets deleted ranges.
func TestLogStoreCachesDurableEntries(t *testing.T) {
	s := newStack(t, fileDev, 1)
	failing := &failingLogStore{LogStore: raft.NewInmemStore()}
	inner := &countingLogStore{LogStore: failing}
	ls := newLogStore(inner, s.fsm, newProposer())
	entry := func(i uint64) *raft.Log {
		return &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte{byte(i), byte(i >> 8)}}
	}
	get := func(i uint64) (raft.Log, error) {
		var l raft.Log
		err := ls.GetLog(i, &l)
		return l, err
	}

	if err := ls.StoreLogs([]*raft.Log{entry(1), entry(2), entry(3)}); err != nil {
		t.Fatalf("append: %v", err)
	}
	for i := uint64(1); i <= 3; i++ {
		if l, err := get(i); err != nil || l.Index != i || string(l.Data) != string(entry(i).Data) {
			t.Fatalf("GetLog(%d) = %+v, %v", i, l, err)
		}
	}
	if n := inner.gets.Load(); n != 0 {
		t.Errorf("%d reads of just-appended entries reached the store, want 0", n)
	}

	failing.mu.Lock()
	failing.err = &fs.PathError{Op: "write", Path: "wal/00001.wal", Err: syscall.ENOSPC}
	failing.mu.Unlock()
	if err := ls.StoreLog(entry(4)); err == nil {
		t.Fatal("failing append succeeded")
	}
	var roe *ReadOnlyError
	if ro := s.fsm.ReadOnly(); !errors.As(ro, &roe) || !errors.Is(ro, syscall.ENOSPC) || roe.Where != whereRaftLog {
		t.Fatalf("after a failed append, ReadOnly() = %v; want the Raft log full", ro)
	}
	if l, err := get(4); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("entry 4, whose append failed, read back as %+v, %v", l, err)
	}
	if n := inner.gets.Load(); n != 1 {
		t.Errorf("the read of the failed entry reached the store %d times, want 1 (not cached)", n)
	}

	failing.mu.Lock()
	failing.err = nil
	failing.mu.Unlock()
	if err := ls.StoreLog(entry(4)); err != nil || s.fsm.ReadOnly() != nil {
		t.Fatalf("append after recovery: %v, read-only %v", err, s.fsm.ReadOnly())
	}
	if l, err := get(4); err != nil || l.Index != 4 {
		t.Fatalf("GetLog(4) = %+v, %v", l, err)
	}

	// A follower drops a conflicting suffix: the cache must not answer it.
	if err := ls.DeleteRange(3, 4); err != nil {
		t.Fatalf("DeleteRange: %v", err)
	}
	for _, i := range []uint64{3, 4} {
		if l, err := get(i); !errors.Is(err, raft.ErrLogNotFound) {
			t.Errorf("deleted entry %d read back as %+v, %v", i, l, err)
		}
	}
	if l, err := get(2); err != nil || l.Index != 2 {
		t.Errorf("GetLog(2) after deleting 3..4 = %+v, %v", l, err)
	}
}

// TestLogStoreSaysMonotonic: the wrapped log store tells hashicorp/raft
// whether the store beneath is monotonic, as raft-wal is, so that a
// follower that installs a snapshot empties its log instead of compacting
// it; emptied, raft-wal accepts the entries after the snapshot.
func TestLogStoreSaysMonotonic(t *testing.T) {
	s := newStack(t, fileDev, 1)
	if m, ok := newLogStore(raft.NewInmemStore(), s.fsm, newProposer()).(raft.MonotonicLogStore); ok && m.IsMonotonic() {
		t.Fatal("an in-memory store is reported monotonic")
	}
	w, err := wal.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	ls := newLogStore(w, s.fsm, newProposer())
	m, ok := ls.(raft.MonotonicLogStore)
	if !ok || !m.IsMonotonic() {
		t.Fatal("raft-wal behind the cache is not reported monotonic: raft would compact a follower's log after a snapshot install, and raft-wal would refuse the next append")
	}
	var old []*raft.Log
	for i := uint64(1); i <= 23; i++ {
		old = append(old, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte{byte(i)}})
	}
	if err := ls.StoreLogs(old); err != nil {
		t.Fatal(err)
	}
	// What raft does for a monotonic store once a snapshot at 76 is in.
	first, _ := ls.FirstIndex()
	last, _ := ls.LastIndex()
	if err := ls.DeleteRange(first, last); err != nil {
		t.Fatal(err)
	}
	if err := ls.StoreLogs([]*raft.Log{{Index: 77, Term: 2, Type: raft.LogCommand, Data: []byte("after")}}); err != nil {
		t.Fatalf("append after the emptied log: %v", err)
	}
	var l raft.Log
	if err := ls.GetLog(77, &l); err != nil || string(l.Data) != "after" {
		t.Fatalf("GetLog(77) = %+v, %v", l, err)
	}
}
