package raftfsm

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/blobnode/blobnode/catalog"
)

func reviewReservations(t *testing.T, s *stack) []uint64 {
	t.Helper()
	var ids []uint64
	if err := s.cat.View(func(tx *catalog.Tx) error {
		rs, err := tx.ExpiredReservations(1<<62, 1<<20)
		for _, r := range rs {
			ids = append(ids, r.ID)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return ids
}

// A Commit whose list names a reservation that is gone (expired, aborted)
// is refused with ErrNoReservation and "releases the others too" -- but
// only those listed before the missing one. The store then drops its ids
// (the state machine released them), so the later reservations stay
// allocated until their own deadline (an hour by default).
func TestCommitMissingReservationLeaksLaterOnes(t *testing.T) {
	s := newStack(t, fileDev, 1)
	n := startNode(t, NodeConfig{ID: "n1", Dir: t.TempDir(), BindAddr: freeAddr(t)}, s.fsm)
	propose(t, n, Command{Kind: KindInit, Geometry: testGeometry.String()})
	const lp = 256 << 10
	dl := time.Now().Add(time.Hour).UnixNano()
	for _, id := range []uint64{101, 102, 103} {
		if r := propose(t, n, Command{Kind: KindReserve, ReservationID: id, Size: lp, Deadline: dl}); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	propose(t, n, Command{Kind: KindAbort, ReservationID: 101}) // e.g. expired first: reserved first
	r := propose(t, n, Command{Kind: KindCommit, ReservationIDs: []uint64{101, 102, 103}, Key: "k",
		Size: 3 * lp, ChunkSize: lp, Checksums: []uint32{1, 2, 3}, Identity: 101})
	if !errors.Is(r.Err, ErrNoReservation) {
		t.Fatalf("commit: %v, want ErrNoReservation", r.Err)
	}
	if left := reviewReservations(t, s); len(left) != 0 {
		t.Fatalf("after the refused commit, reservations %v are still allocated; the coordinator no longer knows them", left)
	}
}

// DecodeCommand refuses a Commit with more than maxReservations ids (or
// more than maxChecksums checksums), but Encode and Propose do not check:
// such a command is appended to the log, the state machine stops on it
// ("malformed command" is fatal), and every restart replays and stops on
// it again. A chunked upload of more than 65536 lpages (16 GiB with
// -lpage-shift 18 and a raised -max-blob-size) proposes exactly that.
func TestOversizedCommitPoisonsLog(t *testing.T) {
	s := newStack(t, fileDev, 1)
	n := startNode(t, NodeConfig{ID: "n1", Dir: t.TempDir(), BindAddr: freeAddr(t)}, s.fsm)
	propose(t, n, Command{Kind: KindInit, Geometry: testGeometry.String()})
	ids := make([]uint64, maxReservations+1)
	for i := range ids {
		ids[i] = uint64(i + 1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := n.Propose(ctx, &Command{Kind: KindCommit, ReservationIDs: ids, Key: "big", Size: 1})
	t.Logf("propose: res.Err=%v err=%v", res.Err, err)
	if s.fsm.Err() != nil {
		t.Fatalf("one oversized proposal stopped the state machine: %v", s.fsm.Err())
	}
}
