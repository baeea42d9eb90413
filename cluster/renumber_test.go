package cluster

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/internal/solevoter"
	"github.com/blobnode/blobnode/raftfsm"
	"github.com/blobnode/blobnode/volume"
)

// TestProposeRenumbersACollidingRequestID: when another proposer's
// command already holds the request id a Coordinator draws (their
// prefixes met), the state machine refuses the entry, executing nothing;
// Propose then draws a random id and the command applies once, so the
// client never sees the collision. With the renumbering taken out, the
// command fails with ErrRequestIDReused.
func TestProposeRenumbersACollidingRequestID(t *testing.T) {
	g := solevoter.Start(t, volume.Geometry{SpageShift: 12, LpageShift: 18, VolumeSize: 16 << 20}, volume.NewMemDevice(16<<20, 1))
	node, cat := g.Node, g.Cat
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := New(Config{Node: node, Secret: []byte("0123456789abcdef0123456789abcdef")})

	const taken = 0xabcdef0000001234
	other := &raftfsm.Command{Kind: raftfsm.KindReserve, ReservationID: 5, Size: 4096, Deadline: 1 << 62, RequestID: taken}
	if res, err := node.Propose(ctx, other); err != nil || res.Err != nil {
		t.Fatalf("the other proposer's command: %v, %v", err, res.Err)
	}
	// This coordinator's next id is the one just used.
	const counterMask = 1<<(64-requestIDPrefixBits) - 1
	c.ids.prefix = taken &^ counterMask
	c.ids.counter.Store(taken&counterMask - 1)

	mine := &raftfsm.Command{Kind: raftfsm.KindReserve, ReservationID: 6, Size: 4096, Deadline: 1 << 62}
	res, err := c.Propose(ctx, mine)
	if err != nil || res.Err != nil {
		t.Fatalf("Propose with a colliding request id: %v, %v; want it applied under another id", err, res.Err)
	}
	if mine.RequestID == taken || mine.RequestID == 0 {
		t.Fatalf("request id %#x after Propose: not renumbered", mine.RequestID)
	}
	err = cat.View(func(tx *catalog.Tx) error {
		for _, id := range []uint64{5, 6} {
			if _, ok, err := tx.GetReservation(id); err != nil || !ok {
				return errors.Join(err, errors.New("reservation missing"))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("both reservations should exist: %v", err)
	}
	// The same command again, under its new id: answered from the request
	// table, not executed twice (a second Reserve of 6 is a Duplicate).
	if res, err := c.Propose(ctx, mine); err != nil || res.Err != nil {
		t.Fatalf("retry under the new id: %v, %v", err, res.Err)
	}
}

// A refusal for a reused id crosses the wire, so a follower that forwarded
// the command renumbers it too.
func TestWireCarriesRequestIDReused(t *testing.T) {
	w, err := encodeResult(raftfsm.Result{Err: raftfsm.ErrRequestIDReused})
	if err != nil {
		t.Fatal(err)
	}
	r, err := decodeResult(w)
	if err != nil || !errors.Is(r.Err, raftfsm.ErrRequestIDReused) {
		t.Fatalf("decoded %v, %v; want ErrRequestIDReused", r.Err, err)
	}
}
