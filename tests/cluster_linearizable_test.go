package tests

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/blobnode/blobnode/internal/history"
	"github.com/blobnode/blobnode/internal/workload"
)

// TestClusterLinearizableUnderPartition runs concurrent clients on every
// node while the leader is cut off from the group and healed again, then
// reads every key from every node, and checks the whole history with
// porcupine: linearizable, no acknowledged write lost, no read of a value
// never written. BLOBNODE_SEED replays a run's operation mix.
func TestClusterLinearizableUnderPartition(t *testing.T) {
	linearizableUnder(t, "isolate the leader", func(c *cluster) (heal func()) {
		old := c.leader()
		c.isolate(old)
		if l := c.leader(); l == old {
			t.Fatalf("the isolated leader %s is still the majority's leader", c.ids[old])
		}
		return c.heal
	})
}

// TestClusterLinearizableUnderKill: the same history check while a
// follower, then the leader, are killed with SIGKILL and restarted.
func TestClusterLinearizableUnderKill(t *testing.T) {
	linearizableUnder(t, "kill -9 a follower, then the leader", func(c *cluster) (heal func()) {
		f := (c.leader() + 1) % 3
		c.kill(f)
		c.start(f)
		l := c.leader()
		c.kill(l)
		if c.leader() == l {
			t.Fatal("the killed leader still leads")
		}
		return func() { c.start(l) }
	})
}

// linearizableUnder runs the workload on a new three-node cluster, applies
// fault once 150 operations are recorded, heals it (the function fault
// returns) 150 operations later, and checks the history.
func linearizableUnder(t *testing.T, what string, fault func(*cluster) (heal func())) {
	c := newCluster(t, 3)
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BLOBNODE_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("BLOBNODE_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (BLOBNODE_SEED=%d replays the operation mix)", seed, seed)

	rec := history.NewRecorder()
	cfg := workload.Config{
		URLs: c.urls(), Names: c.ids, Clients: 6, OpsPerClient: 400,
		Keys:     []string{"lin/k0", "lin/k1", "lin/k2"},
		Duration: 45 * time.Second,
		// Above the daemon's bound for a write without quorum (10 s), so
		// a minority node's answer is seen rather than cut short.
		RequestTimeout: 12 * time.Second,
		Seed:           seed,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		workload.Run(ctx, cfg, rec) // a bad Config is impossible here
	}()
	t.Cleanup(func() { cancel(); <-done }) // before the nodes stop

	waitOps := func(n int) {
		t.Helper()
		waitFor(t, time.Minute, func() bool {
			select {
			case <-done:
				return true
			default:
				return len(rec.Ops()) >= n
			}
		}, func() string { return fmt.Sprintf("%d ops recorded, want %d", len(rec.Ops()), n) })
	}
	waitOps(150)
	t.Logf("fault: %s", what)
	heal := fault(c)
	waitOps(len(rec.Ops()) + 150)
	t.Log("healing")
	heal()
	<-done
	c.leader()
	if err := workload.FinalReads(context.Background(), cfg, rec); err != nil {
		t.Fatal(err)
	}
	res := requireLinearizable(t, rec)
	if res.FinalReads != len(cfg.Keys)*c.size() {
		t.Fatalf("%d definite final reads, want %d", res.FinalReads, len(cfg.Keys)*c.size())
	}
}
