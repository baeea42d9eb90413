package raftfsm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"go.etcd.io/bbolt"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/volume"
)

// freeAddr returns a 127.0.0.1 address whose port was free a moment ago
// (the Raft transport advertises the address it is given, so a real port
// is used rather than :0).
func freeAddr(t testing.TB) string {
	t.Helper()
	return freeAddrs(t, 1)[0]
}

// freeAddrs returns n distinct free loopback addresses: every listener is
// held open until all are chosen (ports picked one after the other, each
// closed at once, can repeat: the group test once got the same port twice).
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		defer l.Close()
		addrs[i] = l.Addr().String()
	}
	return addrs
}

// startNode starts a bootstrapped single-voter node over real TCP and waits
// until it leads and its FSM has applied everything in the log
// (ReadBarrier alone does not wait for that right after an election, see
// TestNodeReadBarrierAfterRestart).
func startNode(t testing.TB, cfg NodeConfig, fsm *FSM) *Node {
	t.Helper()
	cfg.Bootstrap = true
	cfg.Logger = discardLogger()
	n, err := StartNode(context.Background(), cfg, fsm)
	if err != nil {
		t.Fatalf("StartNode: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := n.WaitLeader(ctx); err != nil {
		t.Fatalf("WaitLeader: %v", err)
	}
	for !n.IsLeader() {
		select {
		case <-ctx.Done():
			t.Fatalf("not leader: %v", n.Raft().State())
		case <-time.After(5 * time.Millisecond):
		}
	}
	// A command of this term, applied: everything before it is applied
	// too. (Not raft.Barrier: its entry never reaches the FSM, whose applied
	// index would then stay below the commit index until the next command.)
	propose(t, n, Command{Kind: KindNoop})
	if err := n.ReadBarrier(ctx); err != nil {
		t.Fatalf("ReadBarrier: %v", err)
	}
	return n
}

func propose(t testing.TB, n *Node, c Command) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := n.Propose(ctx, &c)
	if err != nil {
		t.Fatalf("Propose(kind %d): %v", c.Kind, err)
	}
	return res
}

func extentBytes(exts []catalog.Extent) int64 {
	var n int64
	for _, e := range exts {
		n += e.Length
	}
	return n
}

// walMeta is raft-wal's bbolt file inside a node's Dir.
func walMeta(dir string) string { return filepath.Join(dir, "wal", "wal-meta.db") }

