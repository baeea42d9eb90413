package raftfsm

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// recordingApplier answers every Apply at once and records, for each,
// the command and whether an append was in progress.
type recordingApplier struct {
	p      *proposer
	mu     sync.Mutex
	cmds   []string
	during int // Apply calls made while appending
}

func (a *recordingApplier) Apply(cmd []byte, _ time.Duration) raft.ApplyFuture {
	a.p.mu.Lock()
	appending := a.p.appending > 0
	a.p.mu.Unlock()
	a.mu.Lock()
	defer a.mu.Unlock()
	a.cmds = append(a.cmds, string(cmd))
	if appending {
		a.during++
	}
	return nil
}

// startProposer runs a proposer over a recordingApplier; done is closed
// when its run returns.
func startProposer() (p *proposer, a *recordingApplier, done chan struct{}) {
	p = newProposer()
	a = &recordingApplier{p: p}
	p.raft = a
	done = make(chan struct{})
	go func() { defer close(done); p.run() }()
	return p, a, done
}

// waitQueued waits until n proposals are queued.
func waitQueued(t *testing.T, p *proposer, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p.mu.Lock()
		got := len(p.queue)
		p.mu.Unlock()
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d proposals queued after 10s, want %d", got, n)
		}
		time.Sleep(time.Millisecond)
	}
}

// Proposals that arrive during an append are held until it ends, then
// handed to Raft together, in the order they came; Apply is never called
// while an append is in progress.
func TestProposerHoldsProposalsDuringAppend(t *testing.T) {
	p, a, done := startProposer()
	stopped := make(chan struct{})
	defer func() { close(stopped); p.stop(); <-done }()

	// Not appending: a proposal goes straight through.
	if _, err := p.submit([]byte("first"), time.Second, stopped); err != nil {
		t.Fatal(err)
	}
	p.appendStarted()
	const n = 5
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		waitQueued(t, p, i) // one at a time, so the order is known
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := p.submit(fmt.Appendf(nil, "held-%d", i), time.Second, stopped)
			errs <- err
		}()
	}
	waitQueued(t, p, n)
	a.mu.Lock()
	applied := len(a.cmds)
	a.mu.Unlock()
	if applied != 1 {
		t.Fatalf("%d commands applied during the append, want only the first", applied-1)
	}
	p.appendDone()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"first", "held-0", "held-1", "held-2", "held-3", "held-4"}
	if fmt.Sprint(a.cmds) != fmt.Sprint(want) || a.during != 0 {
		t.Fatalf("applied %v (%d while appending), want %v (none while appending)", a.cmds, a.during, want)
	}
}

// After stop, submit refuses at once and run has returned; a proposal
// queued but not handed on returns when the node's stop channel closes.
func TestProposerStop(t *testing.T) {
	p, a, done := startProposer()
	stopped := make(chan struct{})
	p.appendStarted() // nothing is handed on
	res := make(chan error, 1)
	go func() {
		_, err := p.submit([]byte("queued"), time.Second, stopped)
		res <- err
	}()
	waitQueued(t, p, 1)
	p.stop()
	<-done
	close(stopped)
	if err := <-res; !errors.Is(err, raft.ErrRaftShutdown) {
		t.Fatalf("queued proposal at stop: %v, want ErrRaftShutdown", err)
	}
	if _, err := p.submit([]byte("late"), time.Second, stopped); !errors.Is(err, raft.ErrRaftShutdown) {
		t.Fatalf("submit after stop: %v, want ErrRaftShutdown", err)
	}
	if len(a.cmds) != 0 {
		t.Fatalf("applied %v after stop", a.cmds)
	}
}
