package main

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/raft"

	"github.com/blobnode/blobnode/raftfsm"
)

// parsePeers reads -peers: "id=host:port,..." with unique ids and
// addresses, self among them.
func parsePeers(s, self string) ([]raft.Server, error) {
	var out []raft.Server
	seenID, seenAddr := map[string]bool{}, map[string]bool{}
	for _, item := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(item), "=")
		if !ok || id == "" || addr == "" {
			return nil, fmt.Errorf("-peers: %q is not id=host:port", item)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("-peers: %s: %w", id, err)
		}
		if seenID[id] || seenAddr[addr] {
			return nil, fmt.Errorf("-peers: %s=%s is listed twice", id, addr)
		}
		seenID[id], seenAddr[addr] = true, true
		out = append(out, raft.Server{ID: raft.ServerID(id), Address: raft.ServerAddress(addr), Suffrage: raft.Voter})
	}
	if !seenID[self] {
		return nil, fmt.Errorf("-peers does not list this node's -node-id %q", self)
	}
	// The configuration every node bootstraps must be identical: order it.
	slices.SortFunc(out, func(a, b raft.Server) int { return strings.Compare(string(a.ID), string(b.ID)) })
	return out, nil
}

// advertisedRaft is the Raft address of self in peers.
func advertisedRaft(peers []raft.Server, self string) string {
	for _, p := range peers {
		if string(p.ID) == self {
			return string(p.Address)
		}
	}
	return ""
}

// nodeStatus is one member in GET /cluster.
type nodeStatus struct {
	ID           string `json:"id"`
	RaftAddress  string `json:"raft_address"`
	APIAddress   string `json:"api_address,omitempty"`
	Suffrage     string `json:"suffrage"`
	Reachable    bool   `json:"reachable"`
	AppliedIndex uint64 `json:"applied_index"`
}

// members probes every server of the Raft configuration (in parallel,
// each bounded) for its API address and applied index.
func members(ctx context.Context, node *raftfsm.Node, selfAPI string) []nodeStatus {
	f := node.Raft().GetConfiguration()
	if f.Error() != nil {
		return nil
	}
	servers := f.Configuration().Servers
	out := make([]nodeStatus, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		out[i] = nodeStatus{ID: string(s.ID), RaftAddress: string(s.Address), Suffrage: s.Suffrage.String()}
		if s.ID == node.ID() {
			out[i].Reachable, out[i].APIAddress, out[i].AppliedIndex = true, selfAPI, node.FSM().Applied()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
			defer cancel()
			if st, err := node.Probe(pctx, s.Address); err == nil {
				out[i].Reachable, out[i].APIAddress, out[i].AppliedIndex = true, st.APIAddr, st.Applied
			}
		}()
	}
	wg.Wait()
	return out
}

// joinAdvertise is the Raft address peers dial for a node without -peers:
// -raft-addr, or, when that listens on every interface, the host of the
// API address peers use with -raft-addr's port.
func joinAdvertise(raftAddr, apiAddr string) string {
	host, port, err := net.SplitHostPort(raftAddr)
	if err != nil {
		return raftAddr
	}
	if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
		return raftAddr
	}
	apiHost, _, err := net.SplitHostPort(apiAddr)
	if err != nil || apiHost == "" {
		return raftAddr
	}
	return net.JoinHostPort(apiHost, port)
}
