package volume

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Txn is one allocator metadata change: an ordered list of (offset, bytes)
// writes into the state region, made durable and applied all or nothing.
// Offsets are absolute device offsets. The zero value is an empty
// transaction. A Txn is not safe for concurrent use.
type Txn struct {
	buf []byte // entries, encoded as in a record payload
	n   int
	err error // sticky: a write that cannot be encoded
}

// Write appends a write of p at off. It copies p. Bounds are checked when
// the transaction is submitted.
func (t *Txn) Write(off int64, p []byte) {
	if t.err != nil {
		return
	}
	if uint64(len(p)) > math.MaxUint32 {
		t.err = fmt.Errorf("volume: txn write of %d bytes at %d: %w", len(p), off, ErrTxnTooLarge)
		return
	}
	t.buf = binary.LittleEndian.AppendUint64(t.buf, uint64(off))
	t.buf = binary.LittleEndian.AppendUint32(t.buf, uint32(len(p)))
	t.buf = append(t.buf, p...)
	t.n++
}

// Len returns the number of writes.
func (t *Txn) Len() int { return t.n }

// Size returns the transaction's encoded size in the journal, which
// Journal.MaxTxnSize bounds.
func (t *Txn) Size() int { return len(t.buf) }

// Reset empties the transaction, keeping its buffer.
func (t *Txn) Reset() {
	t.buf = t.buf[:0]
	t.n = 0
	t.err = nil
}

// Commit is the future of a submitted transaction.
type Commit struct {
	done chan struct{}
	err  error // written once before done is closed
	// wake, for a lazily submitted transaction, starts the write now.
	wake func()
}

func newCommit() *Commit { return &Commit{done: make(chan struct{})} }

func (c *Commit) finish(err error) {
	c.err = err
	close(c.done)
}

