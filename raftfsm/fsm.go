package raftfsm

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/space"
	"github.com/blobnode/blobnode/volume"
)

// Deterministic refusals, returned in a Result (never a reason to stop).
var (
	ErrNoSpace            = errors.New("out of space")
	ErrPreconditionFailed = errors.New("precondition failed")
	ErrNotFound           = errors.New("not found")
	// ErrNoReservation: the reservation was aborted or expired (or never
	// existed), so its upload cannot commit.
	ErrNoReservation = errors.New("no such reservation")
	// ErrDuplicate: a Reserve reused a live reservation id.
	ErrDuplicate = errors.New("reservation id in use")
	// ErrInvalid: the command's fields are inconsistent (e.g. checksum count
	// does not match the size). The coordinator has a bug; the state is
	// unchanged.
	ErrInvalid = errors.New("invalid command")
	// ErrGeometryMismatch: the group's volume layout (volume.Placement:
	// format version, geometry, journal size, heap offset and size)
	// differs from this node's, so the same extent would be at another
	// device offset here.
	ErrGeometryMismatch = errors.New("volume layout differs from the group's")
	// ErrRequestIDReused: the command's RequestID is recorded for a
	// different command (other bytes). Neither is executed again; the
	// proposer reused an id it must not have.
	ErrRequestIDReused = errors.New("request id already used by another command")
)

// ErrStopped is returned by the FSM after a fatal error: state on disk may
// be behind memory and the node must restart (and recover from the log).
var ErrStopped = errors.New("raftfsm: state machine stopped after a fatal error")

// ErrClosed is returned for entries the FSM did not apply because it was
// closed while it waited to retry a failed catalog commit. Its durable
// state is consistent at Applied(); a restart replays the rest of the log.
var ErrClosed = errors.New("raftfsm: state machine closed before the entries could be applied")

// Bounds of the wait between attempts to apply a batch whose catalog
// commit failed (the wait doubles from the first to the second).
const (
	retryMinWait = 20 * time.Millisecond
	retryMaxWait = time.Second
)

// Result is what Apply returns for one command.
//
// For a command whose RequestID was already recorded (a retry), it is the
// recorded Result of the first application, identical field for field; it
// describes that earlier entry, and the state may have moved on since (the
// reservation a retried Reserve answers with may have been committed or
// have expired, the version a retried Commit made may have been replaced),
// exactly as if the first answer had arrived late.
type Result struct {
	Err     error
	Extents []catalog.Extent // Reserve
	// Batch (ReserveBatch) holds the extents of each reservation made, in
	// the order of the command's ids; it may be shorter when space ran out.
	Batch   [][]catalog.Extent
	Version uint64        // Commit: the new version (the entry's index)
	Old     *catalog.Blob // Commit, Delete: the version replaced or removed
	// Index is the log index the command applied at (set by Node.Propose,
	// not by the state machine): a replica may write into a
	// reservation's pages only once it has applied that index.
	Index uint64
}

// Allocator is the part of the space allocator the state machine drives.
type Allocator interface {
	Allocate(size int64) ([]space.Extent, error)
	Free(exts []space.Extent) error
	SetAppliedIndex(i uint64)
	AppliedIndex() uint64
	Commit(ctx context.Context) error
	Submit() error
	Rebuild(ctx context.Context, owned []space.Extent) error
	SpageSize() int64
}

// BlobData is the heap the state machine writes the bytes of small blobs
// to (KindCommitInline); *volume.Volume implements it.
type BlobData interface {
	WriteAt(p []byte, off int64) (int, error)
	// SyncData makes earlier writes durable and records the mark source's
	// value, read before the sync, as durable with them.
	SyncData(ctx context.Context) error
	SetDataMarkSource(func() uint64)
	// DataMark is the mark that was durable when the heap was opened.
	DataMark() uint64
}

