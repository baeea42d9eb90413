package raftfsm

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/hashicorp/raft"
)

// FuzzApplyCommand feeds arbitrary entry bytes to a state machine that
// holds blobs and reservations. An entry that does not decode must stop the
// FSM with ErrBadCommand and change nothing: not the catalog, not the
// allocator, not the applied index. An entry that decodes must never stop
// it (a refusal goes in the Result): a command a coordinator could propose
// must not halt every replica, and if it carries a request id, the same
// entry again returns the same Result and changes nothing. Either way the
// catalog and the allocator still agree page for page. (FuzzDecodeCommand holds the canonical
// round-trip property of the decoder itself.)
func FuzzApplyCommand(f *testing.F) {
	// Few seeds: each builds a state machine, and the seed corpus runs in
	// every plain `go test`.
	for i, c := range sampleCommands() {
		enc := c.Encode()
		switch i % 3 {
		case 0:
			f.Add(enc)
		case 1:
			f.Add(enc[:len(enc)-1])
		}
	}
	// Commands aimed at the workload's own state: its keys and the ids
	// the workload reserved.
	const prefix = 24
	for i, l := range newWorkload(1).logs(prefix + 8) {
		if i >= prefix && i%4 == 3 {
			f.Add(l.Data) // what the workload would have done next
		}
	}
	f.Add([]byte{commandFormatV1, 0x7f})
	f.Fuzz(func(t *testing.T, data []byte) {
		s := newStack(t, memDev, 1)
		applyLogs(t, s.fsm, newWorkload(1).logs(prefix), rand.New(rand.NewPCG(1, 1)), 8)
		before := s.state()

		res := s.fsm.ApplyBatch([]*raft.Log{{Index: prefix + 1, Term: 2, Type: raft.LogCommand, Data: data}})
		r, _ := res[0].(Result)
		if _, decErr := DecodeCommand(data); decErr != nil {
			if !errors.Is(r.Err, ErrStopped) || !errors.Is(s.fsm.Err(), ErrBadCommand) {
				t.Fatalf("malformed entry %x: result %v, FSM error %v; want a stop for ErrBadCommand", truncateHex(data), r.Err, s.fsm.Err())
			}
			if s.fsm.Applied() != prefix {
				t.Fatalf("applied %d after a malformed entry, want %d", s.fsm.Applied(), prefix)
			}
			sameState(t, "state after a malformed entry", s.state(), before)
		} else {
			if err := s.fsm.Err(); err != nil {
				t.Fatalf("a decodable entry %x stopped the state machine: %v", truncateHex(data), err)
			}
			if s.fsm.Applied() != prefix+1 {
				t.Fatalf("applied %d, want %d", s.fsm.Applied(), prefix+1)
			}
			// The same entry again: with a request id it is answered from
			// the record and changes nothing.
			if c, _ := DecodeCommand(data); c.RequestID != 0 {
				after := s.content()
				again := s.fsm.ApplyBatch([]*raft.Log{{Index: prefix + 2, Term: 2, Type: raft.LogCommand, Data: data}})
				if err := s.fsm.Err(); err != nil {
					t.Fatalf("the retry of %x stopped the state machine: %v", truncateHex(data), err)
				}
				if g, w := fmtResult(again[0]), fmtResult(r); g != w {
					t.Fatalf("retry of %x: %s; want the recorded %s", truncateHex(data), g, w)
				}
				sameState(t, "state after the retry", s.content(), after)
			}
		}
		s.check()
	})
}
