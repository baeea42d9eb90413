package store

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/blobnode/blobnode/raftfsm"
	"github.com/blobnode/blobnode/volume"
)

// Replicator copies an upload's bytes to the other replicas of a group
// before its Commit is proposed (cluster.Coordinator implements it). It
// returns once a majority of the group, this node included, holds them
// durably, with the IDs of the nodes that do (the Commit records them);
// stragglers catch up through repair.
type Replicator interface {
	Replicate(ctx context.Context, w ReplicaWrite, open func() io.Reader) ([]string, error)
}

// ReplicaWrite describes the bytes of an upload for a replica: where they
// go (its reservations, which a replica looks up in its own applied state
// once it has applied Index) and how to verify them.
type ReplicaWrite struct {
	ReservationIDs []uint64 `json:"reservations"`
	Index          uint64   `json:"index"`    // the highest log index of the Reserves
	Identity       uint64   `json:"identity"` // seeds the chunk checksums
	Size           int64    `json:"size"`
	Checksums      []uint32 `json:"checksums"` // one per ChunkSize chunk
}

// ErrGone: a replica was sent bytes for reservations that are no longer
// live in its applied state (aborted, expired, or committed and freed).
var ErrGone = errors.New("store: the reservation is no longer live")

// ReceiveReplica writes an upload's bytes, read from body in blob order,
// into this node's copy of its reservations and makes them durable. It
// first waits until this node has applied w.Index (the pages must be
// this node's reservation before anything is written to them: a lagging
// replica may still have an older blob to write there), claims the pages
// (a reservation freed meanwhile revokes the claim), and verifies every
// chunk before writing it.
func (s *Store) ReceiveReplica(ctx context.Context, w ReplicaWrite, body io.Reader) error {
	chunks := (w.Size + ChunkSize - 1) / ChunkSize
	if w.Size <= 0 || int64(len(w.Checksums)) != chunks || len(w.ReservationIDs) == 0 {
		return fmt.Errorf("%w: %d bytes with %d checksums and %d reservations", ErrInvalidArgument, w.Size, len(w.Checksums), len(w.ReservationIDs))
	}
	if err := s.fsm.WaitApplied(ctx, w.Index); err != nil {
		return mapErr(err)
	}
	claim, exts, err := s.fsm.BeginWrite(w.ReservationIDs...)
	if errors.Is(err, raftfsm.ErrNoReservation) {
		return fmt.Errorf("%w: %w", ErrGone, err)
	}
	if err != nil {
		return mapErr(err)
	}
	defer claim.End()
	var ext extents
	ext.add(exts...)
	if ext.size < w.Size {
		return fmt.Errorf("%w: %d bytes into reservations of %d", ErrInvalidArgument, w.Size, ext.size)
	}
	bufp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bufp)
	buf := *bufp
	for c := range chunks {
		n := min(ChunkSize, w.Size-c*ChunkSize)
		if _, err := io.ReadFull(body, buf[:n]); err != nil {
			return fmt.Errorf("%w: chunk %d: %w", ErrIncompleteBody, c, err)
		}
		if got := chunkChecksum(w.Identity, c, buf[:n]); got != w.Checksums[c] {
			return fmt.Errorf("%w: replica chunk %d: checksum %08x, want %08x", ErrBadDigest, c, got, w.Checksums[c])
		}
		err := ext.each(c*ChunkSize, n, func(dev int64, from, to int) error {
			return claim.WriteAt(s.vol, buf[from:to], dev)
		})
		if errors.Is(err, raftfsm.ErrNoReservation) {
			return fmt.Errorf("%w: %w", ErrGone, err)
		}
		if err != nil {
			return fmt.Errorf("store: write replica: %w", err)
		}
	}
	if err := s.vol.SyncData(ctx); err != nil {
		return fmt.Errorf("store: sync replica: %w", err)
	}
	if err := claim.Held(w.ReservationIDs); err != nil {
		// Committed or freed meanwhile: the repairer verifies what
		// was committed, and the coordinator counts this ack anyway.
		s.log.Debug("replica: cannot record the bytes held", "err", err)
	}
	return nil
}

// blobReader reads an upload's bytes back from this node's volume, in
// blob order.
type blobReader struct {
	vol  *volume.Volume
	ext  *extents
	size int64
	off  int64
}

func (r *blobReader) Read(p []byte) (int, error) {
	if r.off >= r.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), r.size-r.off)
	err := r.ext.each(r.off, n, func(dev int64, from, to int) error {
		_, err := r.vol.ReadAt(p[from:to], dev)
		return err
	})
	if err != nil {
		return 0, err
	}
	r.off += n
	return int(n), nil
}