// FSM is blobnode's Raft state machine: the catalog plus the allocator.
//
// Apply is deterministic: a command's effect depends only on the command,
// its log index and the state, never on a clock, randomness or map order.
// Each batch is one catalog transaction carrying the applied index and one
// allocator journal transaction carrying the same index, so each of them
// always reflects a prefix of the log; Open reconciles them.
//
// Durability is lazy: neither commit is waited for (the catalog runs with
// NoSync), because the Raft log is the durable record of every decision.
// Sync makes both durable; the daemon calls it at a clean shutdown. After
// an unclean stop the daemon discards the catalog and lets Raft restore
// the latest snapshot and replay the log after it; the allocator is
// rebuilt from the catalog, and since its decisions depend only on the set
// of owned extents, replay puts every blob at its original offsets.
//
// Concurrency (hashicorp/raft's contract): ApplyBatch, Snapshot and Restore
// are called from one goroutine; FSMSnapshot.Persist runs concurrently with
// ApplyBatch. Readers use View and WaitApplied from any goroutine.
type FSM struct {
	cat    *catalog.DB
	alloc  Allocator
	layout volume.Placement // this node's volume layout
	log    *slog.Logger

	// data receives inline blobs. Its durable mark is the index of the
	// last inline entry whose bytes are known durable on the heap: replay
	// does not write those again. That matters, not just saves work: the
	// pages of an old inline blob may since hold a newer blob whose bytes
	// came over HTTP and are in no log entry. Such a blob's upload synced
	// the heap before its Commit, and that sync recorded a mark at least
	// as high as every inline entry applied before its reservation; so
	// replay rewrites only inline blobs newer than any such overwrite.
	//
	// The bytes are written only once the batch's catalog commit has
	// succeeded: a commit that fails is rolled back, and the pages an
	// inline blob of that batch was given may still belong, in the
	// catalog the read-only node keeps serving, to a blob the batch
	// deleted or replaced.
	data       BlobData
	openMark   uint64        // data's mark at attach
	lastInline atomic.Uint64 // index of the last inline entry written
	// pending holds the inline writes of the batch being applied, in
	// log order, until its catalog commit succeeds. Used only by the
	// goroutine that applies.
	pending []inlineWrite
	runBuf  []byte // writePending's buffer, reused
	// requests[i] is the request of the i-th entry of the batch being
	// applied (id 0: none), for answers.
	requests []entryRequest
	answers  answers
	// batchChanged is the last entry of the batch being applied that is
	// not a no-op (0: none), for changed.
	batchChanged uint64

	// update runs fn in one catalog write transaction (cat.Update; tests
	// inject commit failures here).
	update func(fn func(*catalog.Tx) error) error

	// window is DedupWindow; tests shrink it to reach pruning quickly. It
	// must be the same on every node that applies the same log.
	window uint64

	mu      sync.Mutex // guards applied, changed, fatal, halt, readOnly, roChanged; cond signals their changes
	cond    *sync.Cond
	applied uint64
	// changed is the index of the last applied entry that may have
	// changed what a read sees: every command but a no-op (at open and
	// restore, everything up to applied may have). See ReadPoint.
	changed   uint64
	fatal     error
	fatalCh   chan struct{} // closed when fatal is set
	halt      error         // ErrClosed once a batch was abandoned: nothing more is applied
	readOnly  map[string]*ReadOnlyError
	roChanged chan struct{} // closed and replaced at each change of readOnly

	closing   chan struct{} // closed by Close: stop waiting to retry
	closeOnce sync.Once

	// applyMu is held by ApplyBatch and Restore for their whole run, so
	// that BeginWrite's check of a reservation and its claim on the pages
	// are one step against them (see localwrite.go).
	applyMu sync.Mutex

	// unmarked counts the blobs committed (or restored) without a mark
	// that this node holds them verified: the repairer looks for work
	// when it changes.
	unmarked atomic.Uint64
	// restores counts snapshots installed (Restore).
	restores atomic.Uint64
	guard    writeGuard
}

// Open reconciles the catalog and the allocator and returns the FSM. If
// their applied indexes differ (a crash between the two commits of a batch),
// the allocator is rebuilt from the catalog, whose state is then the one
// both reflect: the log is replayed from there, and because allocation
// decisions depend only on the set of owned extents, replay makes exactly
// the original decisions.
//
// rebuild forces the rebuild (space.Open said ErrNeedsRebuild).
func Open(ctx context.Context, cat *catalog.DB, alloc Allocator, layout volume.Placement, log *slog.Logger, rebuild bool) (*FSM, error) {
	f := &FSM{
		cat: cat, alloc: alloc, layout: layout, log: log, update: cat.Update, window: DedupWindow,
		fatalCh: make(chan struct{}), readOnly: map[string]*ReadOnlyError{},
		roChanged: make(chan struct{}), closing: make(chan struct{}),
	}
	f.cond = sync.NewCond(&f.mu)
	var idx uint64
	if err := cat.View(func(tx *catalog.Tx) error {
		var err error
		idx, err = tx.AppliedIndex()
		return err
	}); err != nil {
		return nil, fmt.Errorf("raftfsm: open: %w", err)
	}
	if a := alloc.AppliedIndex(); a != idx || rebuild {
		log.Warn("allocator and catalog disagree; rebuilding the allocator from the catalog",
			"catalog_applied", idx, "allocator_applied", a)
		if err := f.rebuildAllocator(ctx, idx); err != nil {
			return nil, err
		}
	}
	f.applied, f.changed = idx, idx
	return f, nil
}

func (f *FSM) rebuildAllocator(ctx context.Context, idx uint64) error {
	owned, err := OwnedExtents(f.cat)
	if err != nil {
		return fmt.Errorf("raftfsm: rebuild allocator: %w", err)
	}
	return f.rebuildAllocatorFrom(ctx, owned, idx)
}

// rebuildAllocatorFrom rebuilds the allocator with exactly owned in use,
// as of index idx.
func (f *FSM) rebuildAllocatorFrom(ctx context.Context, owned []space.Extent, idx uint64) error {
	if err := f.alloc.Rebuild(ctx, owned); err != nil {
		return fmt.Errorf("raftfsm: rebuild allocator: %w", err)
	}
	f.alloc.SetAppliedIndex(idx)
	if err := f.alloc.Commit(ctx); err != nil {
		return fmt.Errorf("raftfsm: rebuild allocator: %w", err)
	}
	return nil
}

