package store

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/blobnode/blobnode/raftfsm"
	"github.com/blobnode/blobnode/volume"
)

// TestWritesMarkHeldAtCommit: a node that wrote a blob's bytes itself (an
// inline blob, a streamed upload of known size, a chunked upload whose
// tail was moved) marks it held verified in the Commit's own transaction,
// so the repairer never reads it back; a Commit of bytes this node did not
// write stays unmarked and is counted for the repairer.
func TestWritesMarkHeldAtCommit(t *testing.T) {
	g := volume.Geometry{SpageShift: 12, LpageShift: 16, VolumeSize: 64 << 20}
	s := newReviewStack(t, g, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for _, tc := range []struct {
		name  string
		size  int
		known bool
	}{
		{"inline", 1 << 10, true},
		{"streamed", 300 << 10, true},
		{"chunked with a moved tail", 100 << 10, false},
	} {
		body := reviewBody(uint64(tc.size), tc.size)
		size := int64(len(body))
		if !tc.known {
			size = -1
		}
		before := s.fsm.Unmarked()
		info, err := s.st.Put(ctx, PutRequest{Key: tc.name, Size: size, Body: bytes.NewReader(body)})
		if err != nil {
			t.Fatalf("%s: put: %v", tc.name, err)
		}
		if v, ok := s.localVersion(t, tc.name); !ok || v != info.Version {
			t.Errorf("%s: local mark %d, %v; want version %d", tc.name, v, ok, info.Version)
		}
		if got := s.fsm.Unmarked(); got != before {
			t.Errorf("%s: unmarked count went from %d to %d", tc.name, before, got)
		}
	}

	// Bytes this node never wrote: committed unmarked, and counted.
	res, err := s.node.Propose(ctx, &raftfsm.Command{Kind: raftfsm.KindReserve, ReservationID: 77, Size: 4096, Deadline: 1 << 62})
	if err != nil || res.Err != nil {
		t.Fatalf("reserve: %v %v", err, res.Err)
	}
	before := s.fsm.Unmarked()
	cres, err := s.node.Propose(ctx, &raftfsm.Command{Kind: raftfsm.KindCommit, ReservationIDs: []uint64{77}, Size: 4096,
		Key: "elsewhere", Identity: 77, ChunkSize: ChunkSize, Checksums: []uint32{1}})
	if err != nil || cres.Err != nil {
		t.Fatalf("commit: %v %v", err, cres.Err)
	}
	if v, ok := s.localVersion(t, "elsewhere"); ok {
		t.Errorf("a blob whose bytes this node never wrote is marked held (version %d)", v)
	}
	if got := s.fsm.Unmarked(); got != before+1 {
		t.Errorf("unmarked count %d after an unmarked Commit; want %d", got, before+1)
	}
}
