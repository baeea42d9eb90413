package store

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blobnode/blobnode/internal/solevoter"
	"github.com/blobnode/blobnode/raftfsm"
	"github.com/blobnode/blobnode/volume"
)

// readOnlyLeader is a Proposer whose Aborts are refused as read-only
// while this node itself takes writes: the leader's disk is full.
type readOnlyLeader struct {
	Proposer
	aborts  atomic.Int64
	refused chan struct{} // one per Abort refused, if there is room
}

func (p *readOnlyLeader) Propose(ctx context.Context, c *raftfsm.Command) (raftfsm.Result, error) {
	if c.Kind == raftfsm.KindAbort {
		p.aborts.Add(1)
		select {
		case p.refused <- struct{}{}:
		default:
		}
		return raftfsm.Result{}, &raftfsm.ReadOnlyError{Where: "volume", Err: raftfsm.ErrNoSpace}
	}
	return p.Proposer.Propose(ctx, c)
}

// TestAbortWaitsOutAReadOnlyLeader: aborting the reservations of an
// upload that failed because the leader is read-only neither spins (one
// signed request to the leader after another) nor keeps Close waiting.
func TestAbortWaitsOutAReadOnlyLeader(t *testing.T) {
	g := volume.Geometry{SpageShift: 12, LpageShift: 18, VolumeSize: 16 << 20}
	one := solevoter.Start(t, g, volume.NewMemDevice(g.VolumeSize, 1))
	p := &readOnlyLeader{Proposer: one.Node, refused: make(chan struct{}, 3)}
	st := New(p, one.FSM, one.Vol, Config{Logger: slog.New(slog.DiscardHandler)})
	start := time.Now()
	st.abortWhenWritable([]uint64{41, 42})
	for range 3 { // refused, waited, refused, waited longer, refused
		<-p.refused
	}
	closed := make(chan struct{})
	go func() {
		st.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatalf("Close still waits for the aborts after 10 s (%d Abort proposals)", p.aborts.Load())
	}
	elapsed := time.Since(start)
	// Waits of 50, 100, 200 ms... allow a few per elapsed period.
	if n := p.aborts.Load(); n > 3+int64(elapsed/abortRetryMin) {
		t.Fatalf("%d Abort proposals in %v: it does not wait between refusals", n, elapsed.Round(time.Millisecond))
	}
}