// AttachData gives the state machine the heap for inline blobs. Call it
// once, before Raft starts applying entries; without it an inline entry
// stops the state machine.
func (f *FSM) AttachData(d BlobData) {
	f.data = d
	f.openMark = d.DataMark()
	f.lastInline.Store(f.openMark)
	d.SetDataMarkSource(f.lastInline.Load)
}

// OwnedExtents lists every extent the catalog says is in use: blobs and
// open reservations.
func OwnedExtents(cat *catalog.DB) ([]space.Extent, error) {
	var owned []space.Extent
	err := cat.View(func(tx *catalog.Tx) error {
		var err error
		owned, err = ownedExtents(tx)
		return err
	})
	return owned, err
}

func ownedExtents(tx *catalog.Tx) ([]space.Extent, error) {
	var owned []space.Extent
	err := tx.ForEachOwnedExtent(func(e catalog.Extent) error {
		owned = append(owned, space.Extent(e))
		return nil
	})
	return owned, err
}

// Applied returns the index of the last entry applied.
func (f *FSM) Applied() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.applied
}

// ReadPoint returns the index a read of the state at commit index c must
// wait for: c, or, once everything up to c is applied here, the last entry
// up to c that changed anything a read can see. The entries after it are
// no-ops, and a node that has applied it shows the same as one at c. It
// matters to followers: one learns that an entry committed only from the
// leader's next AppendEntries that carries entries, so an index that ends
// in a no-op announcing a commit (Node.Announce) would make every read
// wait for another announcement.
func (f *FSM) ReadPoint(c uint64) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.applied >= c && f.changed <= c {
		return f.changed
	}
	return c
}

// WaitApplied blocks until the applied index is at least idx, the FSM
// stops, the node is read-only (it returns the *ReadOnlyError: the index
// may not be reached until the disk recovers), or ctx ends.
func (f *FSM) WaitApplied(ctx context.Context, idx uint64) error {
	if f.Applied() >= idx {
		return nil // most reads: nothing to wait for, nothing to arm
	}
	stop := context.AfterFunc(ctx, func() {
		f.mu.Lock()
		f.cond.Broadcast()
		f.mu.Unlock()
	})
	defer stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.applied < idx {
		if f.fatal != nil {
			return f.fatal
		}
		if f.halt != nil {
			return f.halt
		}
		if err := f.readOnlyLocked(); err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		f.cond.Wait()
	}
	return nil
}

// Stopped is closed when the FSM hit a fatal error; Err then says which.
func (f *FSM) Stopped() <-chan struct{} { return f.fatalCh }

// Err returns the fatal error, or nil.
func (f *FSM) Err() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fatal
}

func (f *FSM) stop(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fatal != nil {
		return
	}
	f.fatal = fmt.Errorf("%w: %w", ErrStopped, err)
	f.log.Error("state machine stopped", "err", err)
	close(f.fatalCh)
	f.cond.Broadcast()
}

// View runs fn in a read transaction of the catalog.
func (f *FSM) View(fn func(*catalog.Tx) error) error { return f.cat.View(fn) }

// Apply implements raft.FSM for single entries.
func (f *FSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

// ApplyBatch implements raft.BatchingFSM: the whole batch is one catalog
// transaction and one allocator commit, both carrying the last index.
//
// A failed catalog commit (the disk under the catalog is full or failing)
// is neither fatal nor skipped: bbolt rolled the transaction back, so the
// catalog is still at the previous batch; the allocator, which made the
// batch's decisions in memory, is rebuilt from the catalog (its decisions
// depend only on the set of owned pages, so the retry decides exactly as
// the first attempt did). The node is read-only meanwhile, and the batch is
// retried with a bounded, doubling wait until it commits or Close is
// called. Once the catalog commit succeeded, the batch's inline blobs are
// written to the heap; a failed write is retried the same way (see
// writePendingRetrying). Apply errors (a command that does not decode,
// catalog and allocator disagreeing) and allocator journal failures stay
// fatal.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	out := make([]any, len(logs))
	fail := func(err error) []any {
		for i := range out {
			out[i] = Result{Err: err}
		}
		return out
	}
	if err := f.refusal(); err != nil {
		return fail(err)
	}
	from := f.Applied()
	last := logs[len(logs)-1].Index
	if last <= from {
		// Replay of entries already reflected in durable state.
		for i := range out {
			out[i] = Result{}
		}
		return out
	}
	wait := retryMinWait
	for failed := false; ; failed = true {
		applyErr, commitErr := f.applyOnce(logs, out, from, last)
		if applyErr != nil {
			f.stop(applyErr)
			return fail(f.Err())
		}
		if commitErr == nil {
			if failed {
				f.clearReadOnly(whereCatalog)
			}
			break
		}
		f.setReadOnly(whereCatalog, commitErr)
		if err := f.rebuildAllocator(context.Background(), from); err != nil {
			f.stop(fmt.Errorf("after a failed catalog commit (%w): %w", commitErr, err))
			return fail(f.Err())
		}
		if !f.retryAfter(&wait) {
			f.mu.Lock()
			f.halt = fmt.Errorf("%w: entries %d..%d: %w", ErrClosed, logs[0].Index, last, commitErr)
			f.cond.Broadcast()
			f.mu.Unlock()
			return fail(f.refusal())
		}
	}
	// Not waited for: the Raft log is the durable record; see Sync.
	f.alloc.SetAppliedIndex(last)
	if err := f.alloc.Submit(); err != nil {
		// Memory may be ahead of disk: stop; a restart recovers from the
		// log and Open's reconciliation.
		f.stop(err)
		return fail(f.Err())
	}
	if err := f.writePendingRetrying(logs[0].Index, last); err != nil {
		return fail(err)
	}
	f.mu.Lock()
	f.applied = last
	f.changed = max(f.changed, f.batchChanged)
	f.cond.Broadcast()
	f.mu.Unlock()
	f.answers.deliver(logs, f.requests, out)
	return out
}

