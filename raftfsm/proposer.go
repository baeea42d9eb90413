package raftfsm

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// proposer hands this node's proposals to Raft from one goroutine, and
// never while the log store is appending.
//
// Why: hashicorp/raft's leader loop chooses at random between proposals
// waiting in its apply queue and entries that have just committed. After
// an append both are often ready, and about half the time it appended
// again first, so the state machine received the batch that had just
// become durable one whole fsync later (a trace of 1 KiB PUTs on one node:
// 45% of appends were followed by another before the state machine woke,
// 325 µs on average from the end of an append to the start of its apply).
// A proposal that arrives during an append waits for its end either way;
// held here, the proposals reach the loop just after it took the commit,
// and all at once, so the next append carries them all.
type proposer struct {
	raft applier // set before run starts

	mu        sync.Mutex
	cond      sync.Cond // signalled on a new proposal, an append's end, stop
	appending int       // appends in progress
	stopped   bool
	queue     []*proposal
	spare     []*proposal // the previous queue's array, reused
}

// applier is the part of *raft.Raft the proposer uses.
type applier interface {
	Apply(cmd []byte, timeout time.Duration) raft.ApplyFuture
}

// proposal is one command waiting for Raft to take it.
type proposal struct {
	data     []byte
	deadline time.Time             // for Raft to take it, as raft.Apply's timeout
	state    atomic.Int32          // proposalQueued, then Taken or Abandoned
	taken    chan raft.ApplyFuture // buffered: run never blocks on it
}

const (
	proposalQueued    = iota
	proposalTaken     // handed to raft.Apply (run)
	proposalAbandoned // its submitter stopped waiting first; never proposed
)

// failedFuture answers a proposal that never reached Raft.
type failedFuture struct{ err error }

func (f failedFuture) Error() error  { return f.err }
func (f failedFuture) Index() uint64 { return 0 }
func (f failedFuture) Response() any { return nil }

func newProposer() *proposer {
	p := &proposer{}
	p.cond.L = &p.mu
	return p
}

// submit queues data, to be handed to Raft before deadline (after it,
// its future fails with raft.ErrEnqueueTimeout). The future arrives on the
// proposal's taken channel; a submitter that stops waiting calls abandon.
func (p *proposer) submit(data []byte, deadline time.Time) (*proposal, error) {
	pr := &proposal{data: data, deadline: deadline, taken: make(chan raft.ApplyFuture, 1)}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil, raft.ErrRaftShutdown
	}
	p.queue = append(p.queue, pr)
	p.cond.Signal()
	return pr, nil
}

// abandon withdraws pr unless run has taken it already: true means pr
// is never proposed.
func (p *proposer) abandon(pr *proposal) bool {
	return pr.state.CompareAndSwap(proposalQueued, proposalAbandoned)
}

// run hands the queued proposals to Raft until stop, skipping abandoned
// ones. Proposals still queued at stop are never proposed; their
// submitters return at the node's stop.
func (p *proposer) run() {
	for {
		p.mu.Lock()
		for !p.stopped && (p.appending > 0 || len(p.queue) == 0) {
			p.cond.Wait()
		}
		if p.stopped {
			p.mu.Unlock()
			return
		}
		batch := p.queue
		p.queue, p.spare = p.spare[:0], nil
		p.mu.Unlock()
		for i, pr := range batch {
			batch[i] = nil
			if !pr.state.CompareAndSwap(proposalQueued, proposalTaken) {
				continue
			}
			left := time.Until(pr.deadline)
			if left <= 0 {
				pr.taken <- failedFuture{raft.ErrEnqueueTimeout}
				continue
			}
			pr.taken <- p.raft.Apply(pr.data, left)
		}
		p.mu.Lock()
		if p.spare == nil {
			p.spare = batch[:0]
		}
		p.mu.Unlock()
	}
}

// stop ends run.
func (p *proposer) stop() {
	p.mu.Lock()
	p.stopped = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

// appendStarted and appendDone bracket every append to the log store
// (called by Raft's goroutines through watchedLogStore).
func (p *proposer) appendStarted() {
	p.mu.Lock()
	p.appending++
	p.mu.Unlock()
}

func (p *proposer) appendDone() {
	p.mu.Lock()
	p.appending--
	p.cond.Signal()
	p.mu.Unlock()
}