// Wait returns nil once the transaction is durable and applied in place
// (its device writes issued, so ReadMeta sees them), or the error that
// stopped it. A done ctx ends the wait with ctx.Err(); it does not cancel
// the transaction, which still commits or fails in order.
func (c *Commit) Wait(ctx context.Context) error {
	select {
	case <-c.done:
		return c.err
	default:
	}
	if c.wake != nil {
		c.wake()
	}
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Done returns a channel closed when the outcome is known; Wait then
// returns at once.
func (c *Commit) Done() <-chan struct{} { return c.done }

// JournalStats are cumulative counters since open, for metrics and
// benchmarks.
type JournalStats struct {
	Commits     uint64 // transactions made durable and applied
	Groups      uint64 // records written, one Device.Sync each
	Fsyncs      uint64 // Device.Sync calls by the journal: groups, checkpoints, replay
	Bytes       uint64 // bytes written to the log area, padding included
	Checkpoints uint64 // log resets
	Replayed    uint64 // records replayed by Open
	Coalesced   uint64 // records whose writes were merged (see appendPayload)
}

// job is one queue entry: a transaction, or a checkpoint request.
type job struct {
	entries    []byte // a copy of Txn.buf
	count      int
	checkpoint bool
	lazy       bool // written within lazyDelay, or sooner if waited for
	c          *Commit
}

// Lazy transactions are written at the latest this long after submission,
// or once this many bytes of them are queued.
const (
	lazyDelay = 50 * time.Millisecond
	lazyBytes = 1 << 20
)

// Journal is the volume's metadata journal. Transactions are submitted in
// any goroutine and made durable by one goroutine the Journal owns, in
// Submit order, many to a record and one Device.Sync per record (group
// commit). All methods are safe for concurrent use.
type Journal struct {
	dev        Device
	tag        uint64
	slots      [2]int64 // absolute offsets of header slots A and B
	logStart   int64    // absolute bounds of the log area
	logEnd     int64
	stateStart int64 // absolute bounds of the state region
	stateEnd   int64
	maxTxn     int // largest Txn.Size a record can hold

	mu      sync.Mutex // guards queue, urgent, closing, failed
	queue   []job
	queued  int   // encoded bytes of the transactions in queue
	urgent  bool  // a lazy job in the queue is waited for
	closing bool  // Close began: Submit refuses
	failed  error // sticky: the first device error; nothing is written after it

	kick chan struct{} // capacity 1: work was queued
	stop chan struct{} // closed by close
	done chan struct{} // closed when run returns

	// Owned by the run goroutine (and by openJournal before it starts).
	slot    int    // header slot holding the current generation
	gen     uint64 // current header generation
	nextSeq uint64 // sequence number of the next record
	tail    int64  // where the next record goes
	rec     []byte // record buffer, reused
	// appendPayload's buffers, reused.
	cWrites  []recordWrite
	cOrder   []int
	cRuns    []writeRun
	closeErr error // result of the final checkpoint, read after done

	commits, groups, fsyncs, bytes, checkpoints, replayed, coalesced atomic.Uint64
}

// openJournal reads the journal header, replays committed records, and
// starts the commit goroutine. It reads O(1) bytes when the log is empty.
func openJournal(dev Device, sb Superblock) (*Journal, error) {
	l := sb.Layout
	slots, logArea := journalSlots(sb.Version)
	j := &Journal{
		dev:        dev,
		tag:        volumeTag(sb.UUID),
		slots:      [2]int64{l.JournalOffset + slots[0], l.JournalOffset + slots[1]},
		logStart:   l.JournalOffset + logArea,
		logEnd:     l.JournalOffset + l.JournalSize,
		stateStart: l.StateOffset,
		stateEnd:   l.StateOffset + l.StateSize,
		kick:       make(chan struct{}, 1),
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
	}
	maxRec := min(j.logEnd-j.logStart, maxRecordBytes)
	j.maxTxn = int(maxRec/recordAlign*recordAlign - recordHdrSize - 4)

	var hb [2][headerSlotSize]byte
	for i, off := range j.slots {
		if err := readFull(dev, hb[i][:], off); err != nil {
			return nil, fmt.Errorf("volume: read journal header: %w", err)
		}
	}
	h0, ok0 := decodeJournalHeader(hb[0][:])
	h1, ok1 := decodeJournalHeader(hb[1][:])
	switch {
	case ok0 && (!ok1 || h0.generation >= h1.generation):
		j.slot, j.gen, j.nextSeq = 0, h0.generation, h0.nextSeq
	case ok1:
		j.slot, j.gen, j.nextSeq = 1, h1.generation, h1.nextSeq
	default:
		return nil, &CorruptError{Offset: j.slots[0], Reason: "no valid journal header slot"}
	}
	j.tail = j.logStart
	if err := j.replay(); err != nil {
		return nil, err
	}
	go j.run()
	return j, nil
}

// replay applies every committed record from the log start, then
// checkpoints if it applied any. A record is committed if its header is
// valid, carries the expected sequence number, and its payload checksum
// holds. The first record that fails ends the log (a torn tail), unless
// the record after it is intact: records are written only after the one
// before them was synced, so that is corruption in the middle.
func (j *Journal) replay() error {
	hdr := make([]byte, recordHdrSize)
	var payload []byte
	for j.tail+recordAlign <= j.logEnd {
		pos := j.tail
		if err := readFull(j.dev, hdr, pos); err != nil {
			return fmt.Errorf("volume: journal replay: read record header at %d: %w", pos, err)
		}
		h, ok := decodeRecordHeader(hdr, j.tag)
		if !ok || h.seq != j.nextSeq {
			break
		}
		size := h.size()
		if size > j.logEnd-pos {
			return &CorruptError{Offset: pos, Reason: fmt.Sprintf("record %d of %d bytes runs past the log end", h.seq, size)}
		}
		payload = slices.Grow(payload[:0], int(h.payloadLen))[:h.payloadLen]
		if err := readFull(j.dev, payload, pos+recordHdrSize); err != nil {
			return fmt.Errorf("volume: journal replay: read record at %d: %w", pos, err)
		}
		if crc32c(payload) != h.payloadCRC {
			intact, err := j.intactRecordAt(pos+size, j.nextSeq+1)
			if err != nil {
				return err
			}
			if intact {
				return &CorruptError{Offset: pos, Reason: fmt.Sprintf("record %d payload checksum mismatch before intact record %d", h.seq, h.seq+1)}
			}
			break // torn tail
		}
		// Check the whole record before writing any of it.
		err := walkPayload(payload, func(off int64, data []byte) error {
			if !j.inState(off, len(data)) {
				return fmt.Errorf("write [%d,+%d) outside the state region [%d,%d)", off, len(data), j.stateStart, j.stateEnd)
			}
			return nil
		})
		if err != nil {
			return &CorruptError{Offset: pos, Reason: fmt.Sprintf("record %d: %v", h.seq, err)}
		}
		if err := j.apply(payload); err != nil {
			return fmt.Errorf("volume: journal replay: %w", err)
		}
		j.tail += size
		j.nextSeq++
		j.replayed.Add(1)
	}
	if j.tail == j.logStart {
		return nil
	}
	if err := j.checkpoint(); err != nil {
		return fmt.Errorf("volume: journal replay: %w", err)
	}
	return nil
}

// intactRecordAt reports whether a record with a valid header and the given
// sequence number starts at pos.
func (j *Journal) intactRecordAt(pos int64, seq uint64) (bool, error) {
	if pos+recordAlign > j.logEnd {
		return false, nil
	}
	hdr := make([]byte, recordHdrSize)
	if err := readFull(j.dev, hdr, pos); err != nil {
		return false, fmt.Errorf("volume: journal replay: read record header at %d: %w", pos, err)
	}
	h, ok := decodeRecordHeader(hdr, j.tag)
	return ok && h.seq == seq, nil
}

// apply writes the entries of a checked payload (well formed, inside the
// state region) in place, in order.
func (j *Journal) apply(payload []byte) error {
	return walkPayload(payload, func(off int64, data []byte) error {
		if _, err := j.dev.WriteAt(data, off); err != nil {
			return fmt.Errorf("apply at %d: %w", off, err)
		}
		return nil
	})
}

func (j *Journal) inState(off int64, n int) bool {
	return off >= j.stateStart && off <= j.stateEnd && int64(n) <= j.stateEnd-off
}

// checkpoint makes the in-place writes of every logged record durable and
// resets the log: Sync, write the other header slot with generation+1 and
// the next sequence number, Sync. A crash before the header is durable
// leaves the old header, whose records replay idempotently; no record is
// written at the log start before the new header is durable.
// REQUIRES: called by the run goroutine, or by openJournal before it.
func (j *Journal) checkpoint() error {
	if j.tail == j.logStart {
		return nil // nothing logged since the last checkpoint
	}
	if err := j.sync(); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	slot := 1 - j.slot
	h := encodeJournalHeader(journalHeader{generation: j.gen + 1, nextSeq: j.nextSeq})
	if _, err := j.dev.WriteAt(h, j.slots[slot]); err != nil {
		return fmt.Errorf("checkpoint: write header: %w", err)
	}
	if err := j.sync(); err != nil {
		return fmt.Errorf("checkpoint: %w", err)
	}
	j.slot = slot
	j.gen++
	j.tail = j.logStart
	j.checkpoints.Add(1)
	return nil
}

func (j *Journal) sync() error {
	j.fsyncs.Add(1)
	return j.dev.Sync()
}

// MaxTxnSize returns the largest Txn.Size the journal accepts.
func (j *Journal) MaxTxnSize() int { return j.maxTxn }

// Submit enqueues t and returns its future. It copies t, so the caller may
// reuse t at once, and never waits for I/O. Transactions become durable in
// Submit order. A transaction with a write outside the state region
// (ErrOutOfRange), too large for the log (ErrTxnTooLarge), submitted after
// Close (ErrClosed) or after a device error is not written, and its Wait
// returns the error.
func (j *Journal) Submit(t *Txn) *Commit {
	c := newCommit()
	if err := j.check(t); err != nil {
		c.finish(err)
		return c
	}
	jb := job{entries: slices.Clone(t.buf), count: t.n, c: c}
	if err := j.enqueue(jb); err != nil {
		c.finish(err)
	}
	return c
}

// SubmitLazy is Submit for a transaction whose durability nobody waits for
// yet (its effects are durable elsewhere, e.g. in the Raft log): it joins
// the queue in order but is written with later work, after at most
// lazyDelay, or at once when its Commit is waited for. Many lazy
// transactions thus share one record and one fsync.
func (j *Journal) SubmitLazy(t *Txn) *Commit {
	c := newCommit()
	if err := j.check(t); err != nil {
		c.finish(err)
		return c
	}
	c.wake = j.wake
	jb := job{entries: slices.Clone(t.buf), count: t.n, c: c, lazy: true}
	if err := j.enqueue(jb); err != nil {
		c.finish(err)
	}
	return c
}

func (j *Journal) wake() {
	j.mu.Lock()
	j.urgent = true
	j.mu.Unlock()
	select {
	case j.kick <- struct{}{}:
	default:
	}
}

func (j *Journal) check(t *Txn) error {
	if t == nil {
		return errors.New("volume: submit: nil transaction")
	}
	if t.err != nil {
		return t.err
	}
	if len(t.buf) > j.maxTxn {
		return fmt.Errorf("volume: txn of %d bytes, the journal holds %d: %w", len(t.buf), j.maxTxn, ErrTxnTooLarge)
	}
	_, err := walkEntries(t.buf, func(off int64, data []byte) error {
		if !j.inState(off, len(data)) {
			return fmt.Errorf("volume: txn write [%d,+%d) outside the state region [%d,%d): %w", off, len(data), j.stateStart, j.stateEnd, ErrOutOfRange)
		}
		return nil
	})
	return err
}

func (j *Journal) enqueue(jb job) error {
	j.mu.Lock()
	switch {
	case j.closing:
		j.mu.Unlock()
		return ErrClosed
	case j.failed != nil:
		err := j.failed
		j.mu.Unlock()
		return fmt.Errorf("volume: journal failed earlier: %w", err)
	}
	j.queue = append(j.queue, jb)
	j.queued += len(jb.entries)
	if !jb.lazy {
		j.urgent = true
	}
	j.mu.Unlock()
	select {
	case j.kick <- struct{}{}:
	default:
	}
	return nil
}

// Commit submits t and waits for it; see Submit and Commit.Wait.
func (j *Journal) Commit(ctx context.Context, t *Txn) error {
	return j.Submit(t).Wait(ctx)
}

// Checkpoint waits until every transaction submitted before it is durable
// and applied, the in-place writes are synced, and the log is reset.
func (j *Journal) Checkpoint(ctx context.Context) error {
	c := newCommit()
	if err := j.enqueue(job{checkpoint: true, c: c}); err != nil {
		return err
	}
	return c.Wait(ctx)
}

// Stats returns the journal's counters.
func (j *Journal) Stats() JournalStats {
	return JournalStats{
		Commits:     j.commits.Load(),
		Groups:      j.groups.Load(),
		Fsyncs:      j.fsyncs.Load(),
		Bytes:       j.bytes.Load(),
		Checkpoints: j.checkpoints.Load(),
		Replayed:    j.replayed.Load(),
		Coalesced:   j.coalesced.Load(),
	}
}

// close stops accepting work, lets the run goroutine finish the queue and
// checkpoint, and waits for it to exit.
func (j *Journal) close() error {
	j.mu.Lock()
	if j.closing {
		j.mu.Unlock()
		return ErrClosed
	}
	j.closing = true
	j.mu.Unlock()
	close(j.stop)
	<-j.done
	return j.closeErr
}

// run is the commit loop: take a group, write it as one record, sync,
// apply in place, complete the futures. It returns once close was called
// and the queue is empty, after a final checkpoint.
func (j *Journal) run() {
	defer close(j.done)
	for {
		batch, ok := j.take()
		if !ok {
			break
		}
		j.process(batch)
	}
	if err := j.failure(); err != nil {
		j.closeErr = err
		return
	}
	if err := j.checkpoint(); err != nil {
		j.closeErr = fmt.Errorf("volume: journal: %w", err)
	}
}

// take waits for work and removes the next group from the queue: jobs in
// order, at least one, up to maxGroupBytes of entries and never more than
// one record can hold, ending early after a checkpoint request. It returns
// false once closing and the queue is empty.
func (j *Journal) take() ([]job, bool) {
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		j.mu.Lock()
		q := j.queue
		ready := len(q) > 0 && (j.urgent || j.closing || j.queued >= lazyBytes)
		if len(q) > 0 && !ready && timer == nil {
			timer = time.NewTimer(lazyDelay)
		}
		if len(q) > 0 && !ready {
			select {
			case <-timer.C:
				ready = true
			default:
			}
		}
		if ready {
			limit := min(maxGroupBytes, j.maxTxn)
			n, size := 0, 0
			for n < len(q) {
				if q[n].checkpoint {
					n++
					break
				}
				if n > 0 && size+len(q[n].entries) > limit {
					break
				}
				size += len(q[n].entries)
				n++
			}
			batch := q[:n:n]
			for _, jb := range batch {
				j.queued -= len(jb.entries)
			}
			if n == len(q) {
				j.queue = nil
				j.urgent = false
			} else {
				j.queue = q[n:]
			}
			j.mu.Unlock()
			return batch, true
		}
		closing := j.closing
		j.mu.Unlock()
		if closing {
			return nil, false
		}
		var fire <-chan time.Time
		if timer != nil {
			fire = timer.C
		}
		select {
		case <-j.kick:
		case <-j.stop:
		case <-fire:
			j.mu.Lock()
			j.urgent = true // the oldest lazy job is due
			j.mu.Unlock()
		}
	}
}

