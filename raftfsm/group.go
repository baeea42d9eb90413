package raftfsm

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Forming a group from a static peer list.
//
// Every node of a new group starts with the same list of initial voters
// (NodeConfig.Peers). A node without Raft state bootstraps that
// configuration only once it has probed every other peer (over its Raft
// port, authenticated by the cluster secret: PeerStreamLayer.Probe) and
// found none that has taken part in a group: all bootstrap the identical
// configuration, so their logs agree from entry 1. If any peer has state
// beyond the bootstrap (a term after the first election, or more than the
// bootstrap entry), the group exists and this node is one of its members
// that lost its state (a wiped data directory): it must never form a
// second group, so it does not bootstrap and waits for the leader to
// replicate the log (or a snapshot) to it. Until every peer has answered
// it does neither: two wiped nodes of three must not form a group while
// the third, which holds the data, is down.
//
// A wiped node has also forgotten its vote. Voting twice in one term could
// elect two leaders in it, so such a node refuses every vote request for a
// term up to the highest term its peers reported (voteFence): it may have
// voted in any of those, and in no later one.

// formation is what a node without Raft state does.
type formation int

const (
	formBootstrap formation = iota + 1
	formRejoin
)

// probeInterval is the pause between rounds of probing peers.
const probeInterval = 200 * time.Millisecond

// decideFormation probes the peers until it can decide, or ctx ends. For
// formRejoin it also returns the highest term a peer reported.
func decideFormation(ctx context.Context, stream *PeerStreamLayer, self raft.ServerID, peers []raft.Server, log *slog.Logger) (formation, uint64, error) {
	lastLog := time.Time{}
	for {
		reachable, maxTerm, rejoin := 0, uint64(0), false
		var missing []string
		for _, p := range peers {
			if p.ID == self {
				continue
			}
			pctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := stream.Probe(pctx, string(p.Address))
			cancel()
			if err != nil {
				missing = append(missing, fmt.Sprintf("%s (%v)", p.ID, err))
				continue
			}
			reachable++
			maxTerm = max(maxTerm, st.Term)
			if st.Term > 1 || st.LastIndex > 1 {
				rejoin = true
			}
		}
		switch {
		case rejoin:
			log.Warn("peers already form a group: rejoining it without a vote in any term up to theirs (this node's Raft state is gone)",
				"fence_term", maxTerm)
			return formRejoin, maxTerm, nil
		case len(missing) == 0:
			return formBootstrap, 0, nil
		}
		if time.Since(lastLog) > 5*time.Second {
			log.Info("waiting for every initial peer before forming the group", "reachable", reachable, "missing", missing)
			lastLog = time.Now()
		}
		t := time.NewTimer(probeInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return 0, 0, fmt.Errorf("raftfsm: forming the group: peers unreachable (%v): %w", missing, ctx.Err())
		case <-t.C:
		}
	}
}

// fencedTransport refuses vote requests for terms up to fence: see the
// comment on forming a group. Everything else passes through.
type fencedTransport struct {
	*raft.NetworkTransport
	fence uint64
	out   chan raft.RPC
	log   *slog.Logger

	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func newFencedTransport(t *raft.NetworkTransport, fence uint64, log *slog.Logger) *fencedTransport {
	f := &fencedTransport{NetworkTransport: t, fence: fence, out: make(chan raft.RPC), log: log,
		stop: make(chan struct{}), done: make(chan struct{})}
	go f.run()
	return f
}

func (f *fencedTransport) Consumer() <-chan raft.RPC { return f.out }

func (f *fencedTransport) run() {
	defer close(f.done)
	in := f.NetworkTransport.Consumer()
	for {
		select {
		case <-f.stop:
			return
		case rpc := <-in:
			if req, ok := rpc.Command.(*raft.RequestVoteRequest); ok && req.Term <= f.fence {
				f.log.Info("refusing a vote: this node may have voted in that term before it lost its state",
					"term", req.Term, "fence_term", f.fence)
				rpc.Respond(&raft.RequestVoteResponse{RPCHeader: raft.RPCHeader{ProtocolVersion: req.ProtocolVersion}, Term: req.Term}, nil)
				continue
			}
			select {
			case f.out <- rpc:
			case <-f.stop:
				return
			}
		}
	}
}

// Close stops the fence and closes the transport.
func (f *fencedTransport) Close() error {
	f.once.Do(func() { close(f.stop) })
	<-f.done
	return f.NetworkTransport.Close()
}