// applyOnce applies logs in one catalog transaction, filling out. applyErr
// is an error of applying a command (fatal); commitErr one of committing
// the transaction (the catalog is unchanged, the allocator is not).
func (f *FSM) applyOnce(logs []*raft.Log, out []any, from, last uint64) (applyErr, commitErr error) {
	f.pending = f.pending[:0]
	f.requests = slices.Grow(f.requests[:0], len(logs))[:len(logs)]
	clear(f.requests)
	f.batchChanged = 0
	err := f.update(func(tx *catalog.Tx) error {
		for i, l := range logs {
			out[i] = Result{}
			if l.Index <= from || l.Type != raft.LogCommand {
				continue
			}
			cmd, err := DecodeCommand(l.Data)
			if err != nil {
				applyErr = fmt.Errorf("entry %d: %w", l.Index, err)
				return applyErr
			}
			if cmd.RequestID != 0 {
				// The entry's bytes are the command's canonical encoding,
				// so an identical retry has the same fingerprint.
				f.requests[i] = entryRequest{id: cmd.RequestID, fingerprint: entryFingerprint(l.Data)}
			}
			if cmd.Kind != KindNoop {
				f.batchChanged = l.Index
			}
			res, err := f.applyEntry(tx, l, &cmd, f.requests[i].fingerprint)
			if err != nil {
				applyErr = fmt.Errorf("entry %d (kind %d): %w", l.Index, cmd.Kind, err)
				return applyErr
			}
			out[i] = res
		}
		if err := tx.SetAppliedIndex(last); err != nil {
			applyErr = err
		}
		return applyErr
	})
	if applyErr != nil {
		return applyErr, nil
	}
	if errors.Is(err, catalog.ErrCorrupt) {
		// From the catalog's own bookkeeping at commit (the blob counter),
		// not from the disk: as fatal as the same error during apply.
		return fmt.Errorf("entries %d..%d: %w", max(logs[0].Index, from+1), last, err), nil
	}
	if err != nil {
		return nil, fmt.Errorf("commit entries %d..%d: %w", max(logs[0].Index, from+1), last, err)
	}
	return nil, nil
}

// refusal is why no batch may be applied any more: a fatal error, or an
// earlier batch abandoned at Close. nil otherwise.
func (f *FSM) refusal() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fatal != nil {
		return f.fatal
	}
	return f.halt
}

// Close stops a wait to retry a failed catalog commit: the batch is then
// abandoned (its entries answered with ErrClosed) and no later batch is
// applied or snapshotted, so no entry is ever skipped; the durable state
// stays consistent at Applied() and a restart replays the rest of the log.
// Without a pending retry Close changes nothing. Call it before shutting
// Raft down; an FSM serves one Node.
func (f *FSM) Close() {
	f.closeOnce.Do(func() { close(f.closing) })
}