// Err returns the journal's sticky failure: after a device error nothing
// more is written and every later transaction fails; reopen the volume.
func (j *Journal) Err() error { return j.failure() }

func (j *Journal) failure() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.failed
}

// process makes one group durable and completes its futures.
func (j *Journal) process(batch []job) {
	err := j.failure()
	if err != nil {
		err = fmt.Errorf("volume: journal failed earlier: %w", err)
	} else {
		err = j.writeGroup(batch)
		if err == nil && batch[len(batch)-1].checkpoint {
			err = j.checkpoint()
		}
		if err != nil {
			err = fmt.Errorf("volume: journal: %w", err)
			j.mu.Lock()
			j.failed = err
			j.mu.Unlock()
		}
	}
	for _, jb := range batch {
		if err == nil && !jb.checkpoint {
			j.commits.Add(1)
		}
		jb.c.finish(err)
	}
}

// writeGroup writes the transactions of batch as one record at the tail
// (checkpointing first if it does not fit), syncs, and applies it in place.
func (j *Journal) writeGroup(batch []job) error {
	count := 0
	for _, jb := range batch {
		count += jb.count
	}
	if count == 0 {
		return nil // empty transactions and checkpoint requests: nothing to log
	}
	rec := append(j.rec[:0], make([]byte, recordHdrSize)...)
	rec = j.appendPayload(rec, batch, count)
	rec = sealRecord(rec, j.nextSeq, j.tag)
	j.rec = rec
	size := int64(len(rec))
	if size > j.logEnd-j.tail {
		if err := j.checkpoint(); err != nil {
			return err
		}
	}
	if _, err := j.dev.WriteAt(rec, j.tail); err != nil {
		return fmt.Errorf("write record %d at %d: %w", j.nextSeq, j.tail, err)
	}
	j.bytes.Add(uint64(size))
	if err := j.sync(); err != nil {
		return fmt.Errorf("sync record %d: %w", j.nextSeq, err)
	}
	j.groups.Add(1)
	j.tail += size
	j.nextSeq++
	payloadLen := binary.LittleEndian.Uint32(rec[12:16])
	return j.apply(rec[recordHdrSize : recordHdrSize+payloadLen])
}

