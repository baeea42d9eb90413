package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
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

// lostAnswers is a Proposer whose Reserves apply but whose answers are
// lost, as when the leader fails after appending them; a pool's batch is
// answered batchDelay late, so that Close may begin first.
type lostAnswers struct {
	Proposer
	batchDelay time.Duration
}

func (p lostAnswers) Propose(ctx context.Context, c *raftfsm.Command) (raftfsm.Result, error) {
	res, err := p.Proposer.Propose(ctx, c)
	if c.Kind == raftfsm.KindReserveBatch {
		time.Sleep(p.batchDelay)
	}
	if err == nil && (c.Kind == raftfsm.KindReserve || c.Kind == raftfsm.KindReserveBatch) {
		return raftfsm.Result{}, errors.New("outcome unknown: the leader did not answer")
	}
	return res, err
}

// TestReserveOfUnknownOutcomeIsAborted: a Reserve (or a pool's batch)
// whose proposal failed may have been applied; the failed upload aborts
// it rather than leave its space held until its deadline (an hour by
// default), also when Close begins before the batch's answer is in (the
// pool's aborts went through abortLater, which refuses once Close has
// begun: ci-fresh once failed with 16 reservations left).
func TestReserveOfUnknownOutcomeIsAborted(t *testing.T) {
	for _, delay := range []time.Duration{0, 200 * time.Millisecond} {
		t.Run(fmt.Sprint("batch answered ", delay, " late"), func(t *testing.T) { reserveOfUnknownOutcome(t, delay) })
	}
}

func reserveOfUnknownOutcome(t *testing.T, batchDelay time.Duration) {
	g := volume.Geometry{SpageShift: 12, LpageShift: 18, VolumeSize: 16 << 20}
	one := solevoter.Start(t, g, volume.NewMemDevice(g.VolumeSize, 1))
	st := New(lostAnswers{one.Node, batchDelay}, one.FSM, one.Vol, Config{Logger: slog.New(slog.DiscardHandler)})
	s := &reviewStack{vol: one.Vol, alloc: one.Alloc, cat: one.Cat, fsm: one.FSM, node: one.Node, st: st}
	ctx := context.Background()
	for _, n := range []int{20 << 10, 300 << 10} { // pooled, then reserved per upload
		if err := s.put(ctx, "k", bytes.Repeat([]byte{'k'}, n)); err == nil {
			t.Fatalf("PUT of %d bytes succeeded with its Reserve's answer lost", n)
		}
	}
	st.Close() // waits for the background aborts
	if n := s.reservations(t); n != 0 {
		t.Fatalf("%d reservations left after failed uploads whose Reserves applied", n)
	}
}

// refusedCommits is a Proposer that answers every Commit (inline or not)
// and Delete with err, proposing nothing.
type refusedCommits struct {
	Proposer
	err error
}

func (p refusedCommits) Propose(ctx context.Context, c *raftfsm.Command) (raftfsm.Result, error) {
	switch c.Kind {
	case raftfsm.KindCommit, raftfsm.KindCommitInline, raftfsm.KindDelete:
		return raftfsm.Result{}, p.err
	}
	return p.Proposer.Propose(ctx, c)
}

// TestWriteOutcomeUnknown: a write whose proposal reached a leader that
// was then lost fails with ErrOutcomeUnknown (it may yet apply), one that
// reached no leader with ErrUnavailable alone (nothing was done); either
// way a streamed upload's reservations are aborted.
func TestWriteOutcomeUnknown(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		unknown bool
	}{
		{"leader lost", fmt.Errorf("no leader applied the command within 10s: %w: %w", raftfsm.ErrNotLeader, raftfsm.ErrOutcomeUnknown), true},
		{"no leader", fmt.Errorf("no leader applied the command within 10s: %w", raftfsm.ErrNotLeader), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := volume.Geometry{SpageShift: 12, LpageShift: 18, VolumeSize: 16 << 20}
			one := solevoter.Start(t, g, volume.NewMemDevice(g.VolumeSize, 1))
			st := New(refusedCommits{one.Node, tc.err}, one.FSM, one.Vol, Config{Logger: slog.New(slog.DiscardHandler)})
			s := &reviewStack{vol: one.Vol, alloc: one.Alloc, cat: one.Cat, fsm: one.FSM, node: one.Node, st: st}
			ctx := context.Background()
			check := func(what string, err error) {
				t.Helper()
				if !errors.Is(err, ErrUnavailable) || errors.Is(err, ErrOutcomeUnknown) != tc.unknown {
					t.Fatalf("%s: %v; want ErrUnavailable, outcome unknown %v", what, err, tc.unknown)
				}
			}
			for _, n := range []int{1000, 300 << 10} { // inline, then streamed
				check(fmt.Sprintf("PUT of %d bytes", n), s.put(ctx, "k", bytes.Repeat([]byte{'k'}, n)))
			}
			check("DELETE", st.Delete(ctx, "k", Condition{}))
			st.Close() // waits for the background aborts
			if n := s.reservations(t); n != 0 {
				t.Fatalf("%d reservations left after the failed uploads", n)
			}
		})
	}
}

// renewals is a Proposer that counts Renews.
type renewals struct {
	Proposer
	n atomic.Int64
}

func (p *renewals) Propose(ctx context.Context, c *raftfsm.Command) (raftfsm.Result, error) {
	if c.Kind == raftfsm.KindRenew {
		p.n.Add(1)
	}
	return p.Proposer.Propose(ctx, c)
}

// TestUploadRenewsBeforeCommit: an upload whose body's sync took most of
// its lease renews the lease before it commits (the body's reads renew
// it, but nothing did during the sync).
func TestUploadRenewsBeforeCommit(t *testing.T) {
	g := volume.Geometry{SpageShift: 12, LpageShift: 18, VolumeSize: 16 << 20}
	dev := volume.NewMemDevice(g.VolumeSize, 1)
	one := solevoter.Start(t, g, dev)
	var clock atomic.Int64 // ns past the start
	start := time.Now()
	const ttl = time.Hour
	p := &renewals{Proposer: one.Node}
	st := New(p, one.FSM, one.Vol, Config{Logger: slog.New(slog.DiscardHandler), ReservationTTL: ttl,
		Now: func() time.Time { return start.Add(time.Duration(clock.Load())) }})
	t.Cleanup(func() { st.Close() })
	s := &reviewStack{vol: one.Vol, alloc: one.Alloc, cat: one.Cat, fsm: one.FSM, node: one.Node, st: st}
	dev.SetSyncHook(func() { clock.Store(int64(ttl / 2)) }) // the body's sync takes half the lease
	if err := s.put(context.Background(), "k", bytes.Repeat([]byte{'k'}, 300<<10)); err != nil {
		t.Fatal(err)
	}
	if n := p.n.Load(); n != 1 {
		t.Fatalf("%d Renews for an upload whose sync took half its lease; want 1, before the Commit", n)
	}
}
