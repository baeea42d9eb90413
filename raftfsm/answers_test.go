package raftfsm

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// answers delivers an applied entry's result, with its index, to the
// waiter of its request id only, and only for an entry of the waiter's own
// command: another command reusing the id, and an entry refused for that,
// answer nobody. A cancelled wait gets nothing.
func TestAnswersDeliverByRequestID(t *testing.T) {
	var a answers
	r7, cancel7 := a.await(7, []byte("seven"))
	r8, cancel8 := a.await(8, []byte("eight"))
	cancel8()
	defer cancel7()
	r9, cancel9 := a.await(9, []byte("nine"))
	defer cancel9()
	logs := []*raft.Log{{Index: 10}, {Index: 11, Data: []byte("eight")}, {Index: 12, Data: []byte("other")}, {Index: 13, Data: []byte("nine")}, {Index: 14, Data: []byte("seven")}}
	out := []any{Result{Version: 10}, Result{Version: 11}, Result{Version: 12}, Result{Err: ErrRequestIDReused}, Result{Err: ErrNotFound}}
	var reqs []entryRequest
	for i, id := range []uint64{0, 8, 7, 9, 7} {
		if id != 0 {
			reqs = append(reqs, entryRequest{id: id, fingerprint: entryFingerprint(logs[i].Data)})
		} else {
			reqs = append(reqs, entryRequest{})
		}
	}
	a.deliver(logs, reqs, out)
	select {
	case res := <-r7:
		if res.Index != 14 || res.Err != ErrNotFound {
			t.Fatalf("request 7 got %+v, want entry 14's result (entry 12 is another command with its id)", res)
		}
	default:
		t.Fatal("request 7 got no answer")
	}
	select {
	case res := <-r8:
		t.Fatalf("cancelled request 8 got %+v", res)
	case res := <-r9:
		t.Fatalf("request 9 got %+v, the refusal of an entry reusing its id", res)
	default:
	}
	if len(a.waiting) != 1 {
		t.Fatalf("%d waits left after delivery and cancel, want request 9's", len(a.waiting))
	}
}

// A proposal through the node is answered by the state machine directly
// (its result carries the entry's index), and leaves no wait registered.
func TestProposeAnsweredByStateMachine(t *testing.T) {
	s := newStack(t, fileDev, 1)
	n := startNode(t, NodeConfig{ID: "n1", Dir: t.TempDir(), BindAddr: freeAddr(t)}, s.fsm)
	propose(t, n, Command{Kind: KindInit, Geometry: testGeometry.String()})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := n.Propose(ctx, &Command{Kind: KindReserve, ReservationID: 5, Size: 4096, Deadline: 1, RequestID: 99})
	if err != nil || res.Err != nil {
		t.Fatalf("Propose: %v, %v", err, res.Err)
	}
	if res.Index == 0 || res.Index > n.Raft().LastIndex() || len(res.Extents) == 0 {
		t.Fatalf("result %+v: want the reserve's extents and its entry's index", res)
	}
	if len(s.fsm.answers.waiting) != 0 {
		t.Fatalf("%d waits left after the proposal", len(s.fsm.answers.waiting))
	}
}

// ReadPoint: a read at commit index c waits for c until everything up to
// c is applied, then only for the last entry up to c that was not a no-op
// (the no-ops after it change nothing a read sees).
func TestReadPointSkipsTrailingNoops(t *testing.T) {
	s := newStack(t, memDev, 1)
	f := s.fsm
	applyCmds(t, f, Command{Kind: KindInit, Geometry: testGeometry.String()})
	applyCmds(t, f, Command{Kind: KindReserve, ReservationID: 3, Size: 4096, Deadline: 100})
	write := f.Applied()
	applyCmds(t, f, Command{Kind: KindNoop}, Command{Kind: KindNoop})
	last := f.Applied()
	if got := f.ReadPoint(last); got != write {
		t.Fatalf("ReadPoint(%d) = %d after two no-ops; want the write at %d", last, got, write)
	}
	if got := f.ReadPoint(last + 1); got != last+1 {
		t.Fatalf("ReadPoint(%d), beyond what is applied, = %d; want it unchanged", last+1, got)
	}
	applyCmds(t, f, Command{Kind: KindNoop}, Command{Kind: KindReserve, ReservationID: 4, Size: 4096, Deadline: 100})
	if got := f.ReadPoint(last); got != last {
		t.Fatalf("ReadPoint(%d) = %d with a write applied after it; want it unchanged", last, got)
	}
}
