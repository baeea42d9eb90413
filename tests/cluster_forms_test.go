package tests

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/blobnode/blobnode/internal/netfault"
)

// TestClusterForms starts three nodes as one group and checks that they
// elect one leader, that every node answers GET /cluster and /readyz, and
// that the peer traffic really crossed the proxies, each node dialling from
// its own IP (else no link of the cluster can be cut).
func TestClusterForms(t *testing.T) {
	c := newCluster(t, 3)
	l := c.leader()
	t.Logf("leader %s", c.ids[l])
	for i := range c.size() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		s, err := c.status(ctx, i)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", c.ids[i], err)
		}
		want := "Follower"
		if i == l {
			want = "Leader"
		}
		if s.State != want || s.Leader.ID != c.ids[l] {
			t.Errorf("%s: state %q, leader %q; want %q, leader %q", c.ids[i], s.State, s.Leader.ID, want, c.ids[l])
		}
		// A follower learns of the leader's entries a moment after it
		// learns of the leader.
		waitFor(t, readyTimeout, func() bool {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			s, err := c.status(ctx, i)
			return err == nil && s.CommitIndex > 0 && s.AppliedIndex > 0
		}, func() string { return c.ids[i] + ": nothing committed" })
		if r := c.node(i).do(t, http.MethodGet, "/readyz", nil); r.status != http.StatusOK {
			t.Errorf("%s: /readyz %v", c.ids[i], r)
		}
	}
	stats := c.net.Stats()
	for l, s := range stats {
		if l.From == netfault.Unknown {
			t.Errorf("%d connections to %s came from an IP that is no node's: a node must dial its peers from the IP of its own -raft-addr/-http-addr", s.Refused, l.To)
		}
	}
	// Raft needs the leader to reach every follower.
	for i := range c.size() {
		if i != l && stats[netfault.Link{From: c.ids[l], To: c.ids[i]}].Forwarded == 0 {
			t.Errorf("no connection from the leader %s to %s crossed the proxy: %s", c.ids[l], c.ids[i], c.linkStats())
		}
	}
}
