package raftfsm

import (
	"sync"

	"github.com/hashicorp/raft"
)

// answers hands the results of applied entries straight to the proposers
// on this node that wait for them, by request id.
//
// Why: hashicorp/raft answers a proposal's future after the batch is
// applied, and waiting on a future alongside other events (the node
// turning read-only, closing) takes a goroutine that blocks on it and
// passes the answer on, so every write woke two goroutines in turn on its
// way back to its client, each wake a wait for a CPU on a busy node. The
// future still answers (and stays the only answer for entries without a
// request id, and for every failure).
type answers struct {
	mu      sync.Mutex
	waiting map[uint64]chan Result // by request id; each buffered
}

// await registers a wait for request id's result; cancel ends it.
func (a *answers) await(id uint64) (result <-chan Result, cancel func()) {
	ch := make(chan Result, 1)
	a.mu.Lock()
	if a.waiting == nil {
		a.waiting = map[uint64]chan Result{}
	}
	a.waiting[id] = ch
	a.mu.Unlock()
	return ch, func() {
		a.mu.Lock()
		if a.waiting[id] == ch {
			delete(a.waiting, id)
		}
		a.mu.Unlock()
	}
}

// deliver passes each applied entry's result to its waiter, if any.
// requestIDs[i] is logs[i]'s request id (0: none); out[i] its result.
// Called by ApplyBatch once the batch is applied and Applied says so.
func (a *answers) deliver(logs []*raft.Log, requestIDs []uint64, out []any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.waiting) == 0 {
		return
	}
	for i, id := range requestIDs {
		ch, ok := a.waiting[id]
		if id == 0 || !ok {
			continue
		}
		res, _ := out[i].(Result)
		res.Index = logs[i].Index
		ch <- res
		delete(a.waiting, id)
	}
}
