package tests

import (
	"testing"
)

// raftView is the Raft part of GET /cluster.
type raftView struct {
	State        string  `json:"state"`
	Term         *uint64 `json:"term"`
	AppliedIndex uint64  `json:"applied_index"`
	CommitIndex  uint64  `json:"commit_index"`
}

func (n *node) raftView(t testing.TB) raftView {
	t.Helper()
	var v raftView
	n.status(t, &v)
	if v.Term == nil {
		t.Fatal("GET /cluster has no term")
	}
	return v
}

// TestClusterStatusTerm: /cluster reports the node's current Raft term,
// which a restart (a new election) raises.
func TestClusterStatusTerm(t *testing.T) {
	n := newNode(t)
	before := n.raftView(t)
	if before.State != "Leader" || *before.Term < 1 || before.AppliedIndex < 1 {
		t.Fatalf("a lone node: %s, term %d, applied %d", before.State, *before.Term, before.AppliedIndex)
	}
	n.stop()
	n.start()
	after := n.raftView(t)
	if *after.Term <= *before.Term {
		t.Errorf("term %d after a restart, %d before; want it raised by the new election", *after.Term, *before.Term)
	}
}
