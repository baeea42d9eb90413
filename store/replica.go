package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/blobnode/blobnode/raftfsm"
	"github.com/blobnode/blobnode/volume"
)

// Replicator copies an upload's bytes to the other replicas of a group
// before its Commit is proposed (cluster.Coordinator implements it).
// Stream opens the copy once the upload's reservations are known; the
// upload then sends each chunk as it writes its own, and Finish returns
// once a majority of the group, this node included, holds them durably,
// with the IDs of the nodes that do (the Commit records them).
// Stragglers catch up through repair.
type Replicator interface {
	Stream(ctx context.Context, w ReplicaWrite) (ReplicaStream, error)
}

// ReplicaStream is one upload's copy to the other replicas, used by the
// upload's goroutine only. Send queues chunk (copied) with its checksum;
// Finish is called once this node's own copy is durable; Abort (always
// safe, also after Finish) cancels whatever is still under way.
type ReplicaStream interface {
	Send(ctx context.Context, sum uint32, chunk []byte) error
	Finish(ctx context.Context) ([]string, error)
	Abort()
}

// ReplicaWrite describes the bytes of an upload for a replica: where they
// go (its reservations, which a replica looks up in its own applied state
// once it has applied Index). The bytes follow as ChunkSize chunks in blob
// order, each preceded by its checksum, which the replica verifies before
// it writes the chunk.
type ReplicaWrite struct {
	ReservationIDs []uint64 `json:"reservations"`
	Index          uint64   `json:"index"`    // the highest log index of the Reserves
	Identity       uint64   `json:"identity"` // seeds the chunk checksums
	Size           int64    `json:"size"`
}

// ErrGone: a replica was sent bytes for reservations that are no longer
// live in its applied state (aborted, expired, or committed and freed).
var ErrGone = errors.New("store: the reservation is no longer live")

// ReceiveReplica writes an upload's bytes, read from body as chunks in
// blob order each preceded by its checksum (big-endian u32), into this
// node's copy of its reservations and makes them durable. It
// first waits until this node has applied w.Index (the pages must be
// this node's reservation before anything is written to them: a lagging
// replica may still have an older blob to write there), claims the pages
// (a reservation freed meanwhile revokes the claim), and verifies every
// chunk before writing it.
func (s *Store) ReceiveReplica(ctx context.Context, w ReplicaWrite, body io.Reader) error {
	chunks := (w.Size + ChunkSize - 1) / ChunkSize
	if w.Size <= 0 || len(w.ReservationIDs) == 0 {
		return fmt.Errorf("%w: %d bytes for %d reservations", ErrInvalidArgument, w.Size, len(w.ReservationIDs))
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
	var sum [4]byte
	for c := range chunks {
		n := min(ChunkSize, w.Size-c*ChunkSize)
		if _, err := io.ReadFull(body, sum[:]); err != nil {
			return fmt.Errorf("%w: chunk %d's checksum: %w", ErrIncompleteBody, c, err)
		}
		if _, err := io.ReadFull(body, buf[:n]); err != nil {
			return fmt.Errorf("%w: chunk %d: %w", ErrIncompleteBody, c, err)
		}
		if got, want := chunkChecksum(w.Identity, c, buf[:n]), binary.BigEndian.Uint32(sum[:]); got != want {
			return fmt.Errorf("%w: replica chunk %d: checksum %08x, want %08x", ErrBadDigest, c, got, want)
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
		s.replicaBytes.Add(uint64(n))
	}
	if err := s.vol.SyncData(ctx); err != nil {
		return fmt.Errorf("store: sync replica: %w", err)
	}
	if err := claim.Held(w.ReservationIDs); err != nil {
		// Committed or freed meanwhile: the repairer verifies what
		// was committed, and the coordinator counts this ack anyway.
		s.log.Debug("replica: cannot record the bytes held", "err", err)
	}
	// The body ends with the last chunk. (Synced before this check, so
	// this node's sync overlaps the coordinator's own.)
	var extra [1]byte
	if n, err := io.ReadFull(body, extra[:]); n > 0 || !errors.Is(err, io.EOF) {
		return fmt.Errorf("%w: bytes after the last chunk (%w)", ErrInvalidArgument, err)
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
