package tests

import (
	"testing"
)

// TestClusterStatusTerm: /cluster reports the node's current Raft term,
// which a restart (a new election) raises.
func TestClusterStatusTerm(t *testing.T) {
	n := newNode(t)
	before := n.raftState(t)
	if before.Term == nil {
		t.Fatal("GET /cluster has no term")
	}
	if before.State != "Leader" || *before.Term < 1 || before.Applied < 1 {
		t.Fatalf("a lone node: %s, term %d, applied %d", before.State, *before.Term, before.Applied)
	}
	n.stop()
	n.start()
	after := n.raftState(t)
	if after.Term == nil {
		t.Fatal("GET /cluster has no term")
	}
	if *after.Term <= *before.Term {
		t.Errorf("term %d after a restart, %d before; want it raised by the new election", *after.Term, *before.Term)
	}
}