// apply executes one command. A returned error is fatal (I/O, or catalog and
// allocator disagreeing); refusals go in Result.Err.
func (f *FSM) apply(tx *catalog.Tx, index uint64, c *Command) (Result, error) {
	switch c.Kind {
	case KindNoop:
		return Result{}, nil
	case KindInit:
		return f.applyInit(tx, c)
	case KindReserve:
		return f.applyReserve(tx, c)
	case KindRenew:
		for _, id := range c.ReservationIDs {
			r, ok, err := tx.GetReservation(id)
			if err != nil {
				return Result{}, err
			}
			if !ok || r.Deadline >= c.Deadline {
				continue
			}
			r.Deadline = c.Deadline
			if err := tx.PutReservation(r); err != nil {
				return Result{}, err
			}
		}
		return Result{}, nil
	case KindReserveBatch:
		var res Result
		for _, id := range c.ReservationIDs {
			one := *c
			one.Kind, one.ReservationID = KindReserve, id
			r, err := f.applyReserve(tx, &one)
			if err != nil {
				return Result{}, err
			}
			if r.Err != nil {
				if len(res.Batch) == 0 {
					res.Err = r.Err
				}
				break
			}
			res.Batch = append(res.Batch, r.Extents)
		}
		return res, nil
	case KindCommit:
		return f.applyCommit(tx, index, c)
	case KindCommitInline:
		return f.applyCommitInline(tx, index, c)
	case KindAbort:
		r, ok, err := tx.GetReservation(c.ReservationID)
		if err != nil || !ok {
			return Result{}, err
		}
		return Result{}, f.release(tx, r)
	case KindExpire:
		expired, err := tx.ExpiredReservations(c.Now, 1<<16)
		if err != nil {
			return Result{}, err
		}
		for _, r := range expired {
			if err := f.release(tx, r); err != nil {
				return Result{}, err
			}
		}
		return Result{}, nil
	case KindDelete:
		if c.Key == "" {
			return Result{Err: ErrInvalid}, nil
		}
		cur, ok, err := tx.GetBlob(c.Key)
		if err != nil {
			return Result{}, err
		}
		if !ok {
			return Result{Err: ErrNotFound}, nil
		}
		if c.IfMatch != 0 && cur.Version != c.IfMatch {
			return Result{Err: ErrPreconditionFailed}, nil
		}
		if err := f.free(cur.Extents); err != nil {
			return Result{}, err
		}
		return Result{Old: &cur}, tx.DeleteBlob(c.Key)
	case KindRegister:
		if c.NodeID == "" || !validAddr(c.APIAddr) || !validAddr(c.RaftAddr) {
			return Result{Err: ErrInvalid}, nil
		}
		return Result{}, tx.PutMember(catalog.Member{ID: c.NodeID, APIAddr: c.APIAddr, RaftAddr: c.RaftAddr})
	case KindDeregister:
		if c.NodeID == "" {
			return Result{Err: ErrInvalid}, nil
		}
		return Result{}, tx.DeleteMember(c.NodeID)
	}
	return Result{}, fmt.Errorf("%w: kind %d", ErrBadCommand, c.Kind)
}

// validAddr reports whether s is host:port with a non-empty host and a
// port in 1..65535 (a pure function of s, as Apply requires).
func validAddr(s string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil || host == "" {
		return false
	}
	p, err := strconv.ParseUint(port, 10, 16)
	return err == nil && p != 0
}

