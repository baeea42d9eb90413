package raftfsm

import (
	"context"
	"errors"
	"io/fs"
	"math/rand/v2"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/blobnode/blobnode/catalog"
)

// commitFailer makes the FSM's catalog commits fail on command, the way a
// full or failing disk does: the transaction runs, then is rolled back
// and the error returned (bbolt rolls back when writing its pages fails).
type commitFailer struct {
	mu  sync.Mutex // guards err
	err error
	// failed receives one value per failed commit (dropped when full).
	failed chan struct{}
}

// injectCommitFailures installs a commitFailer on f. Call it before f is
// used by another goroutine.
func injectCommitFailures(f *FSM) *commitFailer {
	c := &commitFailer{failed: make(chan struct{}, 64)}
	cat := f.cat
	f.update = func(fn func(*catalog.Tx) error) error {
		var injected error
		err := cat.Update(func(tx *catalog.Tx) error {
			if err := fn(tx); err != nil {
				return err
			}
			c.mu.Lock()
			injected = c.err
			c.mu.Unlock()
			return injected
		})
		if injected != nil {
			select {
			case c.failed <- struct{}{}:
			default:
			}
		}
		return err
	}
	return c
}

func (c *commitFailer) set(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err = err
}

// waitFailures waits until n more commits have failed.
func (c *commitFailer) waitFailures(t testing.TB, n int) {
	t.Helper()
	for range n {
		select {
		case <-c.failed:
		case <-time.After(10 * time.Second):
			t.Fatal("no failed catalog commit within 10s")
		}
	}
}

func diskError(errno syscall.Errno) error {
	return &fs.PathError{Op: "write", Path: "catalog.db", Err: errno}
}

// waitReadOnly waits until f's read-only state is (want) or is not (nil).
func waitReadOnly(t testing.TB, f *FSM, readOnly bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		changed := f.ReadOnlyChanged()
		if (f.ReadOnly() != nil) == readOnly {
			return
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("read-only state still %v after 10s", f.ReadOnly())
		}
	}
}

