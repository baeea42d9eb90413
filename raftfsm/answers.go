package raftfsm

import (
	"errors"
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
	waiting map[uint64]waiter // by request id
}

// waiter is one proposer's wait: the answer goes to ch (buffered) only
// for an entry with exactly its command's bytes.
type waiter struct {
	fingerprint uint32 // entryFingerprint of the command
	ch          chan Result
}

// await registers a wait for the result of the command encoded as data
// (its request id not 0); cancel ends it.
func (a *answers) await(id uint64, data []byte) (result <-chan Result, cancel func()) {
	w := waiter{fingerprint: entryFingerprint(data), ch: make(chan Result, 1)}
	a.mu.Lock()
	if a.waiting == nil {
		a.waiting = map[uint64]waiter{}
	}
	a.waiting[id] = w
	a.mu.Unlock()
	return w.ch, func() {
		a.mu.Lock()
		if a.waiting[id].ch == w.ch {
			delete(a.waiting, id)
		}
		a.mu.Unlock()
	}
}

// deliver passes each applied entry's result to its waiter, if any: one
// waiting on the entry's request id with a command of the same bytes (a
// retry of the same command is answered by whichever of its entries
// applies first, as the request table answers both alike; another command
// that reuses the id is refused with ErrRequestIDReused and its waiter
// learns it from its own future). requests[i] is logs[i]'s request (id 0:
// none); out[i] its result. Called by ApplyBatch once the batch is
// applied and Applied says so.
func (a *answers) deliver(logs []*raft.Log, requests []entryRequest, out []any) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.waiting) == 0 {
		return
	}
	for i, r := range requests {
		w, ok := a.waiting[r.id]
		if r.id == 0 || !ok {
			continue
		}
		res, _ := out[i].(Result)
		if errors.Is(res.Err, ErrRequestIDReused) || r.fingerprint != w.fingerprint {
			continue
		}
		res.Index = logs[i].Index
		w.ch <- res
		delete(a.waiting, r.id)
	}
}
