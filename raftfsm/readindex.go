package raftfsm

import (
	"context"
	"sync"
	"time"
)

// ReadIndexBatcher shares read-index fetches (a leadership confirmation on
// the leader, a round trip to it elsewhere) among concurrent readers. A reader needs an index fetched by a request that
// started after the reader arrived (an older one may predate a write that
// completed before the read began), so it joins the next fetch, never one
// in flight. Fetches are numbered from 1; whoever finds none running
// starts the next itself, so there is no goroutine to own.
type ReadIndexBatcher struct {
	// Fetch obtains one read index; set it before the first Index.
	Fetch func(context.Context) (uint64, error)

	mu        sync.Mutex
	started   uint64 // number of the last fetch begun
	completed uint64 // number of the last fetch finished
	running   bool
	last      uint64 // result of fetch number completed
	err       error
	wake      chan struct{} // closed and replaced when a fetch finishes
	waiting   int           // callers blocked on wake, for tests
}

// Index returns a read index fetched after the call began.
func (b *ReadIndexBatcher) Index(ctx context.Context) (uint64, error) {
	b.mu.Lock()
	if b.wake == nil {
		b.wake = make(chan struct{})
	}
	need := b.started + 1
	for b.completed < need {
		if !b.running {
			b.running = true
			b.started++
			n := b.started
			b.mu.Unlock()
			// The leader's answer is shared: it must not end with this
			// caller's context alone.
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
			idx, err := b.Fetch(fctx)
			cancel()
			b.mu.Lock()
			b.running = false
			b.completed, b.last, b.err = n, idx, err
			close(b.wake)
			b.wake = make(chan struct{})
			continue
		}
		wake := b.wake
		b.waiting++
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			b.mu.Lock()
			b.waiting--
			b.mu.Unlock()
			return 0, ctx.Err()
		}
		b.mu.Lock()
		b.waiting--
	}
	idx, err := b.last, b.err
	b.mu.Unlock()
	return idx, err
}

// fetchTimeout bounds one shared read-index fetch.
const fetchTimeout = 10 * time.Second
