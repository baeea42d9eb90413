package raftfsm

import (
	"errors"
	"testing"

	"github.com/blobnode/blobnode/catalog"
)

// TestLocalWriteRevoked: a local write claims reserved pages only while
// the reservation is live, and the state machine revokes the claim before
// it frees the pages (Abort, Expire, Delete of the committed blob), so a
// late writer fails instead of writing over their next owner.
func TestLocalWriteRevoked(t *testing.T) {
	page := make([]byte, 4096)
	for _, tc := range []struct {
		name string
		free []Command
	}{
		{"abort", []Command{{Kind: KindAbort, ReservationID: 7}}},
		{"expire", []Command{{Kind: KindExpire, Now: 1 << 40}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t, memDev, 1)
			applyCmds(t, s.fsm, Command{Kind: KindInit, Geometry: testGeometry.String()},
				Command{Kind: KindReserve, ReservationID: 7, Size: 4096, Deadline: 100})
			w, exts, err := s.fsm.BeginWrite(7)
			if err != nil || len(exts) != 1 {
				t.Fatalf("BeginWrite of a live reservation: %v %v", exts, err)
			}
			defer w.End()
			if err := w.WriteAt(s.vol, page, exts[0].Offset); err != nil {
				t.Fatalf("write while live: %v", err)
			}
			applyCmds(t, s.fsm, tc.free...)
			if err := w.WriteAt(s.vol, page, exts[0].Offset); !errors.Is(err, ErrNoReservation) {
				t.Fatalf("write after the pages were freed: %v; want ErrNoReservation", err)
			}
			if _, _, err := s.fsm.BeginWrite(7); !errors.Is(err, ErrNoReservation) {
				t.Fatalf("BeginWrite of a freed reservation: %v", err)
			}
		})
	}

	t.Run("blob deleted", func(t *testing.T) {
		s := newStack(t, memDev, 1)
		applyCmds(t, s.fsm, Command{Kind: KindInit, Geometry: testGeometry.String()}, inlineCmd("k", []byte("hello")))
		var version uint64
		for _, b := range blobsOf(t, s) {
			version = b.Version
		}
		w, err := s.fsm.BeginBlobWrite("k", version)
		if err != nil {
			t.Fatal(err)
		}
		defer w.End()
		if _, err := s.fsm.BeginBlobWrite("k", version+1); !errors.Is(err, ErrNotFound) {
			t.Fatalf("claim of a version that is not current: %v", err)
		}
		exts := blobsOf(t, s)[0].Extents
		applyCmds(t, s.fsm, Command{Kind: KindDelete, Key: "k"})
		if err := w.WriteAt(s.vol, page[:5], exts[0].Offset); !errors.Is(err, ErrNoReservation) {
			t.Fatalf("write after the blob was deleted: %v; want ErrNoReservation", err)
		}
	})
}

func blobsOf(t *testing.T, s *stack) []catalog.Blob {
	t.Helper()
	var out []catalog.Blob
	if err := s.fsm.View(func(tx *catalog.Tx) error {
		return tx.ForEachBlob(func(b catalog.Blob) error {
			out = append(out, b)
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestRenewExtendsLease: a renewed reservation outlives its first deadline
// and expires only after the renewed one; a renewal never shortens one.
func TestRenewExtendsLease(t *testing.T) {
	s := newStack(t, memDev, 1)
	applyCmds(t, s.fsm, Command{Kind: KindInit, Geometry: testGeometry.String()},
		Command{Kind: KindReserve, ReservationID: 7, Size: 4096, Deadline: 100},
		Command{Kind: KindRenew, ReservationIDs: []uint64{7, 8}, Deadline: 500},
		Command{Kind: KindRenew, ReservationIDs: []uint64{7}, Deadline: 200},
		Command{Kind: KindExpire, Now: 300})
	live := func() bool {
		var ok bool
		if err := s.fsm.View(func(tx *catalog.Tx) error {
			var err error
			_, ok, err = tx.GetReservation(7)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !live() {
		t.Fatal("a reservation renewed to 500 expired at 300")
	}
	applyCmds(t, s.fsm, Command{Kind: KindExpire, Now: 500})
	if live() {
		t.Fatal("the renewed reservation outlived its renewed deadline")
	}
}

// TestHeldMarksCommit: a Commit marks its blob held verified here only if
// every one of its reservations was recorded Held while live; a freed
// reservation cannot be recorded, and a freed one is forgotten, so a
// later Commit that names it (refused) marks nothing.
func TestHeldMarksCommit(t *testing.T) {
	s := newStack(t, memDev, 1)
	applyCmds(t, s.fsm, Command{Kind: KindInit, Geometry: testGeometry.String()},
		Command{Kind: KindReserve, ReservationID: 1, Size: 4096, Deadline: 1 << 50},
		Command{Kind: KindReserve, ReservationID: 2, Size: 4096, Deadline: 1 << 50},
		Command{Kind: KindReserve, ReservationID: 3, Size: 4096, Deadline: 1 << 50})
	w, _, err := s.fsm.BeginWrite(1, 2)
	if err != nil {
		t.Fatal(err)
	}
	defer w.End()
	if err := w.Held([]uint64{3}); err == nil {
		t.Fatal("Held of a reservation the write did not claim succeeded")
	}
	if err := w.Held([]uint64{1}); err != nil {
		t.Fatalf("Held of a live claimed reservation: %v", err)
	}
	commit := func(key string, ids ...uint64) Command {
		return Command{Kind: KindCommit, Key: key, ReservationIDs: ids, Size: int64(4096 * len(ids)),
			ChunkSize: 1 << 20, Checksums: []uint32{1}, Identity: ids[0]}
	}
	before := s.fsm.Unmarked()
	// Reservation 2 was never recorded: the blob of 1 and 2 stays unmarked.
	applyCmds(t, s.fsm, commit("both", 1, 2))
	if marked(t, s, "both") {
		t.Fatal("a blob with a reservation not held was marked")
	}
	if s.fsm.Unmarked() != before+1 {
		t.Fatalf("unmarked count %d; want %d", s.fsm.Unmarked(), before+1)
	}
	// Its reservations were consumed: they cannot be recorded any more.
	if err := w.Held([]uint64{1}); !errors.Is(err, ErrNoReservation) {
		t.Fatalf("Held after the Commit consumed the reservation: %v; want ErrNoReservation", err)
	}
	w3, _, err := s.fsm.BeginWrite(3)
	if err != nil {
		t.Fatal(err)
	}
	defer w3.End()
	if err := w3.Held([]uint64{3}); err != nil {
		t.Fatal(err)
	}
	applyCmds(t, s.fsm, commit("three", 3))
	if !marked(t, s, "three") {
		t.Fatal("a blob whose every reservation was held is not marked")
	}
}

func marked(t *testing.T, s *stack, key string) bool {
	t.Helper()
	var ok bool
	if err := s.fsm.View(func(tx *catalog.Tx) error {
		var err error
		_, ok, err = tx.LocalVersion(key)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return ok
}
