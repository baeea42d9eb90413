package store

import (
	"context"
	"sync"
	"time"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/raftfsm"
)

// The reservation pool takes the Reserve round trip off the path of small
// uploads: for each size class (a whole number of spages up to poolMaxSize)
// that uploads actually use, the store keeps a few reservations made ahead
// of time, poolBatch at a time in one Raft entry. An upload of S bytes takes
// one of size roundup(S, spage), so it wastes less than one spage, like any
// other. Reservations are decided through Raft like all others, so every
// replica holds the same pooled extents.
//
// Pooled space is never what makes a volume full: when a reservation fails
// for lack of space, the pool is drained (its reservations aborted) and the
// reservation tried once more.
const (
	poolMaxSize = 64 << 10
	poolBatch   = 16
	poolLow     = 8 // refill when fewer are left
)

type pooled struct {
	id       uint64
	exts     []catalog.Extent
	created  time.Time
	deadline int64  // unix ns, as in its Reserve
	index    uint64 // log index of the batch that reserved it
}

type reservationPool struct {
	s *Store

	mu        sync.Mutex // guards ready, refilling, closed
	ready     map[int64][]pooled
	refilling map[int64]bool
	closed    bool
}

func newPool(s *Store) *reservationPool {
	return &reservationPool{s: s, ready: map[int64][]pooled{}, refilling: map[int64]bool{}}
}

// class is the pooled reservation size for an upload of size bytes, or 0 if
// such uploads are not pooled.
func (p *reservationPool) class(size int64) int64 {
	spage := p.s.spage
	if size <= 0 || size > poolMaxSize || spage <= 0 {
		return 0
	}
	return (size + spage - 1) / spage * spage
}

// take returns a pooled reservation for an upload of size bytes, if one is
// ready, and starts a refill when the class runs low.
func (p *reservationPool) take(size int64) (pooled, bool) {
	class := p.class(size)
	if class == 0 {
		return pooled{}, false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return pooled{}, false
	}
	var got pooled
	ok := false
	q := p.ready[class]
	for len(q) > 0 && !ok {
		got, q = q[0], q[1:]
		// Old entries could expire before the upload commits.
		ok = p.s.cfg.Now().Sub(got.created) < p.s.cfg.ReservationTTL/2
		if !ok {
			p.s.abortLater(got.id)
		}
	}
	p.ready[class] = q
	if len(q) < poolLow && !p.refilling[class] {
		p.refilling[class] = true
		p.s.wg.Add(1)
		go p.refill(class)
	}
	return got, ok
}

// refill reserves poolBatch reservations of class bytes in one entry.
func (p *reservationPool) refill(class int64) {
	defer p.s.wg.Done()
	defer func() {
		p.mu.Lock()
		p.refilling[class] = false
		p.mu.Unlock()
	}()
	ids := make([]uint64, poolBatch)
	for i := range ids {
		ids[i] = raftfsm.RandomID()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	now := p.s.cfg.Now()
	deadline := now.Add(p.s.cfg.ReservationTTL).UnixNano()
	res, err := p.s.raft.Propose(ctx, &raftfsm.Command{
		Kind: raftfsm.KindReserveBatch, ReservationIDs: ids, Size: class,
		Deadline: deadline,
	})
	if err != nil {
		// Not the leader, shutting down, no quorum: uploads reserve
		// directly. The batch may still be applied (its outcome is
		// unknown); aborted, it holds no space until its deadline. Here,
		// not through abortLater, which refuses once Close has begun:
		// Close waits for this goroutine, so the aborts are not skipped
		// when it comes first.
		actx, acancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer acancel()
		p.abort(actx, ids)
		return
	}
	var orphans []uint64
	p.mu.Lock()
	for i, exts := range res.Batch {
		if p.closed {
			orphans = append(orphans, ids[i])
			continue
		}
		p.ready[class] = append(p.ready[class], pooled{id: ids[i], exts: exts, created: now, deadline: deadline, index: res.Index})
	}
	p.mu.Unlock()
	p.abort(ctx, orphans)
}

// abort proposes an Abort of each of ids, logging those that fail (they
// expire at their deadline).
func (p *reservationPool) abort(ctx context.Context, ids []uint64) {
	for _, id := range ids {
		if _, err := p.s.raft.Propose(ctx, &raftfsm.Command{Kind: raftfsm.KindAbort, ReservationID: id}); err != nil {
			p.s.log.Warn("abort pooled reservation; it will expire", "reservation", id, "err", err)
		}
	}
}

// drain removes every pooled reservation and aborts them, returning how many
// there were; closing also stops the pool for good.
func (p *reservationPool) drain(ctx context.Context, closing bool) int {
	p.mu.Lock()
	var ids []uint64
	for class, q := range p.ready {
		for _, r := range q {
			ids = append(ids, r.id)
		}
		delete(p.ready, class)
	}
	if closing {
		p.closed = true
	}
	p.mu.Unlock()
	for _, id := range ids {
		if _, err := p.s.raft.Propose(ctx, &raftfsm.Command{Kind: raftfsm.KindAbort, ReservationID: id}); err != nil {
			p.s.log.Warn("abort pooled reservation; it will expire", "reservation", id, "err", err)
		}
	}
	return len(ids)
}

// pooledBytes is the space held by ready reservations (for status).
func (p *reservationPool) pooledBytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var n int64
	for class, q := range p.ready {
		n += class * int64(len(q))
	}
	return n
}
