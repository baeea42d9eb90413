package store

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/blobnode/blobnode/raftfsm"
	"github.com/blobnode/blobnode/volume"
)

// TestReceiveReplica: a replica writes an upload's bytes into its own copy
// of the reservations, verified chunk by chunk, only while they are live,
// and refuses bytes that do not verify; what it received reads back once
// the Commit applies.
func TestReceiveReplica(t *testing.T) {
	g := volume.Geometry{SpageShift: 12, LpageShift: 20, VolumeSize: 64 << 20}
	s := newReviewStack(t, g, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	body := reviewBody(7, 600<<10) // three chunks
	const id, identity = 41, 41
	res, err := s.node.Propose(ctx, &raftfsm.Command{Kind: raftfsm.KindReserve, ReservationID: id, Size: int64(len(body)), Deadline: 1 << 62})
	if err != nil || res.Err != nil {
		t.Fatalf("reserve: %v %v", err, res.Err)
	}
	var sums []uint32
	for c := int64(0); c*ChunkSize < int64(len(body)); c++ {
		sums = append(sums, chunkChecksum(identity, c, body[c*ChunkSize:min((c+1)*ChunkSize, int64(len(body)))]))
	}
	w := ReplicaWrite{ReservationIDs: []uint64{id}, Index: res.Index, Identity: identity, Size: int64(len(body))}
	framed := func(body []byte) *bytes.Reader {
		var b []byte
		for c, sum := range sums {
			b = binary.BigEndian.AppendUint32(b, sum)
			b = append(b, body[int64(c)*ChunkSize:min(int64(c+1)*ChunkSize, int64(len(body)))]...)
		}
		return bytes.NewReader(b)
	}

	bad := bytes.Clone(body)
	bad[ChunkSize+5] ^= 1
	if err := s.st.ReceiveReplica(ctx, w, framed(bad)); !errors.Is(err, ErrBadDigest) {
		t.Fatalf("bytes that do not verify: %v; want ErrBadDigest", err)
	}
	if err := s.st.ReceiveReplica(ctx, w, framed(body[:len(body)-1])); !errors.Is(err, ErrIncompleteBody) {
		t.Fatalf("a short body: %v; want ErrIncompleteBody", err)
	}
	if err := s.st.ReceiveReplica(ctx, w, io.MultiReader(framed(body), strings.NewReader("x"))); !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("bytes after the last chunk: %v; want ErrInvalidArgument", err)
	}
	unknown := w
	unknown.ReservationIDs = []uint64{99}
	if err := s.st.ReceiveReplica(ctx, unknown, framed(body)); !errors.Is(err, ErrGone) {
		t.Fatalf("bytes for a reservation that is not live: %v; want ErrGone", err)
	}
	// An index this node has not applied: it waits (here until ctx ends).
	ahead := w
	ahead.Index = res.Index + 1000
	short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
	err = s.st.ReceiveReplica(short, ahead, framed(body))
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("bytes for reservations not applied here yet: %v; want a wait that ends with the context", err)
	}

	if err := s.st.ReceiveReplica(ctx, w, framed(body)); err != nil {
		t.Fatalf("receive: %v", err)
	}
	cres, err := s.node.Propose(ctx, &raftfsm.Command{Kind: raftfsm.KindCommit, ReservationIDs: []uint64{id}, Size: int64(len(body)),
		Key: "replicated", Identity: identity, ChunkSize: ChunkSize, Checksums: sums})
	if err != nil || cres.Err != nil {
		t.Fatalf("commit: %v %v", err, cres.Err)
	}
	got, err := s.get(t, "replicated")
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("read back: %d bytes, %v", len(got), err)
	}
	// The replica synced and verified what it received: the Commit
	// marked the blob held verified here, with nothing left to repair.
	if v, ok := s.localVersion(t, "replicated"); !ok || v != cres.Index {
		t.Fatalf("local mark after a received replica's Commit: %d, %v; want %d", v, ok, cres.Index)
	}
	// The reservation became the blob: more bytes for it are refused.
	if err := s.st.ReceiveReplica(ctx, w, framed(body)); !errors.Is(err, ErrGone) {
		t.Fatalf("bytes for a committed reservation: %v; want ErrGone", err)
	}
}