// logStoreLocked reports whether a closed node's log store still holds its
// file lock (bbolt's flock conflicts across open files, also within one
// process).
func logStoreLocked(t testing.TB, dir string) bool {
	t.Helper()
	if _, err := os.Stat(walMeta(dir)); err != nil {
		return false
	}
	db, err := bbolt.Open(walMeta(dir), 0o600, &bbolt.Options{Timeout: 200 * time.Millisecond})
	if errors.Is(err, bbolt.ErrTimeout) {
		return true
	}
	if err != nil {
		t.Fatalf("open %s: %v", walMeta(dir), err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return false
}

// restartDir returns the directory to restart a closed node in, after
// checking that Close released its log store (a locked one would make the
// restart block forever).
func restartDir(t testing.TB, dir string) string {
	t.Helper()
	if logStoreLocked(t, dir) {
		t.Fatalf("the closed node's log store in %s is still locked", dir)
	}
	return dir
}

// TestNodeCloseReleasesLogStore: after Close the node's files are free, so
// the node can be started again in the same process (tests, an embedding
// program) without blocking on its own leftover file lock.
func TestNodeCloseReleasesLogStore(t *testing.T) {
	s := newStack(t, fileDev, 1)
	dir := t.TempDir()
	n := startNode(t, NodeConfig{ID: "n1", Dir: dir, BindAddr: freeAddr(t)}, s.fsm)
	propose(t, n, Command{Kind: KindNoop})
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if logStoreLocked(t, dir) {
		t.Fatalf("%s is still locked after Close: StartNode on this Dir would block forever", walMeta(dir))
	}
}

// TestNodeProposeAndRead drives the FSM through real Raft over TCP: results
// come back to the proposer, ReadBarrier makes the applied state visible,
// concurrent proposals are all applied once, and a closed node refuses.
func TestNodeProposeAndRead(t *testing.T) {
	s := newStack(t, fileDev, 1)
	n := startNode(t, NodeConfig{ID: "n1", Dir: t.TempDir(), BindAddr: freeAddr(t)}, s.fsm)

	if res := propose(t, n, Command{Kind: KindInit, Geometry: testGeometry.String()}); res.Err != nil {
		t.Fatalf("Init: %v", res.Err)
	}
	const size = 300 << 10
	res := propose(t, n, Command{Kind: KindReserve, ReservationID: 1, Size: size, Deadline: 1})
	if res.Err != nil || extentBytes(res.Extents) < size {
		t.Fatalf("Reserve: %s", fmtResult(res))
	}
	exts := res.Extents
	if res := propose(t, n, Command{Kind: KindReserve, ReservationID: 1, Size: size}); !errors.Is(res.Err, ErrDuplicate) {
		t.Fatalf("second Reserve of id 1: %s; want ErrDuplicate", fmtResult(res))
	}
	commit := Command{Kind: KindCommit, ReservationIDs: []uint64{1}, Size: size, Key: "k", ChunkSize: size, Checksums: []uint32{7}}
	res = propose(t, n, commit)
	if res.Err != nil || res.Version == 0 {
		t.Fatalf("Commit: %s", fmtResult(res))
	}
	version := res.Version

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.ReadBarrier(ctx); err != nil {
		t.Fatalf("ReadBarrier: %v", err)
	}
	if err := s.fsm.View(func(tx *catalog.Tx) error {
		b, ok, err := tx.GetBlob("k")
		if err != nil || !ok || b.Version != version || fmt.Sprint(b.Extents) != fmt.Sprint(exts) {
			return fmt.Errorf("blob k = %+v, %v, %v; want version %d on %v", b, ok, err, version, exts)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if res := propose(t, n, Command{Kind: KindDelete, Key: "k", IfMatch: version + 1}); !errors.Is(res.Err, ErrPreconditionFailed) {
		t.Fatalf("Delete with a wrong If-Match: %s", fmtResult(res))
	}

	// Concurrent proposers: hashicorp/raft batches them; each gets its own
	// result and no two reservations share a page.
	const workers, each = 8, 12
	type out struct {
		id  uint64
		res Result
		err error
	}
	results := make(chan out, workers*each)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				id := uint64(100 + w*each + i)
				c := Command{Kind: KindReserve, ReservationID: id, Size: 20 << 10, Deadline: 1}
				res, err := n.Propose(ctx, &c)
				results <- out{id, res, err}
			}
		})
	}
	wg.Wait()
	close(results)
	for o := range results {
		if o.err != nil || o.res.Err != nil || extentBytes(o.res.Extents) < 20<<10 {
			t.Fatalf("concurrent Reserve %d: %v, %s", o.id, o.err, fmtResult(o.res))
		}
	}
	if err := n.ReadBarrier(ctx); err != nil {
		t.Fatalf("ReadBarrier: %v", err)
	}
	var count int
	if err := s.fsm.View(func(tx *catalog.Tx) error {
		return tx.ForEachReservation(func(catalog.Reservation) error { count++; return nil })
	}); err != nil {
		t.Fatal(err)
	}
	if count != workers*each {
		t.Fatalf("%d reservations; want %d", count, workers*each)
	}
	if res := propose(t, n, Command{Kind: KindExpire, Now: 1}); res.Err != nil {
		t.Fatalf("Expire: %v", res.Err)
	}
	s.check()

	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := n.Propose(ctx, &Command{Kind: KindNoop}); !errors.Is(err, ErrNotLeader) {
		t.Fatalf("Propose after Close = %v; want ErrNotLeader", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestNodeCloseNoGoroutineLeak: Close stops Raft, the transport, the log
// store and the node's own goroutines.
func TestNodeCloseNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	s := newStack(t, fileDev, 1)
	n := startNode(t, NodeConfig{ID: "n1", Dir: t.TempDir(), BindAddr: freeAddr(t), SnapshotInterval: 10 * time.Millisecond, SnapshotThreshold: 4}, s.fsm)
	for i := range 10 {
		propose(t, n, Command{Kind: KindReserve, ReservationID: uint64(i + 1), Size: 4096})
	}
	if err := n.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s.shutdown()
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
}

func raftStat(t testing.TB, n *Node, name string) uint64 {
	t.Helper()
	v, err := strconv.ParseUint(n.Raft().Stats()[name], 10, 64)
	if err != nil {
		t.Fatalf("raft stat %s: %v", name, err)
	}
	return v
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
}

// TestNodeRestartAfterSnapshot is DESIGN.md's NoSnapshotRestoreOnStart case:
// entries are applied and snapshotted (by threshold during normal operation,
// compacting the log, and once by hand), more entries follow, the node is
// closed and restarted on the same files. Raft then starts from the
// snapshot's index without restoring it and replays the later entries,
// some of which the FSM has already applied: every decision must be present
// exactly once (no entry lost, none applied twice).
func TestNodeRestartAfterSnapshot(t *testing.T) {
	seed := testSeed(t)
	s := newStack(t, fileDev, seed)
	cfg := NodeConfig{
		ID: "n1", Dir: t.TempDir(), BindAddr: freeAddr(t),
		SnapshotThreshold: 24, SnapshotInterval: 10 * time.Millisecond, TrailingLogs: 8,
	}
	n := startNode(t, cfg, s.fsm)
	w := newWorkload(seed)
	propose(t, n, Command{Kind: KindInit, Geometry: testGeometry.String()})
	run := func(count int) {
		for range count {
			c := w.command()
			if c.Kind == KindExpire {
				continue // keep reservations alive: re-applied Reserves must show
			}
			propose(t, n, c)
		}
	}
	run(120)
	// Snapshots by threshold, and the log compacted behind them.
	waitFor(t, "an automatic snapshot and log compaction", 10*time.Second, func() bool {
		first, err := n.logs.FirstIndex()
		return err == nil && first > 1 && raftStat(t, n, "last_snapshot_index") > 0
	})
	// A Reserve and the Commit that consumes it, both before the snapshot.
	propose(t, n, Command{Kind: KindReserve, ReservationID: 1 << 32, Size: 5000})
	propose(t, n, Command{Kind: KindCommit, ReservationIDs: []uint64{1 << 32}, Size: 5000, Key: "before", ChunkSize: 5000, Checksums: []uint32{1}})
	err := n.Snapshot()
	if errors.Is(err, raft.ErrNothingNewToSnapshot) { // an automatic one just took it all
		propose(t, n, Command{Kind: KindNoop})
		err = n.Snapshot()
	}
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	snapIdx := raftStat(t, n, "last_snapshot_index")

	// After the snapshot: fewer entries than the threshold, including a
	// Reserve consumed by a Commit (re-applying the Reserve would resurrect
	// the reservation) and a Delete of a blob committed before.
	propose(t, n, Command{Kind: KindReserve, ReservationID: 1<<32 + 1, Size: 70000})
	propose(t, n, Command{Kind: KindCommit, ReservationIDs: []uint64{1<<32 + 1}, Size: 70000, Key: "after", ChunkSize: 70000, Checksums: []uint32{2}})
	if res := propose(t, n, Command{Kind: KindDelete, Key: "before"}); res.Err != nil {
		t.Fatalf("Delete: %v", res.Err)
	}
	run(10)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.ReadBarrier(ctx); err != nil {
		t.Fatalf("ReadBarrier: %v", err)
	}
	want := s.content()
	applied := s.fsm.Applied()
	lastIndex := raftStat(t, n, "last_log_index")
	first, err := n.logs.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("before restart: snapshot at %d, log %d..%d, FSM applied %d", snapIdx, first, lastIndex, applied)
	if first <= 1 {
		t.Fatalf("log not compacted: first index %d", first)
	}
	if snapIdx >= applied {
		t.Fatalf("snapshot index %d not behind the applied index %d: nothing would be replayed", snapIdx, applied)
	}
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s.shutdown()

	s.open()
	if s.fsm.Applied() < applied {
		t.Fatalf("reopened FSM at %d; it had applied %d", s.fsm.Applied(), applied)
	}
	cfg.Dir = restartDir(t, cfg.Dir)
	n = startNode(t, cfg, s.fsm)
	if s.fsm.Applied() < applied {
		t.Fatalf("restarted FSM at %d; it had applied %d", s.fsm.Applied(), applied)
	}
	if got := raftStat(t, n, "last_snapshot_index"); got < snapIdx {
		t.Fatalf("restarted with snapshot index %d; want >= %d", got, snapIdx)
	}
	if got := raftStat(t, n, "applied_index"); got <= lastIndex {
		t.Fatalf("restarted Raft applied %d; want past %d", got, lastIndex)
	}
	sameState(t, "after restart", s.content(), want)
	s.check()

	// And it keeps working: a new reservation lands on free pages.
	res := propose(t, n, Command{Kind: KindReserve, ReservationID: 1<<32 + 2, Size: 9000})
	if res.Err != nil && !errors.Is(res.Err, ErrNoSpace) {
		t.Fatalf("Reserve after restart: %s", fmtResult(res))
	}
	if err := n.ReadBarrier(ctx); err != nil {
		t.Fatalf("ReadBarrier: %v", err)
	}
	s.check()
}

// TestNodeUncleanRestartRestoresSnapshot is the daemon's recovery after an
// unclean stop: the catalog (which runs without fsync) is discarded, the
// allocator's unsynced writes are lost in a power cut, and the node starts
// with RestoreSnapshot: Raft restores its latest snapshot into the FSM and
// replays the log after it. Every decision comes back, once.
func TestNodeUncleanRestartRestoresSnapshot(t *testing.T) {
	seed := testSeed(t)
	s := newStack(t, memDev, seed)
	cfg := NodeConfig{ID: "n1", Dir: t.TempDir(), BindAddr: freeAddr(t)}
	n := startNode(t, cfg, s.fsm)
	w := newWorkload(seed)
	propose(t, n, Command{Kind: KindInit, Geometry: testGeometry.String()})
	for range 80 {
		propose(t, n, w.command())
	}
	if err := n.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	propose(t, n, Command{Kind: KindReserve, ReservationID: 1 << 32, Size: 70000})
	propose(t, n, Command{Kind: KindCommit, ReservationIDs: []uint64{1 << 32}, Size: 70000, Key: "after", ChunkSize: 70000, Checksums: []uint32{2}})
	for range 20 {
		propose(t, n, w.command())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.ReadBarrier(ctx); err != nil {
		t.Fatalf("ReadBarrier: %v", err)
	}
	want := s.content()
	applied := s.fsm.Applied()
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	// Power cut; the daemon then sets the catalog aside and rebuilds.
	s.crash(volume.CrashDropAll, nil)
	if err := os.Rename(filepath.Join(s.dir, "catalog.db"), filepath.Join(s.dir, "catalog.db.unclean")); err != nil {
		t.Fatal(err)
	}
	s.forceRebuild = true
	s.open()
	cfg.RestoreSnapshot = true
	cfg.Dir = restartDir(t, cfg.Dir)
	n = startNode(t, cfg, s.fsm)
	if s.fsm.Applied() < applied {
		t.Fatalf("restarted FSM at %d; it had applied %d", s.fsm.Applied(), applied)
	}
	sameState(t, "after the unclean restart", s.content(), want)
	s.check()
}

// TestNodeReadBarrierAfterRestart: a read after ReadBarrier must see every
// write committed before it, also right after a restart or an election. A
// new leader's commit index lags until it commits an entry of its own term
// (Raft §6.4; hashicorp/raft starts it at 0), so a barrier that trusts it
// at that moment lets a read miss committed entries. Here the FSM restarts
// from its snapshot and must replay the rest of the log first.
func TestNodeReadBarrierAfterRestart(t *testing.T) {
	seed := testSeed(t)
	s := newStack(t, memDev, seed)
	cfg := NodeConfig{ID: "n1", Dir: t.TempDir(), BindAddr: freeAddr(t)}
	n := startNode(t, cfg, s.fsm)
	w := newWorkload(seed)
	propose(t, n, Command{Kind: KindInit, Geometry: testGeometry.String()})
	for range 30 {
		propose(t, n, w.command())
	}
	if err := n.Snapshot(); err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	for range 100 {
		propose(t, n, w.command())
	}
	applied := s.fsm.Applied()
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s.crash(volume.CrashDropAll, nil)
	if err := os.Remove(filepath.Join(s.dir, "catalog.db")); err != nil {
		t.Fatal(err)
	}
	s.forceRebuild = true
	s.open()
	cfg.RestoreSnapshot = true
	cfg.Dir = restartDir(t, cfg.Dir)
	cfg.Logger = discardLogger()
	n, err := StartNode(context.Background(), cfg, s.fsm)
	if err != nil {
		t.Fatalf("StartNode: %v", err)
	}
	t.Cleanup(func() { _ = n.Close() })
	waitFor(t, "leadership", 20*time.Second, n.IsLeader)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := n.ReadBarrier(ctx); err != nil {
		t.Fatalf("ReadBarrier: %v", err)
	}
	if got := s.fsm.Applied(); got < applied {
		t.Fatalf("ReadBarrier returned with the FSM at %d (commit index %d); entries up to %d were committed before the restart",
			got, n.Raft().CommitIndex(), applied)
	}
}

// TestNodeReadBarrierAfterClose: ReadBarrier on a closed node fails (with
// ErrNotLeader) or at worst ends with its context; it never blocks forever.
// hashicorp/raft's VerifyLeader, after Shutdown, picks at random between
// its closed shutdown channel and its buffered verify channel; in the second
// case the future is never answered, and ReadBarrier waits on it without
// looking at ctx.
func TestNodeReadBarrierAfterClose(t *testing.T) {
	s := newStack(t, fileDev, 1)
	n := startNode(t, NodeConfig{ID: "n1", Dir: t.TempDir(), BindAddr: freeAddr(t)}, s.fsm)
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	for i := range 20 {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		done := make(chan error, 1)
		go func() { done <- n.ReadBarrier(ctx) }() // leaks if it hangs: the bug
		select {
		case err := <-done:
			if err == nil {
				t.Fatalf("ReadBarrier %d after Close succeeded", i)
			}
		case <-time.After(5 * time.Second):
			cancel()
			t.Fatalf("ReadBarrier %d after Close ignored its 200ms context and was still blocked after 5s", i)
		}
		cancel()
	}
}

// TestNodeReadIndexCheap: the leader's ReadIndex, which every linearizable
// read takes, reads the same term raft.Stats reports, without paying for
// Stats (a map of every statistic and the formatted configuration) on the
// way: one ReadIndex, VerifyLeader round included, allocates less than one
// Stats call.
func TestNodeReadIndexCheap(t *testing.T) {
	s := newStack(t, fileDev, 1)
	n := startNode(t, NodeConfig{ID: "n1", Dir: t.TempDir(), BindAddr: freeAddr(t)}, s.fsm)
	if got, want := n.currentTerm(), raftStat(t, n, "term"); got != want || got == 0 {
		t.Fatalf("currentTerm = %d, raft.Stats term = %d", got, want)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := n.ReadIndex(ctx); err != nil { // the term's first read commits a no-op
		t.Fatalf("ReadIndex: %v", err)
	}
	var err error
	readIndex := testing.AllocsPerRun(50, func() {
		if _, e := n.ReadIndex(ctx); e != nil {
			err = e
		}
	})
	if err != nil {
		t.Fatalf("ReadIndex: %v", err)
	}
	stats := testing.AllocsPerRun(50, func() { _ = n.Raft().Stats() })
	t.Logf("allocations: ReadIndex %.0f, raft.Stats %.0f", readIndex, stats)
	if readIndex >= stats {
		t.Errorf("ReadIndex allocates %.0f times, no fewer than one raft.Stats (%.0f): is the term read through Stats again?", readIndex, stats)
	}
}

// TestSoleVoterReadIndexAsksNoOne: once a term's first read has committed
// its no-op, a leader that is its group's only voter answers ReadIndex with
// its commit index, without a confirmation round (ReadIndexBatcher's
// Fetch); the index covers every write answered before the call.
func TestSoleVoterReadIndexAsksNoOne(t *testing.T) {
	s := newStack(t, fileDev, 1)
	n := startNode(t, NodeConfig{ID: "n1", Dir: t.TempDir(), BindAddr: freeAddr(t)}, s.fsm)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	fetched := 0
	fetch := n.reads.Fetch
	n.reads.Fetch = func(ctx context.Context) (uint64, error) { fetched++; return fetch(ctx) }
	if _, err := n.ReadIndex(ctx); err != nil { // commits the term's no-op, unless startNode's read did
		t.Fatalf("ReadIndex: %v", err)
	}
	fetched = 0
	w := newWorkload(1)
	propose(t, n, Command{Kind: KindInit, Geometry: testGeometry.String()})
	for range 20 {
		propose(t, n, w.command())
		written := n.Raft().LastIndex()
		idx, err := n.ReadIndex(ctx)
		if err != nil {
			t.Fatalf("ReadIndex: %v", err)
		}
		if idx < written {
			t.Fatalf("ReadIndex = %d after a write answered at %d", idx, written)
		}
	}
	if fetched != 0 {
		t.Fatalf("%d confirmations after the term's first read; a sole voter needs none", fetched)
	}
	// Before a term's no-op commits, the commit index may still lag
	// entries of earlier terms (a restart replays them): no shortcut.
	readTerm := n.readTerm.Load()
	n.readTerm.Store(0)
	if idx, ok := n.soleLeaderIndex(); ok {
		t.Fatalf("soleLeaderIndex = %d before the term's first read committed its no-op", idx)
	}
	n.readTerm.Store(readTerm)
	// A second voter, even one whose addition cannot commit (nobody
	// answers at its address), ends the shortcut once it is in the latest
	// configuration, though the answer for the previous last index was
	// cached. (The node may also step down meanwhile, its lease lapsing
	// without n2: soleVoterLeading is asked directly.)
	term := n.currentTerm()
	if !n.soleVoterLeading(term) {
		t.Fatal("not a sole voter before the second voter was added")
	}
	_ = n.Raft().AddVoter("n2", raft.ServerAddress(freeAddr(t)), 0, 0) // never answers: n2 cannot vote
	waitFor(t, "n2 in the latest configuration", 10*time.Second, func() bool { return !n.soleVoter() })
	if n.soleVoterLeading(term) {
		t.Fatal("soleVoterLeading still says sole with a second voter in the latest configuration")
	}
}

// TestSoleVoterCampaignsAtStart: a node that is its group's only voter
// leads at once, on its first start and on a restart with Raft state,
// instead of waiting out a heartbeat timeout (here two minutes, so a node
// that waited would fail the 20 s bounds of startNode); afterwards the
// timeout is the configured one again.
func TestSoleVoterCampaignsAtStart(t *testing.T) {
	const hb = 2 * time.Minute
	s := newStack(t, fileDev, 1)
	cfg := NodeConfig{ID: "n1", Dir: t.TempDir(), BindAddr: freeAddr(t), HeartbeatTimeout: hb}
	n := startNode(t, cfg, s.fsm)
	propose(t, n, Command{Kind: KindReserve, ReservationID: 1<<32 + 1, Size: 9000})
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s.shutdown()
	s.open()
	cfg.Dir = restartDir(t, cfg.Dir)
	n = startNode(t, cfg, s.fsm)
	if got := n.Raft().ReloadableConfig().HeartbeatTimeout; got != hb {
		t.Fatalf("heartbeat timeout after start: %v; want %v", got, hb)
	}
}
