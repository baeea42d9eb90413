package raftfsm

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// testGroup is n nodes of one group over real TCP with a cluster secret.
type testGroup struct {
	t      *testing.T
	peers  []raft.Server
	dirs   []string
	stacks []*stack
	nodes  []*Node
}

func newTestGroup(t *testing.T, n int) *testGroup {
	g := &testGroup{t: t, stacks: make([]*stack, n), nodes: make([]*Node, n)}
	addrs := freeAddrs(t, n)
	for i := range n {
		g.peers = append(g.peers, raft.Server{ID: raft.ServerID(nodeName(i)), Address: raft.ServerAddress(addrs[i]), Suffrage: raft.Voter})
		g.dirs = append(g.dirs, t.TempDir())
		g.stacks[i] = newStack(t, fileDev, uint64(i+1))
	}
	return g
}

func nodeName(i int) string { return "n" + string(rune('1'+i)) }

func (g *testGroup) config(i int) NodeConfig {
	return NodeConfig{ID: nodeName(i), Dir: g.dirs[i], BindAddr: string(g.peers[i].Address), Bootstrap: true,
		Logger: discardLogger(), PeerAuth: PeerAuth{Secret: []byte(testSecret)}, Peers: g.peers}
}

// start starts the nodes listed concurrently (each may wait for the
// others before it forms the group) and waits for all of them.
func (g *testGroup) start(ctx context.Context, which ...int) []error {
	errs := make([]error, len(which))
	done := make(chan struct{}, len(which))
	for k, i := range which {
		go func() {
			defer func() { done <- struct{}{} }()
			n, err := StartNode(ctx, g.config(i), g.stacks[i].fsm)
			errs[k] = err
			if err == nil {
				g.nodes[i] = n
			}
		}()
	}
	for range which {
		<-done
	}
	for _, i := range which {
		if n := g.nodes[i]; n != nil {
			g.t.Cleanup(func() { _ = n.Close() })
		}
	}
	return errs
}