// TestApplyRetriesFailedCatalogCommit: when the catalog commit of a batch
// fails, the FSM turns read-only with the cause, applies nothing (catalog
// and allocator stay at the previous batch and agree), retries, and once
// the disk accepts writes applies the batch exactly as a replica that never
// failed, and is writable again.
func TestApplyRetriesFailedCatalogCommit(t *testing.T) {
	for _, tt := range []struct {
		name   string
		errno  syscall.Errno
		reason string
	}{
		{"disk full", syscall.ENOSPC, "catalog: no space left on device"},
		{"disk failing", syscall.EIO, "catalog: input/output error"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			seed := testSeed(t)
			w := newWorkload(seed)
			before, batch, after := w.logs(200), w.logs(40), w.logs(100)
			ref := newStack(t, fileDev, seed)
			refRes := applyLogs(t, ref.fsm, before, rand.New(rand.NewPCG(seed, 1)), 8)
			refBatch := ref.fsm.ApplyBatch(batch)
			refRes = append(refRes, refBatch...)
			refRes = append(refRes, applyLogs(t, ref.fsm, after, rand.New(rand.NewPCG(seed, 1)), 8)...)

			s := newStack(t, fileDev, seed)
			failer := injectCommitFailures(s.fsm)
			res := applyLogs(t, s.fsm, before, rand.New(rand.NewPCG(seed, 2)), 8)
			applied := s.fsm.Applied()
			stateBefore := s.state()

			failer.set(diskError(tt.errno))
			done := make(chan []any, 1)
			go func() { done <- s.fsm.ApplyBatch(batch) }()
			failer.waitFailures(t, 2) // failed, and retried
			ro := s.fsm.ReadOnly()
			var roe *ReadOnlyError
			if !errors.Is(ro, ErrReadOnly) || !errors.Is(ro, tt.errno) || !errors.As(ro, &roe) || roe.Reason() != tt.reason {
				t.Fatalf("ReadOnly() = %v; want ErrReadOnly matching %v with reason %q", ro, tt.errno, tt.reason)
			}
			if got := s.fsm.Applied(); got != applied {
				t.Fatalf("applied %d while the commit fails; want %d", got, applied)
			}
			if got := catalogApplied(t, s.cat); got != applied {
				t.Fatalf("catalog applied %d while its commit fails; want %d", got, applied)
			}
			if err := s.fsm.Err(); err != nil {
				t.Fatalf("FSM stopped: %v", err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			if err := s.fsm.WaitApplied(ctx, batch[0].Index); !errors.Is(err, ErrReadOnly) {
				t.Errorf("WaitApplied while read-only = %v; want ErrReadOnly at once", err)
			}
			cancel()

			failer.set(nil)
			var got []any
			select {
			case got = <-done:
			case <-time.After(10 * time.Second):
				t.Fatal("batch not applied within 10s of the disk recovering")
			}
			waitReadOnly(t, s.fsm, false)
			if s.state() == stateBefore {
				t.Fatal("the batch changed nothing")
			}
			res = append(res, got...)
			res = append(res, applyLogs(t, s.fsm, after, rand.New(rand.NewPCG(seed, 2)), 8)...)
			all := append(append(append([]*raft.Log{}, before...), batch...), after...)
			sameResults(t, "after recovery", all, res, refRes)
			sameState(t, "after recovery", s.state(), ref.state())
			s.check()
		})
	}
}

// TestCloseAbandonsRetry: Close ends the wait of a batch whose commit keeps
// failing. Its entries are answered with ErrClosed, nothing later is
// applied or snapshotted (no entry is skipped), the state on disk is
// consistent at the last applied batch, and after a restart the log's
// remaining entries apply as on a replica that never failed.
func TestCloseAbandonsRetry(t *testing.T) {
	seed := testSeed(t)
	w := newWorkload(seed)
	before, rest := w.logs(150), w.logs(60)
	ref := newStack(t, fileDev, seed)
	applyLogs(t, ref.fsm, before, rand.New(rand.NewPCG(seed, 1)), 8)
	refRest := applyLogs(t, ref.fsm, rest, rand.New(rand.NewPCG(seed, 1)), 8)

	s := newStack(t, fileDev, seed)
	failer := injectCommitFailures(s.fsm)
	applyLogs(t, s.fsm, before, rand.New(rand.NewPCG(seed, 2)), 8)
	applied := s.fsm.Applied()
	failer.set(diskError(syscall.ENOSPC))
	done := make(chan []any, 1)
	go func() { done <- s.fsm.ApplyBatch(rest[:10]) }()
	failer.waitFailures(t, 1)
	s.fsm.Close()
	select {
	case got := <-done:
		for i, r := range got {
			if res, _ := r.(Result); !errors.Is(res.Err, ErrClosed) {
				t.Fatalf("entry %d after Close: %v; want ErrClosed", rest[i].Index, fmtResult(r))
			}
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ApplyBatch still waiting 10s after Close")
	}
	failer.set(nil) // even with the disk back, nothing later may apply
	for i, r := range s.fsm.ApplyBatch(rest[10:]) {
		if res, _ := r.(Result); !errors.Is(res.Err, ErrClosed) {
			t.Fatalf("entry %d after an abandoned batch: %v; want ErrClosed", rest[10+i].Index, fmtResult(r))
		}
	}
	if _, err := s.fsm.Snapshot(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Snapshot after an abandoned batch: %v; want ErrClosed", err)
	}
	if got := s.fsm.Applied(); got != applied {
		t.Fatalf("applied %d, want %d", got, applied)
	}
	if err := s.fsm.Err(); err != nil {
		t.Fatalf("abandoning is not fatal, got %v", err)
	}
	if err := s.fsm.Sync(context.Background()); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	s.check()
	s.shutdown()
	s.open()
	if got := s.fsm.Applied(); got != applied {
		t.Fatalf("after restart applied %d, want %d", got, applied)
	}
	got := applyLogs(t, s.fsm, rest, rand.New(rand.NewPCG(seed, 3)), 8)
	sameResults(t, "after restart", rest, got, refRest)
	sameState(t, "after restart", s.state(), ref.state())
	s.check()
}

// failingLogStore fails appends while err is set.
type failingLogStore struct {
	raft.LogStore
	mu  sync.Mutex // guards err
	err error
}

func (s *failingLogStore) StoreLogs(logs []*raft.Log) error {
	s.mu.Lock()
	err := s.err
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.LogStore.StoreLogs(logs)
}

func (s *failingLogStore) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// TestLogStoreFailureIsReadOnly: a failed Raft log append makes the node
// read-only with the cause; the next append that succeeds ends it, and the
// catalog cause is tracked separately.
func TestLogStoreFailureIsReadOnly(t *testing.T) {
	s := newStack(t, fileDev, 1)
	inner := &failingLogStore{LogStore: raft.NewInmemStore()}
	ls := &watchedLogStore{LogStore: inner, fsm: s.fsm, appends: newProposer()}
	entry := func(i uint64) []*raft.Log { return []*raft.Log{{Index: i, Type: raft.LogCommand}} }

	if err := ls.StoreLogs(entry(1)); err != nil || s.fsm.ReadOnly() != nil {
		t.Fatalf("healthy append: %v, read-only %v", err, s.fsm.ReadOnly())
	}
	inner.mu.Lock()
	inner.err = &fs.PathError{Op: "write", Path: "wal/00001.wal", Err: syscall.ENOSPC}
	inner.mu.Unlock()
	changed := s.fsm.ReadOnlyChanged()
	if err := ls.StoreLogs(entry(2)); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("failing append returned %v", err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("entering read-only did not signal ReadOnlyChanged")
	}
	var roe *ReadOnlyError
	if ro := s.fsm.ReadOnly(); !errors.As(ro, &roe) || roe.Reason() != "raft log: no space left on device" || !errors.Is(ro, syscall.ENOSPC) {
		t.Fatalf("ReadOnly() = %v", ro)
	}
	if strings.Contains(roe.Reason(), "wal/") {
		t.Errorf("reason %q names a path", roe.Reason())
	}
	s.fsm.setReadOnly(whereCatalog, diskError(syscall.EIO))
	inner.mu.Lock()
	inner.err = nil
	inner.mu.Unlock()
	if err := ls.StoreLog(entry(2)[0]); err != nil {
		t.Fatalf("append after recovery: %v", err)
	}
	if ro := s.fsm.ReadOnly(); !errors.As(ro, &roe) || roe.Where != whereCatalog {
		t.Fatalf("after the log recovered, ReadOnly() = %v; want the catalog cause only", ro)
	}
	s.fsm.clearReadOnly(whereCatalog)
	if ro := s.fsm.ReadOnly(); ro != nil {
		t.Fatalf("after both recovered, ReadOnly() = %v", ro)
	}
}

// TestNodeReadOnlyWritesFailFastReadsServe: on a single-voter node whose
// catalog commits fail, an in-flight proposal returns ErrReadOnly instead
// of hanging, new proposals are refused at once, linearizable reads are
// served from the applied state without waiting, and once the disk
// recovers the held entry is applied, proposals work again, and Close
// returns promptly even while a batch waits for the disk.
func TestNodeReadOnlyWritesFailFastReadsServe(t *testing.T) {
	s := newStack(t, fileDev, 1)
	failer := injectCommitFailures(s.fsm)
	n := startNode(t, NodeConfig{ID: "n1", Dir: t.TempDir(), BindAddr: freeAddr(t)}, s.fsm)
	propose(t, n, Command{Kind: KindInit, Geometry: testGeometry.String()})
	dl := time.Now().Add(time.Hour).UnixNano()
	propose(t, n, Command{Kind: KindReserve, ReservationID: 1, Size: 4096, Deadline: dl})

	failer.set(diskError(syscall.ENOSPC))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := n.Propose(ctx, &Command{Kind: KindReserve, ReservationID: 2, Size: 4096, Deadline: dl})
	if !errors.Is(err, ErrReadOnly) || !errors.Is(err, syscall.ENOSPC) || !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("in-flight Propose = %v; want ErrReadOnly (ENOSPC), outcome unknown (it applies after the recovery)", err)
	}
	start := time.Now()
	if _, err := n.Propose(ctx, &Command{Kind: KindNoop}); !errors.Is(err, ErrReadOnly) || errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("Propose while read-only = %v; want ErrReadOnly, refused before Raft (no unknown outcome)", err)
	}
	if err := n.ReadBarrier(ctx); err != nil {
		t.Fatalf("ReadBarrier on a read-only sole voter = %v; want nil (local read)", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("refusing a write and a read barrier took %v", d)
	}
	if ids := reviewReservations(t, s); len(ids) != 1 || ids[0] != 1 {
		t.Fatalf("reservations while read-only: %v; want [1]", ids)
	}

	failer.set(nil)
	waitReadOnly(t, s.fsm, false)
	if ids := reviewReservations(t, s); len(ids) != 2 {
		t.Fatalf("reservations after recovery: %v; want the held Reserve applied too", ids)
	}
	propose(t, n, Command{Kind: KindAbort, ReservationID: 2})
	if err := n.ReadBarrier(ctx); err != nil {
		t.Fatalf("ReadBarrier after recovery: %v", err)
	}

	failer.set(diskError(syscall.EIO))
	if _, err := n.Propose(ctx, &Command{Kind: KindAbort, ReservationID: 1}); !errors.Is(err, ErrReadOnly) {
		t.Fatalf("Propose = %v; want ErrReadOnly", err)
	}
	closed := make(chan error, 1)
	go func() { closed <- n.Close() }()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close hangs while a batch waits for the disk")
	}
	if err := s.fsm.Err(); err != nil {
		t.Fatalf("FSM stopped: %v", err)
	}
	s.check()
}
