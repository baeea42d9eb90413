package raftfsm

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func TestAdvertiseAddr(t *testing.T) {
	secret := PeerAuth{Secret: []byte(testSecret)}
	for _, tc := range []struct {
		adv  string
		auth PeerAuth
		want string // "": refused
	}{
		// Over the stream layer, as written: no lookup (.invalid never
		// resolves, RFC 6761), a name stays a name.
		{"node1:7080", secret, "node1:7080"},
		{"n1.invalid:7080", secret, "n1.invalid:7080"},
		{"127.0.0.1:7080", secret, "127.0.0.1:7080"},
		{"[::1]:7080", secret, "[::1]:7080"},
		{"0.0.0.0:7080", secret, "0.0.0.0:7080"},
		{"n1.invalid:0", secret, ""},
		{"n1.invalid", secret, ""},
		{"n1.invalid:port-of-nothing", secret, ""},
		// hashicorp/raft's plain TCP transport takes an IP: resolved.
		{"127.0.0.1:7080", PeerAuth{}, "127.0.0.1:7080"},
		{"localhost:7080", PeerAuth{}, "127.0.0.1:7080"},
		{"127.0.0.1:0", PeerAuth{}, ""},
	} {
		got, err := advertiseAddr(tc.adv, tc.auth)
		switch {
		case tc.want == "" && err == nil:
			t.Errorf("advertiseAddr(%q, secret %v) = %v, want an error", tc.adv, tc.auth.Secret != nil, got)
		case tc.want != "" && err != nil:
			t.Errorf("advertiseAddr(%q, secret %v): %v", tc.adv, tc.auth.Secret != nil, err)
		case tc.want != "" && (got.String() != tc.want || got.Network() != "tcp"):
			t.Errorf("advertiseAddr(%q, secret %v) = %s %q, want tcp %q", tc.adv, tc.auth.Secret != nil, got.Network(), got, tc.want)
		}
	}
}

// TestStartNodeAdvertisesAName: a node whose advertised Raft address is a
// name that does not resolve (yet: a container or pod whose name is
// published only once it runs) starts, and advertises the name.
func TestStartNodeAdvertisesAName(t *testing.T) {
	s := newStack(t, fileDev, 1)
	_, port, _ := net.SplitHostPort(freeAddr(t))
	adv := net.JoinHostPort("n1.invalid", port)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := StartNode(ctx, NodeConfig{ID: "n1", Dir: t.TempDir(), BindAddr: net.JoinHostPort("127.0.0.1", port),
		Advertise: adv, Bootstrap: true, Logger: discardLogger(), PeerAuth: PeerAuth{Secret: []byte(testSecret)}}, s.fsm)
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	if err := n.WaitLeader(ctx); err != nil {
		t.Fatal(err)
	}
	if addr, _ := n.Raft().LeaderWithID(); string(addr) != adv {
		t.Errorf("leader address %q, want %q", addr, adv)
	}
}

// TestGroupAdvertisesPeerNames: in a group whose peers are listed by name,
// every node knows the leader by the name its peers list, not by an IP
// resolved at its start (which goes stale when a container's IP changes,
// and followers forward writes and read-index requests to it).
func TestGroupAdvertisesPeerNames(t *testing.T) {
	g := newTestGroup(t, 3)
	for i, p := range g.peers {
		_, port, _ := net.SplitHostPort(string(p.Address))
		g.peers[i].Address = raft.ServerAddress(net.JoinHostPort("localhost", port)) // binds 127.0.0.1 too
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, err := range g.start(ctx, 0, 1, 2) {
		if err != nil {
			t.Fatal(err)
		}
	}
	l := g.leader(ctx)
	var want raft.ServerAddress
	for _, p := range g.peers {
		if p.ID == l.ID() {
			want = p.Address
		}
	}
	for i, n := range g.nodes {
		for {
			addr, id := n.Raft().LeaderWithID()
			if id == l.ID() {
				if addr != want {
					t.Errorf("%s knows leader %s at %q, want %q (its -peers entry)", nodeName(i), id, addr, want)
				}
				break
			}
			select {
			case <-ctx.Done():
				t.Fatalf("%s does not know leader %s", nodeName(i), l.ID())
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}