// Members returns the member registry (KindRegister, KindDeregister) as of
// the last entry this node applied, sorted by ID. A follower's view may lag
// the leader's.
func (f *FSM) Members() ([]catalog.Member, error) {
	var ms []catalog.Member
	err := f.cat.View(func(tx *catalog.Tx) error {
		var err error
		ms, err = tx.Members()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("raftfsm: members: %w", err)
	}
	return ms, nil
}

// geometryMeta is the catalog meta key of the group's volume layout, the
// text of a volume.Placement (a bare geometry in groups recorded before
// format 3).
const geometryMeta = "volume-geometry"

// applyInit records the group's volume layout (the first Init's) and
// checks it against this node's and the command's. A node whose volume
// would put extents elsewhere stops: it cannot hold the group's data. A
// group recorded by an earlier release holds only a geometry; the first
// Init with a whole layout that agrees with it completes the record.
func (f *FSM) applyInit(tx *catalog.Tx, c *Command) (Result, error) {
	proposed, err := volume.ParsePlacement(c.Geometry)
	if err != nil {
		return Result{Err: ErrInvalid}, nil
	}
	cur, err := tx.GetMeta(geometryMeta)
	if errors.Is(err, catalog.ErrNotFound) {
		cur, err = []byte(c.Geometry), tx.PutMeta(geometryMeta, []byte(c.Geometry))
	}
	if err != nil {
		return Result{}, err
	}
	group, err := volume.ParsePlacement(string(cur))
	if err != nil {
		return Result{}, fmt.Errorf("the catalog's group layout: %w", err)
	}
	if err := CheckLayout(group, f.layout); err != nil {
		return Result{}, err
	}
	if !proposed.Matches(group) {
		return Result{Err: ErrGeometryMismatch}, nil
	}
	if group.Partial() && !proposed.Partial() {
		if err := tx.PutMeta(geometryMeta, []byte(c.Geometry)); err != nil {
			return Result{}, err
		}
	}
	return Result{}, nil
}

// CheckLayout returns nil if a node whose volume has layout node can hold
// the blobs of a group whose recorded layout is group at the same device
// offsets, and otherwise an ErrGeometryMismatch error showing both.
func CheckLayout(group, node volume.Placement) error {
	if node.Matches(group) {
		return nil
	}
	return fmt.Errorf("%w: the group's volumes have %s, this node's has %s", ErrGeometryMismatch, group, node)
}

// GroupLayout returns the volume layout the group recorded at Init (ok
// false before any Init applied here).
func (f *FSM) GroupLayout() (p volume.Placement, ok bool, err error) {
	err = f.cat.View(func(tx *catalog.Tx) error {
		cur, err := tx.GetMeta(geometryMeta)
		if errors.Is(err, catalog.ErrNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		ok = true
		p, err = volume.ParsePlacement(string(cur))
		return err
	})
	return p, ok, err
}

// acceptSnapshot refuses a snapshot of a group whose volume layout is not
// this node's, before it replaces the catalog.
func (f *FSM) acceptSnapshot(tx *catalog.Tx) error {
	cur, err := tx.GetMeta(geometryMeta)
	if errors.Is(err, catalog.ErrNotFound) {
		return nil // taken before the group's Init applied
	}
	if err != nil {
		return err
	}
	group, err := volume.ParsePlacement(string(cur))
	if err != nil {
		return fmt.Errorf("the snapshot's group layout: %w", err)
	}
	return CheckLayout(group, f.layout)
}

func (f *FSM) applyReserve(tx *catalog.Tx, c *Command) (Result, error) {
	if c.ReservationID == 0 || c.Size <= 0 {
		return Result{Err: ErrInvalid}, nil
	}
	if _, ok, err := tx.GetReservation(c.ReservationID); err != nil || ok {
		return Result{Err: ErrDuplicate}, err
	}
	exts, res, err := f.allocate(c.Size)
	if err != nil || res.Err != nil {
		return res, err
	}
	r := catalog.Reservation{ID: c.ReservationID, Size: c.Size, Deadline: c.Deadline, Extents: exts}
	if err := tx.PutReservation(r); err != nil {
		return Result{}, err
	}
	return Result{Extents: r.Extents}, nil
}

func (f *FSM) applyCommit(tx *catalog.Tx, index uint64, c *Command) (Result, error) {
	var rs []catalog.Reservation
	var exts []catalog.Extent
	var reserved int64
	for i, id := range c.ReservationIDs {
		if slices.Contains(c.ReservationIDs[:i], id) {
			// The same pages twice in one blob: refuse before touching any.
			return Result{Err: ErrInvalid}, nil
		}
	}
	missing := false
	for _, id := range c.ReservationIDs {
		r, ok, err := tx.GetReservation(id)
		if err != nil {
			return Result{}, err
		}
		if !ok {
			missing = true
			continue
		}
		rs = append(rs, r)
		exts = append(exts, r.Extents...)
		reserved += r.Size
	}
	if missing {
		// The upload cannot complete: release every one that is left.
		return Result{Err: ErrNoReservation}, f.release(tx, rs...)
	}
	chunks := int64(0)
	if c.ChunkSize > 0 {
		chunks = (c.Size + c.ChunkSize - 1) / c.ChunkSize
	}
	if c.Key == "" || c.Size > reserved || reserved-c.Size >= f.alloc.SpageSize() || int64(len(c.Checksums)) != chunks || (c.Size > 0 && c.ChunkSize <= 0) {
		return Result{Err: ErrInvalid}, f.release(tx, rs...)
	}
	cur, exists, err := tx.GetBlob(c.Key)
	if err != nil {
		return Result{}, err
	}
	if preconditionFails(c, cur, exists) {
		return Result{Err: ErrPreconditionFailed}, f.release(tx, rs...)
	}
	chunkSize := c.ChunkSize
	if len(rs) == 0 {
		chunkSize = 0
	}
	marked := f.takeHeld(c.ReservationIDs)
	res, err := f.mapKey(tx, index, c, exts, chunkSize, cur, exists, marked)
	if err != nil {
		return Result{}, err
	}
	for _, r := range rs {
		if err := tx.DeleteReservation(r.ID); err != nil {
			return Result{}, err
		}
	}
	if !marked {
		f.unmarked.Add(1)
	}
	return res, nil
}

// applyCommitInline stores a blob carried in the entry: the same checks as
// a Commit, then allocation, the data write and the mapping.
func (f *FSM) applyCommitInline(tx *catalog.Tx, index uint64, c *Command) (Result, error) {
	if c.Key == "" || c.Size <= 0 || int64(len(c.Data)) != c.Size || c.ChunkSize < c.Size || len(c.Checksums) != 1 {
		return Result{Err: ErrInvalid}, nil
	}
	cur, exists, err := tx.GetBlob(c.Key)
	if err != nil {
		return Result{}, err
	}
	if preconditionFails(c, cur, exists) {
		return Result{Err: ErrPreconditionFailed}, nil
	}
	exts, res, err := f.allocate(c.Size)
	if err != nil || res.Err != nil {
		return res, err
	}
	if index > f.openMark {
		if f.data == nil {
			return Result{}, errors.New("inline blob, but no heap attached")
		}
		f.pending = append(f.pending, inlineWrite{index: index, exts: exts, data: c.Data})
	}
	// This node writes the bytes itself (or, at or below openMark, has
	// them durably already), and a power cut before they are durable is
	// undone by replay from the log: it holds them verified.
	return f.mapKey(tx, index, c, exts, c.ChunkSize, cur, exists, true)
}

func preconditionFails(c *Command, cur catalog.Blob, exists bool) bool {
	return (c.IfNoneMatch && exists) || (c.IfMatch != 0 && (!exists || cur.Version != c.IfMatch))
}

// mapKey points c.Key at exts as version index, freeing the extents of
// the version it replaces (cur, if exists); marked says whether this node
// holds the new version's bytes verified (catalog.Tx.MarkLocal).
func (f *FSM) mapKey(tx *catalog.Tx, index uint64, c *Command, exts []catalog.Extent, chunkSize int64, cur catalog.Blob, exists, marked bool) (Result, error) {
	res := Result{Version: index}
	if exists {
		if err := f.free(cur.Extents); err != nil {
			return Result{}, err
		}
		res.Old = &cur
	}
	b := catalog.Blob{
		Key: c.Key, Version: index, Size: c.Size, Extents: exts,
		ChunkSize: chunkSize, Checksums: c.Checksums, ContentType: c.ContentType,
		Created: c.Created, ReservationID: c.Identity, Replicas: c.Replicas,
	}
	if marked {
		return res, tx.PutBlobMarked(b)
	}
	return res, tx.PutBlob(b)
}

// inlineWrite is an inline blob's bytes waiting for its batch to commit.
type inlineWrite struct {
	index uint64
	exts  []catalog.Extent
	data  []byte
}

// writePending writes the committed batch's inline blobs in log order
// (a later one may reuse the pages of an earlier one) and advances the
// mark source past each. After a failure f.pending holds the writes not
// yet done, so a second call resumes.
//
// Blobs the allocator placed one after another on the heap, as it places
// a batch of small ones, are written with one write: each blob's bytes,
// the rest of its pages zero (pages it owns alone), up to the last blob's
// last byte. A run never overlaps itself, and runs go in log order, so a
// page reused within the batch still ends with its last owner's bytes.
func (f *FSM) writePending() error {
	for len(f.pending) > 0 {
		n, run, off := f.gatherRun()
		if n == 0 { // the first blob's pages are not contiguous
			w := f.pending[0]
			if err := f.writeInline(w.exts, w.data); err != nil {
				return fmt.Errorf("entry %d: %w", w.index, err)
			}
			n = 1
		} else if _, err := f.data.WriteAt(run, off); err != nil {
			return fmt.Errorf("entries %d..%d: write inline blobs: %w", f.pending[0].index, f.pending[n-1].index, err)
		}
		f.lastInline.Store(f.pending[n-1].index)
		clear(f.pending[:n])
		f.pending = f.pending[n:]
	}
	return nil
}

// maxInlineRun bounds the bytes writePending gathers into one write.
const maxInlineRun = 1 << 20

// gatherRun lays out the longest prefix of f.pending whose blobs follow
// one another on the heap, each on contiguous pages, in one buffer: n
// blobs, to be written as run at heap offset off. n is 0 if the first
// blob's pages are not contiguous.
func (f *FSM) gatherRun() (n int, run []byte, off int64) {
	buf := f.runBuf[:0]
	end := 0 // buf up to the last blob byte, without its pages' padding
	for ; n < len(f.pending); n++ {
		w := f.pending[n]
		span, ok := contiguousSpan(w.exts)
		if !ok || (n > 0 && (w.exts[0].Offset != off+int64(len(buf)) || int64(len(buf))+span > maxInlineRun)) {
			break
		}
		if n == 0 {
			off = w.exts[0].Offset
		}
		data := w.data
		for _, e := range w.exts {
			k := min(int64(len(data)), e.Length)
			buf = append(buf, data[:k]...)
			if k > 0 {
				end = len(buf)
			}
			pad := int(e.Length - k)
			buf = slices.Grow(buf, pad)[:len(buf)+pad]
			clear(buf[len(buf)-pad:])
			data = data[k:]
		}
	}
	f.runBuf = buf[:0]
	return n, buf[:end], off
}

// contiguousSpan is the bytes exts cover, and whether each starts where
// the one before ends.
func contiguousSpan(exts []catalog.Extent) (int64, bool) {
	if len(exts) == 0 {
		return 0, false
	}
	span := int64(0)
	for _, e := range exts {
		if e.Offset != exts[0].Offset+span {
			return 0, false
		}
		span += e.Length
	}
	return span, true
}

// writePendingRetrying writes the inline blobs of the committed batch
// first..last. A failed write (the volume's disk full or failing) makes
// the node read-only, like a failed catalog commit, and is retried with a
// bounded, doubling wait until it succeeds. The state machine stops
// instead if the allocator's journal (on the same volume) fails
// meanwhile, as it always does for a failing journal, or if Close comes
// first: the catalog holds entries whose bytes are not on the heap, so
// only an unclean start (replay from the snapshot) may follow.
func (f *FSM) writePendingRetrying(first, last uint64) error {
	wait := retryMinWait
	for failed := false; ; failed = true {
		err := f.writePending()
		if err == nil {
			if failed {
				f.clearReadOnly(whereVolume)
			}
			return nil
		}
		f.setReadOnly(whereVolume, err)
		if !f.retryAfter(&wait) {
			f.stop(fmt.Errorf("closed before the inline blobs of entries %d..%d were written: %w", first, last, err))
			return f.Err()
		}
		if jerr := f.alloc.Submit(); jerr != nil { // nothing new: reports a failed journal
			f.stop(fmt.Errorf("inline blobs of entries %d..%d not written (%w), and the journal failed: %w", first, last, err, jerr))
			return f.Err()
		}
	}
}

// retryAfter waits *wait before a retry of a failed write, then doubles
// it up to retryMaxWait. It reports false, at once, if Close comes first.
//
// REQUIRES: f.applyMu held (by ApplyBatch); it is released for the wait, so
// that BeginWrite is not held up behind a batch waiting for the disk (a
// claim taken meanwhile is revoked by the retried batch's frees, as any).
func (f *FSM) retryAfter(wait *time.Duration) bool {
	f.applyMu.Unlock()
	defer f.applyMu.Lock()
	t := time.NewTimer(*wait)
	defer t.Stop()
	select {
	case <-t.C:
		*wait = min(2**wait, retryMaxWait)
		return true
	case <-f.closing:
		return false
	}
}

func (f *FSM) writeInline(exts []catalog.Extent, data []byte) error {
	for _, e := range exts {
		n := min(int64(len(data)), e.Length)
		if _, err := f.data.WriteAt(data[:n], e.Offset); err != nil {
			return fmt.Errorf("write inline blob: %w", err)
		}
		data = data[n:]
	}
	return nil
}

// allocate takes size bytes from the allocator. A full volume is a
// refusal (res.Err), any other failure fatal (err).
func (f *FSM) allocate(size int64) (exts []catalog.Extent, res Result, err error) {
	got, err := f.alloc.Allocate(size)
	if errors.Is(err, space.ErrNoSpace) {
		return nil, Result{Err: ErrNoSpace}, nil
	}
	if err != nil {
		return nil, Result{}, err
	}
	exts = make([]catalog.Extent, len(got))
	for i, e := range got {
		exts[i] = catalog.Extent(e)
	}
	return exts, Result{}, nil
}

// release frees reservations' extents and forgets them.
func (f *FSM) release(tx *catalog.Tx, rs ...catalog.Reservation) error {
	for _, r := range rs {
		if err := f.free(r.Extents); err != nil {
			return err
		}
		if err := tx.DeleteReservation(r.ID); err != nil {
			return err
		}
		f.forgetHeld(r.ID)
	}
	return nil
}

func (f *FSM) free(exts []catalog.Extent) error {
	f.revokeWriters(exts)
	se := make([]space.Extent, len(exts))
	for i, e := range exts {
		se[i] = space.Extent(e)
	}
	if err := f.alloc.Free(se); err != nil {
		return fmt.Errorf("catalog and allocator disagree: %w", err)
	}
	return nil
}

// Sync makes the catalog and the allocator durable up to the applied index.
func (f *FSM) Sync(ctx context.Context) error {
	if f.data != nil {
		if err := f.data.SyncData(ctx); err != nil {
			return fmt.Errorf("raftfsm: sync inline blobs: %w", err)
		}
	}
	if err := f.cat.Sync(); err != nil {
		return fmt.Errorf("raftfsm: sync catalog: %w", err)
	}
	if err := f.alloc.Commit(ctx); err != nil {
		return fmt.Errorf("raftfsm: sync allocator: %w", err)
	}
	return nil
}

// Snapshot implements raft.FSM. The snapshot is a consistent copy of the
// catalog as of the applied index; Raft stores it durably before it
// compacts the log, so snapshot plus log always hold every decision. The
// state is synced first too, so that a clean restart (which does not
// restore the snapshot) finds the catalog at least at the snapshot's index.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	if err := f.refusal(); err != nil {
		return nil, err
	}
	if err := f.Sync(context.Background()); err != nil {
		f.stop(err)
		return nil, err
	}
	s, err := f.cat.BeginSnapshot()
	if err != nil {
		return nil, fmt.Errorf("raftfsm: snapshot: %w", err)
	}
	return &snapshot{s: s}, nil
}

