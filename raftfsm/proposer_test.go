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

// submitWait submits data and waits for Raft to take it.
func submitWait(t *testing.T, p *proposer, data []byte) raft.ApplyFuture {
	t.Helper()
	pr, err := p.submit(data, time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	return <-pr.taken
}

// Proposals that arrive during an append are held until it ends, then
// handed to Raft together, in the order they came; Apply is never called
// while an append is in progress.
func TestProposerHoldsProposalsDuringAppend(t *testing.T) {
	p, a, done := startProposer()
	defer func() { p.stop(); <-done }()

	submitWait(t, p, []byte("first")) // not appending: straight through
	p.appendStarted()
	const n = 5
	var prs []*proposal
	for i := range n {
		pr, err := p.submit(fmt.Appendf(nil, "held-%d", i), time.Now().Add(time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		prs = append(prs, pr)
	}
	waitQueued(t, p, n)
	a.mu.Lock()
	applied := len(a.cmds)
	a.mu.Unlock()
	if applied != 1 {
		t.Fatalf("%d commands applied during the append, want only the first", applied-1)
	}
	p.appendDone()
	for _, pr := range prs {
		<-pr.taken
	}
	want := []string{"first", "held-0", "held-1", "held-2", "held-3", "held-4"}
	if fmt.Sprint(a.cmds) != fmt.Sprint(want) || a.during != 0 {
		t.Fatalf("applied %v (%d while appending), want %v (none while appending)", a.cmds, a.during, want)
	}
}

// An abandoned proposal is never handed to Raft; one whose deadline
// passed while it was held fails with raft.ErrEnqueueTimeout without
// reaching Raft; abandoning a proposal already taken reports false.
func TestProposerAbandonAndDeadline(t *testing.T) {
	p, a, done := startProposer()
	defer func() { p.stop(); <-done }()
	p.appendStarted()
	gone, err := p.submit([]byte("abandoned"), time.Now().Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	late, err := p.submit([]byte("late"), time.Now().Add(-time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if !p.abandon(gone) {
		t.Fatal("abandon of a queued proposal reported it taken")
	}
	p.appendDone()
	if f := <-late.taken; !errors.Is(f.Error(), raft.ErrEnqueueTimeout) {
		t.Fatalf("proposal past its deadline: %v, want ErrEnqueueTimeout", f.Error())
	}
	submitWait(t, p, []byte("after")) // run has passed both
	if p.abandon(late) {
		t.Fatal("abandon of a proposal already answered reported it withdrawn")
	}
	if fmt.Sprint(a.cmds) != "[after]" {
		t.Fatalf("Raft got %v, want only the proposal after them", a.cmds)
	}
	select {
	case f := <-gone.taken:
		t.Fatalf("abandoned proposal got a future: %v", f)
	default:
	}
}

// After stop, run has returned, a proposal still queued is never handed
// on, and submit refuses at once.
func TestProposerStop(t *testing.T) {
	p, a, done := startProposer()
	p.appendStarted() // nothing is handed on
	if _, err := p.submit([]byte("queued"), time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	p.stop()
	<-done
	if _, err := p.submit([]byte("late"), time.Now().Add(time.Minute)); !errors.Is(err, raft.ErrRaftShutdown) {
		t.Fatalf("submit after stop: %v, want ErrRaftShutdown", err)
	}
	if len(a.cmds) != 0 {
		t.Fatalf("applied %v after stop", a.cmds)
	}
}