// leader waits until one node leads and returns it.
func (g *testGroup) leader(ctx context.Context) *Node {
	g.t.Helper()
	for {
		for _, n := range g.nodes {
			if n != nil && n.IsLeader() {
				return n
			}
		}
		select {
		case <-ctx.Done():
			g.t.Fatal("no leader")
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// TestGroupFormsFromPeers: three nodes given the same peer list form one
// group, whatever order they start in, and replicate a command to all.
func TestGroupFormsFromPeers(t *testing.T) {
	g := newTestGroup(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, err := range g.start(ctx, 0, 1, 2) {
		if err != nil {
			t.Fatal(err)
		}
	}
	l := g.leader(ctx)
	propose(t, l, Command{Kind: KindInit, Geometry: testGeometry.String()})
	res := propose(t, l, Command{Kind: KindReserve, ReservationID: 9, Size: 8192, Deadline: 1})
	for i, s := range g.stacks {
		if err := s.fsm.WaitApplied(ctx, l.Raft().AppliedIndex()); err != nil {
			t.Fatalf("n%d: %v", i+1, err)
		}
	}
	if cf := l.Raft().GetConfiguration(); cf.Error() != nil || len(cf.Configuration().Servers) != 3 {
		t.Fatalf("configuration %+v", cf.Configuration())
	}
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	// A leader with other voters confirms its leadership for every read
	// (soleLeaderIndex does not apply).
	if _, err := l.ReadIndex(ctx); err != nil { // commits the term's no-op
		t.Fatal(err)
	}
	if idx, ok := l.soleLeaderIndex(); ok {
		t.Fatalf("a leader of three voters took the sole voter's read shortcut (index %d)", idx)
	}
}

// TestGroupWaitsForEveryPeer: a node that cannot reach every initial peer
// does not form a group: two wiped nodes of three must not elect each
// other while the third, which may hold the data, is down.
func TestGroupWaitsForEveryPeer(t *testing.T) {
	g := newTestGroup(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, err := range g.start(ctx, 0, 1) {
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("start without the third peer: %v; want it to wait until the context ends", err)
		}
	}
}

// TestGroupRejoinAfterWipe: a node whose Raft state is gone while its
// peers form a group does not bootstrap a second one: it rejoins, gets the
// log, and refuses votes for the terms it may have voted in.
func TestGroupRejoinAfterWipe(t *testing.T) {
	g := newTestGroup(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for _, err := range g.start(ctx, 0, 1, 2) {
		if err != nil {
			t.Fatal(err)
		}
	}
	l := g.leader(ctx)
	propose(t, l, Command{Kind: KindInit, Geometry: testGeometry.String()})
	victim := 0
	for i, n := range g.nodes {
		if n != l {
			victim = i
			break
		}
	}
	if err := g.nodes[victim].Close(); err != nil {
		t.Fatal(err)
	}
	g.nodes[victim] = nil
	g.dirs[victim] = t.TempDir()                               // Raft state gone
	g.stacks[victim] = newStack(t, fileDev, uint64(victim+10)) // so is the catalog
	want := propose(t, l, Command{Kind: KindReserve, ReservationID: 5, Size: 4096, Deadline: 1})
	if err := g.start(ctx, victim)[0]; err != nil {
		t.Fatal(err)
	}
	n := g.nodes[victim]
	if _, ok := n.trans.(*fencedTransport); !ok {
		t.Fatal("the wiped node bootstrapped instead of rejoining")
	}
	if err := g.stacks[victim].fsm.WaitApplied(ctx, l.Raft().AppliedIndex()); err != nil {
		t.Fatalf("the wiped node did not catch up: %v", err)
	}
	if cf := n.Raft().GetConfiguration(); cf.Error() != nil || len(cf.Configuration().Servers) != 3 {
		t.Fatalf("the wiped node's configuration: %+v", cf.Configuration())
	}
	if want.Err != nil {
		t.Fatal(want.Err)
	}
}

// TestVoteFence: a fenced transport answers vote requests for terms up to
// the fence itself, refused, and passes later terms to Raft.
func TestVoteFence(t *testing.T) {
	newTrans := func() *raft.NetworkTransport {
		tr, err := raft.NewTCPTransport(freeAddr(t), nil, 2, 5*time.Second, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		return tr
	}
	a, inner := newTrans(), newTrans()
	defer a.Close()
	b := newFencedTransport(inner, 7, discardLogger())
	defer b.Close()
	for _, tc := range []struct {
		term      uint64
		delivered bool
	}{{3, false}, {7, false}, {8, true}} {
		got := make(chan uint64, 1)
		if tc.delivered {
			go func() {
				rpc := <-b.Consumer()
				req := rpc.Command.(*raft.RequestVoteRequest)
				got <- req.Term
				rpc.Respond(&raft.RequestVoteResponse{Term: req.Term, Granted: true}, nil)
			}()
		}
		var resp raft.RequestVoteResponse
		req := &raft.RequestVoteRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax, ID: []byte("c"), Addr: []byte(a.LocalAddr())}, Term: tc.term}
		if err := a.RequestVote("b", b.LocalAddr(), req, &resp); err != nil {
			t.Fatalf("term %d: %v", tc.term, err)
		}
		if resp.Granted != tc.delivered {
			t.Fatalf("term %d (fence 7): granted %v; want %v", tc.term, resp.Granted, tc.delivered)
		}
		if tc.delivered {
			if term := <-got; term != tc.term {
				t.Fatalf("delivered term %d", term)
			}
			continue
		}
		// The fence answered instead of delivering: nothing is queued.
		select {
		case rpc := <-b.Consumer():
			t.Fatalf("term %d (fence 7) reached Raft: %T", tc.term, rpc.Command)
		default:
		}
	}
}

// TestReadOnlyLeaderHandsOff: a leader whose disk turns read-only hands
// leadership to a healthy voter instead of holding the group read-only.
func TestReadOnlyLeaderHandsOff(t *testing.T) {
	g := newTestGroup(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, err := range g.start(ctx, 0, 1, 2) {
		if err != nil {
			t.Fatal(err)
		}
	}
	l := g.leader(ctx)
	l.FSM().setReadOnly(whereCatalog, errors.New("injected: disk full"))
	for {
		next := g.leader(ctx)
		if next != l {
			propose(t, next, Command{Kind: KindNoop}) // the group takes writes again
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("the read-only leader kept leading")
		case <-time.After(10 * time.Millisecond):
		}
	}
}