type snapshot struct{ s *catalog.Snapshot }

// Persist streams the catalog as of Snapshot into the sink.
func (s *snapshot) Persist(sink raft.SnapshotSink) error {
	if _, err := s.s.WriteTo(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("raftfsm: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *snapshot) Release() { s.s.Release() }

// Restore implements raft.FSM: the catalog is replaced by the snapshot and
// the allocator rebuilt from it.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	// The allocator is rebuilt from the pages the snapshot's blobs and
	// reservations own, read while the catalog checks the file.
	var owned []space.Extent
	accept := func(tx *catalog.Tx) error {
		if err := f.acceptSnapshot(tx); err != nil {
			return err
		}
		var err error
		owned, err = ownedExtents(tx)
		return err
	}
	if err := f.cat.RestoreIf(rc, accept); err != nil {
		return fmt.Errorf("raftfsm: restore: %w", err)
	}
	f.revokeAllWriters()
	f.unmarked.Add(1)
	f.restores.Add(1)
	var idx uint64
	if err := f.cat.View(func(tx *catalog.Tx) error {
		var err error
		idx, err = tx.AppliedIndex()
		return err
	}); err != nil {
		return fmt.Errorf("raftfsm: restore: %w", err)
	}
	if err := f.rebuildAllocatorFrom(context.Background(), owned, idx); err != nil {
		f.stop(err)
		return err
	}
	f.mu.Lock()
	f.applied, f.changed = idx, idx
	f.cond.Broadcast()
	f.mu.Unlock()
	return nil
}

var _ raft.BatchingFSM = (*FSM)(nil)