// appendPayload appends the payload of a record holding batch's count
// writes: with writes that overlap or touch merged into one, each byte
// holding what the last write of it in the batch held, so the record
// applies to the same bytes with fewer writes.
//
// Why: a group holds many transactions, and an allocator transaction per
// batch of small PUTs rewrites the same header counters and summary and
// tree words as the one before; applying the record in place took one
// write per entry, most of a node's system calls under small PUTs. The
// record still carries only bytes its transactions wrote (nothing read
// back from the device, which after a failed sync may hold older bytes
// than an acknowledged record put there), and is applied all or nothing
// as before, so dropping a write that a later one covers changes no
// outcome.
//
// REQUIRES: called by the run goroutine.
func (j *Journal) appendPayload(rec []byte, batch []job, count int) []byte {
	le := binary.LittleEndian
	writes := j.cWrites[:0]
	defer func() { clear(writes); j.cWrites = writes[:0] }() // drop references into the jobs
	for _, jb := range batch {
		// Encoded by Txn.Write and checked by Submit: well formed.
		_, _ = walkEntries(jb.entries, func(off int64, data []byte) error {
			if len(data) > 0 {
				writes = append(writes, recordWrite{off: off, data: data})
			}
			return nil
		})
	}
	order := j.cOrder[:0]
	for i := range writes {
		order = append(order, i)
	}
	j.cOrder = order
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(writes[a].off, writes[b].off) })
	// Clusters of writes that overlap or touch, in offset order.
	runs := j.cRuns[:0]
	for _, i := range order {
		w := writes[i]
		end := w.off + int64(len(w.data))
		if k := len(runs) - 1; k >= 0 && w.off <= runs[k].end {
			runs[k].end = max(runs[k].end, end)
			continue
		}
		runs = append(runs, writeRun{start: w.off, end: end})
	}
	j.cRuns = runs
	if len(runs) == len(writes) { // nothing to merge: the entries as they are
		rec = le.AppendUint32(rec, uint32(count))
		for _, jb := range batch {
			rec = append(rec, jb.entries...)
		}
		return rec
	}
	size := 4
	for _, r := range runs {
		size += entryHdrSize + int(r.end-r.start)
	}
	rec = slices.Grow(rec, size)
	rec = le.AppendUint32(rec, uint32(len(runs)))
	for i := range runs {
		r := &runs[i]
		rec = le.AppendUint64(rec, uint64(r.start))
		rec = le.AppendUint32(rec, uint32(r.end-r.start))
		r.at = len(rec)
		rec = rec[:len(rec)+int(r.end-r.start)]
	}
	for _, w := range writes { // in batch order: a later write wins
		i, _ := slices.BinarySearchFunc(runs, w.off, func(r writeRun, off int64) int {
			if r.end <= off {
				return -1
			}
			if r.start > off {
				return 1
			}
			return 0
		})
		r := runs[i]
		copy(rec[r.at+int(w.off-r.start):], w.data)
	}
	j.coalesced.Add(1)
	return rec
}

// writeRun is a range of bytes that appendPayload writes as one entry,
// and where its bytes are in the record.
type writeRun struct {
	start, end int64
	at         int
}
