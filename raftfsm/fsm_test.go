package raftfsm

import (
	"context"
	"errors"
	"fmt"
	"io"
	mrand "math/rand"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/volume"
)

// TestDeterminism: two replicas with separate catalogs and allocators (one
// on a MemDevice, one on a real file) fed the same log in different random
// batchings return the same responses and reach the same state, compared
// every 100 entries; both pass the catalog and allocator checks.
func TestDeterminism(t *testing.T) {
	seed := testSeed(t)
	a := newStack(t, memDev, seed)
	b := newStack(t, fileDev, seed)
	ra, rb := rand.New(rand.NewPCG(seed, 1)), rand.New(rand.NewPCG(seed, 2))
	w := newWorkload(seed)
	var all []*raft.Log
	var allRes []any
	for round := range 8 {
		logs := w.logs(100)
		resA := applyLogs(t, a.fsm, logs, ra, 24)
		resB := applyLogs(t, b.fsm, logs, rb, 5)
		sameResults(t, fmt.Sprintf("round %d", round), logs, resB, resA)
		sameState(t, fmt.Sprintf("round %d", round), b.state(), a.state())
		sameState(t, fmt.Sprintf("round %d catalog bytes", round), catalogBytes(t, b.cat), catalogBytes(t, a.cat))
		a.check()
		b.check()
		all, allRes = append(all, logs...), append(allRes, resA...)
	}
	s := summarise(all, allRes)
	t.Logf("outcomes: %v; %d retries, %d reused ids", s, w.retries, w.reuses)
	refused := 0
	for outcome, n := range s {
		if strings.HasSuffix(outcome, ErrRequestIDReused.Error()) {
			refused += n
		}
	}
	if w.retries == 0 || refused == 0 {
		t.Errorf("the workload retried %d commands and had %d of %d reused ids refused; want some of each",
			w.retries, refused, w.reuses)
	}
	s.requireSome(t, "reserve ok", "commit ok", "delete ok", "abort ok", "expire ok", "skipped",
		"reserve "+ErrInvalid.Error(), "commit "+ErrNoReservation.Error(), "commit "+ErrInvalid.Error())
	if s["commit "+ErrPreconditionFailed.Error()]+s["delete "+ErrPreconditionFailed.Error()] == 0 {
		t.Errorf("no precondition ever failed; outcomes: %v", s)
	}
}

// TestReplaySkipsAppliedEntries: after a restart (clean, or a power cut
// that loses the allocator's lazily committed writes while the synced
// catalog keeps everything) the FSM resumes at its durable applied index; when
// Raft hands it entries 1..N again (as it does after a restart), they have
// no effect, and the state after 1..M equals that of applying 1..M once.
func TestReplaySkipsAppliedEntries(t *testing.T) {
	seed := testSeed(t)
	const n, m = 300, 500
	w := newWorkload(seed)
	logs := w.logs(m)
	ref := newStack(t, memDev, seed)
	refRes := applyLogs(t, ref.fsm, logs, rand.New(rand.NewPCG(seed, 1)), 16)
	want := ref.state()

	for _, restart := range []string{"clean", "crash"} {
		t.Run(restart, func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 2))
			v := newStack(t, memDev, seed)
			applyLogs(t, v.fsm, logs[:n], r, 16)
			if restart == "clean" {
				v.shutdown()
			} else {
				v.crash(volume.CrashDropAll, nil)
			}
			v.open()
			// A clean stop finds both at N. After a crash the allocator may
			// be behind (its commits are lazy) and Open rebuilds it.
			if v.fsm.Applied() != n || v.catAppliedAtOpen != n || v.alloc.AppliedIndex() != n ||
				v.allocAppliedAtOpen > n || (restart == "clean" && v.allocAppliedAtOpen != n) {
				t.Fatalf("after restart: fsm applied %d, catalog %d, allocator %d (at open %d); want all %d",
					v.fsm.Applied(), v.catAppliedAtOpen, v.alloc.AppliedIndex(), v.allocAppliedAtOpen, n)
			}
			v.check()
			before := v.state()
			// Entries 1..N again, in batches of their own, then batches that
			// straddle N, then the rest.
			res := applyLogs(t, v.fsm, logs[:n], r, 40)
			for i, x := range res {
				if fmtResult(x) != fmtResult(Result{}) {
					t.Fatalf("replayed entry %d returned %s; want an empty result", logs[i].Index, fmtResult(x))
				}
			}
			sameState(t, "after replaying 1..N", v.state(), before)
			res = append(res[:n-20], applyLogs(t, v.fsm, logs[n-20:], r, 40)...)
			sameResults(t, "entries N+1..M", logs[n:], res[n:], refRes[n:])
			sameState(t, "after 1..M", v.state(), want)
			v.check()
		})
	}
}

// failAllocatorCommit arms a fault on the device under the allocator's
// journal and applies batches until the FSM stops, returning the index of
// the last entry it was given. ApplyBatch only submits the allocator's
// transaction (lazily: the Raft log is the durable record), so after each
// batch the test takes a snapshot, whose Sync waits for the allocator's
// commit, as hashicorp/raft's snapshots do. The catalog commits each batch
// before the allocator, so it ends ahead of the allocator's durable state.
func failAllocatorCommit(t *testing.T, v *stack, logs []*raft.Log, fault string) (last uint64) {
	t.Helper()
	switch fault {
	case "sync":
		v.mem.FailSyncAfter(0)
	case "write":
		v.mem.FailWritesAfter(0)
	default:
		var k int64
		if _, err := fmt.Sscanf(fault, "op+%d", &k); err != nil {
			t.Fatalf("bad fault %q", fault)
		}
		v.mem.SetCrashAt(v.mem.Ops() + k)
	}
	stopped := func() bool {
		select {
		case <-v.fsm.Stopped():
			return true
		default:
			return false
		}
	}
	for len(logs) > 0 && !stopped() {
		batch := logs[:min(len(logs), 12)]
		logs = logs[len(batch):]
		res := v.fsm.ApplyBatch(batch)
		last = batch[len(batch)-1].Index
		if stopped() {
			for i, x := range res {
				if r, _ := x.(Result); !errors.Is(r.Err, ErrStopped) {
					t.Fatalf("entry %d of the failed batch: %s; want ErrStopped", batch[i].Index, fmtResult(x))
				}
			}
			break
		}
		// The fault is sticky: a commit that reaches it fails (one a few
		// operations away may lie past this batch's journal writes).
		if snap, err := v.fsm.Snapshot(); err == nil {
			snap.Release()
		} else if !stopped() {
			t.Fatalf("Snapshot failed (%v) but the FSM did not stop", err)
		}
	}
	if !stopped() {
		t.Fatalf("the FSM never stopped after fault %s", fault)
	}
	if !errors.Is(v.fsm.Err(), ErrStopped) {
		t.Fatalf("Err() = %v; want ErrStopped", v.fsm.Err())
	}
	if r, _ := v.fsm.ApplyBatch(logs[:1])[0].(Result); !errors.Is(r.Err, ErrStopped) {
		t.Fatalf("apply after the stop: %s; want ErrStopped", fmtResult(r))
	}
	return last
}

// TestCrashBetweenCatalogAndAllocator: the catalog commits a batch, the
// allocator's journal commit fails (FSM stops), power is cut. On reopen the
// FSM sees the allocator behind the catalog, rebuilds the allocator from the
// catalog, and replaying the log from there gives exactly the responses and
// state of a replica that never crashed: later Reserves get the same
// extents (the allocator's history independence).
func TestCrashBetweenCatalogAndAllocator(t *testing.T) {
	seed := testSeed(t)
	const k, m = 250, 450
	w := newWorkload(seed)
	w.noInline = true // the faults are for the journal's writes and syncs
	logs := w.logs(m)
	ref := newStack(t, memDev, seed)
	refRes := applyLogs(t, ref.fsm, logs, rand.New(rand.NewPCG(seed, 1)), 16)
	want := ref.state()

	faults := []string{"sync", "write", "op+1", "op+2", "op+3", "op+5"}
	modes := volume.CrashModes()
	rebuilt := 0
	for i, fault := range faults {
		mode := modes[i%len(modes)]
		t.Run(fmt.Sprintf("%s/%v", fault, mode), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, uint64(10+i)))
			v := newStack(t, memDev, seed)
			applyLogs(t, v.fsm, logs[:k], r, 16)
			// Make both durable at K (a snapshot syncs them first).
			snap, err := v.fsm.Snapshot()
			if err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			snap.Release()
			last := failAllocatorCommit(t, v, logs[k:], fault)
			if got := catalogApplied(t, v.cat); got != last {
				t.Fatalf("catalog applied %d after the failed batch; want %d (catalog commits first)", got, last)
			}
			v.crash(mode, mrand.New(mrand.NewSource(int64(seed)+int64(i))))
			v.open()
			t.Logf("reopened: catalog at %d, allocator at %d (needs rebuild: %v)", v.catAppliedAtOpen, v.allocAppliedAtOpen, v.needsRebuildAtOpen)
			if v.catAppliedAtOpen != last {
				t.Fatalf("catalog applied %d after the crash; want %d", v.catAppliedAtOpen, last)
			}
			if v.allocAppliedAtOpen > last {
				t.Fatalf("allocator applied %d is ahead of the catalog's %d", v.allocAppliedAtOpen, last)
			}
			if v.allocAppliedAtOpen < k {
				t.Fatalf("allocator applied %d after the crash; it was durable at %d", v.allocAppliedAtOpen, k)
			}
			if fault == "sync" && v.allocAppliedAtOpen != k {
				t.Fatalf("allocator applied %d after its syncs failed; want %d", v.allocAppliedAtOpen, k)
			}
			if v.allocAppliedAtOpen != last {
				rebuilt++
			}
			if v.fsm.Applied() != last || v.alloc.AppliedIndex() != last {
				t.Fatalf("after Open: fsm applied %d, allocator %d; want %d", v.fsm.Applied(), v.alloc.AppliedIndex(), last)
			}
			v.check()
			res := applyLogs(t, v.fsm, logs, r, 16)
			sameResults(t, "entries after the crash", logs[last:], res[last:], refRes[last:])
			sameState(t, "after replay", v.state(), want)
			v.check()
		})
	}
	if rebuilt == 0 {
		t.Errorf("no crash left the allocator behind the catalog: the rebuild path was never tested")
	}
}

// TestAllocatorAheadOfCatalog is the reverse order: the allocator's state
// reflects entries the catalog lost (here: the catalog file is replaced by
// an older copy of itself). Open rebuilds the allocator from the catalog,
// and replay re-applies the lost entries with the original decisions.
func TestAllocatorAheadOfCatalog(t *testing.T) {
	seed := testSeed(t)
	const k, l, m = 200, 260, 400
	w := newWorkload(seed)
	logs := w.logs(m)
	ref := newStack(t, memDev, seed)
	refRes := applyLogs(t, ref.fsm, logs, rand.New(rand.NewPCG(seed, 1)), 16)

	r := rand.New(rand.NewPCG(seed, 2))
	v := newStack(t, fileDev, seed)
	applyLogs(t, v.fsm, logs[:k], r, 16)
	snap, err := v.cat.BeginSnapshot()
	if err != nil {
		t.Fatalf("BeginSnapshot: %v", err)
	}
	var old memSink
	_, err = snap.WriteTo(&old)
	snap.Release()
	if err != nil {
		t.Fatalf("snapshot WriteTo: %v", err)
	}
	applyLogs(t, v.fsm, logs[k:l], r, 16)
	v.shutdown()

	db := openCatalog(t, filepath.Join(v.dir, "catalog.db"), false)
	if err := db.Restore(&old); err != nil {
		t.Fatalf("restore old catalog: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatalf("close catalog: %v", err)
	}
	v.open()
	if v.catAppliedAtOpen != k || v.allocAppliedAtOpen <= k {
		t.Fatalf("reopened with catalog at %d, allocator at %d; want catalog %d and allocator ahead", v.catAppliedAtOpen, v.allocAppliedAtOpen, k)
	}
	if v.fsm.Applied() != k || v.alloc.AppliedIndex() != k {
		t.Fatalf("after Open: fsm applied %d, allocator %d; want %d", v.fsm.Applied(), v.alloc.AppliedIndex(), k)
	}
	v.check()
	res := applyLogs(t, v.fsm, logs, r, 16)
	sameResults(t, "entries re-applied after the rebuild", logs[k:], res[k:], refRes[k:])
	sameState(t, "after replay", v.state(), ref.state())
	v.check()
}

// TestSnapshotRestore: replica A snapshots; Persist streams into a sink while
// A keeps applying (hashicorp/raft runs them concurrently); replica B, which
// had diverged, restores it and holds exactly A's state at the snapshot,
// with a consistent allocator; then both apply the same further entries with
// the same responses and end in the same state.
func TestSnapshotRestore(t *testing.T) {
	seed := testSeed(t)
	const n, m, p = 250, 350, 450
	w := newWorkload(seed)
	logs := w.logs(p)
	r := rand.New(rand.NewPCG(seed, 1))
	a := newStack(t, memDev, seed)
	applyLogs(t, a.fsm, logs[:n], r, 16)
	atSnapshot := a.state()

	snap, err := a.fsm.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	sink := &memSink{}
	persisted := make(chan error, 1)
	go func() { persisted <- snap.Persist(sink) }()
	resA := applyLogs(t, a.fsm, logs[n:m], r, 16)
	if err := <-persisted; err != nil {
		t.Fatalf("Persist: %v", err)
	}
	snap.Release()
	if !sink.closed || sink.canceled {
		t.Fatalf("sink closed=%v canceled=%v; want closed", sink.closed, sink.canceled)
	}

	b := newStack(t, fileDev, seed+1)
	applyLogs(t, b.fsm, newWorkload(seed+1).logs(150), r, 16) // diverged state to replace
	if err := b.fsm.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	sameState(t, "restored", b.state(), atSnapshot)
	b.check()

	resB := applyLogs(t, b.fsm, logs[n:m], r, 16)
	sameResults(t, "after restore", logs[n:m], resB, resA)
	resA = applyLogs(t, a.fsm, logs[m:], r, 16)
	resB = applyLogs(t, b.fsm, logs[m:], r, 16)
	sameResults(t, "further entries", logs[m:], resB, resA)
	sameState(t, "end", b.state(), a.state())
	a.check()
	b.check()
}

// TestSnapshotRestoreFileStore runs a snapshot through hashicorp/raft's own
// FileSnapshotStore (as a Node does) into a fresh replica.
func TestSnapshotRestoreFileStore(t *testing.T) {
	seed := testSeed(t)
	const n, m = 300, 400
	w := newWorkload(seed)
	logs := w.logs(m)
	r := rand.New(rand.NewPCG(seed, 1))
	a := newStack(t, fileDev, seed)
	applyLogs(t, a.fsm, logs[:n], r, 16)

	store, err := raft.NewFileSnapshotStore(t.TempDir(), 1, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	snap, err := a.fsm.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	sink, err := store.Create(raft.SnapshotVersionMax, n, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatalf("create snapshot: %v", err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	snap.Release()
	metas, err := store.List()
	if err != nil || len(metas) != 1 {
		t.Fatalf("List = %v, %v; want one snapshot", metas, err)
	}
	_, rc, err := store.Open(metas[0].ID)
	if err != nil {
		t.Fatalf("open snapshot: %v", err)
	}
	b := newStack(t, memDev, seed)
	if err := b.fsm.Restore(rc); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	sameState(t, "restored", b.state(), a.state())
	b.check()
	resA := applyLogs(t, a.fsm, logs[n:], r, 16)
	resB := applyLogs(t, b.fsm, logs[n:], r, 16)
	sameResults(t, "after restore", logs[n:], resB, resA)
	sameState(t, "end", b.state(), a.state())
	b.check()
}

// TestMalformedCommandStops: an entry that does not decode is a bug, not a
// refusal: the FSM stops loudly, the whole batch (including the valid
// entries around it) leaves the catalog untouched, later batches are
// refused, and a restart finds consistent state at the previous index.
func TestMalformedCommandStops(t *testing.T) {
	seed := testSeed(t)
	garbage := map[string][]byte{
		"nil":          nil,
		"unknown kind": {commandFormatV1, 0x7f},
		"truncated":    (&Command{Kind: KindReserve, ReservationID: 1, Size: 4096}).Encode()[:3],
		"trailing":     append((&Command{Kind: KindAbort, ReservationID: 1}).Encode(), 0),
	}
	for name, data := range garbage {
		t.Run(name, func(t *testing.T) {
			const n = 120
			w := newWorkload(seed)
			logs := w.logs(n)
			s := newStack(t, memDev, seed)
			applyLogs(t, s.fsm, logs, rand.New(rand.NewPCG(seed, 1)), 16)
			before := s.state()
			beforeCatalog := catalogOnly(t, s)

			batch := []*raft.Log{
				{Index: n + 1, Term: 9, Type: raft.LogCommand, Data: (&Command{Kind: KindReserve, ReservationID: 1 << 40, Size: 300 << 10}).Encode()},
				{Index: n + 2, Term: 9, Type: raft.LogCommand, Data: (&Command{Kind: KindDelete, Key: "bucket/key-01"}).Encode()},
				{Index: n + 3, Term: 9, Type: raft.LogCommand, Data: data},
				{Index: n + 4, Term: 9, Type: raft.LogCommand, Data: (&Command{Kind: KindNoop}).Encode()},
			}
			for i, x := range s.fsm.ApplyBatch(batch) {
				if r, _ := x.(Result); !errors.Is(r.Err, ErrStopped) {
					t.Fatalf("entry %d: %s; want ErrStopped", batch[i].Index, fmtResult(x))
				}
			}
			select {
			case <-s.fsm.Stopped():
			default:
				t.Fatal("Stopped() not closed after a malformed entry")
			}
			if err := s.fsm.Err(); !errors.Is(err, ErrStopped) || !errors.Is(err, ErrBadCommand) {
				t.Fatalf("Err() = %v; want ErrStopped wrapping ErrBadCommand", err)
			}
			if s.fsm.Applied() != n {
				t.Fatalf("applied %d; want %d", s.fsm.Applied(), n)
			}
			sameState(t, "catalog after the malformed batch", catalogOnly(t, s), beforeCatalog)

			// Stopped for good: later entries are refused unapplied.
			later := []*raft.Log{{Index: n + 5, Type: raft.LogCommand, Data: (&Command{Kind: KindNoop}).Encode()}}
			if r, _ := s.fsm.ApplyBatch(later)[0].(Result); !errors.Is(r.Err, ErrStopped) {
				t.Fatalf("apply after stop: %v; want ErrStopped", r.Err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := s.fsm.WaitApplied(ctx, n+5); !errors.Is(err, ErrStopped) {
				t.Fatalf("WaitApplied after stop = %v; want ErrStopped", err)
			}
			if _, err := s.fsm.Snapshot(); !errors.Is(err, ErrStopped) {
				t.Fatalf("Snapshot after stop = %v; want ErrStopped", err)
			}
			sameState(t, "catalog after refused entries", catalogOnly(t, s), beforeCatalog)

			// What is on disk is the state before the batch.
			s.shutdown()
			s.open()
			sameState(t, "after restart", s.state(), before)
			s.check()
		})
	}
}

// catalogOnly dumps the catalog with its applied index (not the allocator,
// whose memory a stopped FSM no longer keeps in step).
func catalogOnly(t testing.TB, s *stack) string {
	t.Helper()
	var out string
	if err := s.cat.View(func(tx *catalog.Tx) error {
		idx, err := tx.AppliedIndex()
		if err != nil {
			return err
		}
		out = fmt.Sprintf("applied %d\n", idx)
		if err := tx.ForEachBlob(func(b catalog.Blob) error {
			out += fmt.Sprintf("blob %q v%d %v %v\n", b.Key, b.Version, b.Extents, b.Checksums)
			return nil
		}); err != nil {
			return err
		}
		return tx.ForEachReservation(func(r catalog.Reservation) error {
			out += fmt.Sprintf("resv %d %d %v\n", r.ID, r.Deadline, r.Extents)
			return nil
		})
	}); err != nil {
		t.Fatalf("dump catalog: %v", err)
	}
	return out
}

// applyCmds applies commands as consecutive entries after the FSM's applied
// index, one batch, and returns their results.
func applyCmds(t *testing.T, f *FSM, cmds ...Command) []Result {
	t.Helper()
	logs := make([]*raft.Log, len(cmds))
	for i := range cmds {
		logs[i] = &raft.Log{Index: f.Applied() + 1 + uint64(i), Term: 1, Type: raft.LogCommand, Data: cmds[i].Encode()}
	}
	out := make([]Result, len(cmds))
	for i, x := range f.ApplyBatch(logs) {
		out[i], _ = x.(Result)
	}
	return out
}

// TestRefusalsDoNotStop: commands that decode but make no sense are
// deterministic refusals returned in the Result; they must neither stop the
// state machine (which would stop every replica at once) nor corrupt it.
func TestRefusalsDoNotStop(t *testing.T) {
	const page = 4096
	init := Command{Kind: KindInit, Geometry: testGeometry.String()}
	reserve := func(id uint64) Command {
		return Command{Kind: KindReserve, ReservationID: id, Size: page, Deadline: 100}
	}
	commit := func(size int64, ids ...uint64) Command {
		c := Command{Kind: KindCommit, Key: "k", ReservationIDs: ids, Size: size, ChunkSize: page}
		c.Checksums = make([]uint32, (size+page-1)/page)
		return c
	}
	cases := []struct {
		name    string
		cmds    []Command
		refused error // the last command's Result.Err
	}{
		{name: "commit unknown reservation", cmds: []Command{init, reserve(1), commit(2*page, 1, 2)}, refused: ErrNoReservation},
		{name: "commit wrong size", cmds: []Command{init, reserve(1), commit(3*page, 1)}, refused: ErrInvalid},
		{name: "commit empty key", cmds: []Command{init, reserve(1), {Kind: KindCommit, ReservationIDs: []uint64{1}, Size: page, ChunkSize: page, Checksums: []uint32{0}}}, refused: ErrInvalid},
		{name: "reserve id 0", cmds: []Command{init, {Kind: KindReserve, Size: page}}, refused: ErrInvalid},
		{name: "abort unknown (a no-op)", cmds: []Command{init, {Kind: KindAbort, ReservationID: 77}}},
		{name: "reserve too large", cmds: []Command{init, {Kind: KindReserve, ReservationID: 1, Size: 1 << 40}}, refused: ErrNoSpace},
		{
			name: "delete empty key",
			cmds: []Command{init, {Kind: KindDelete, Key: ""}}, refused: ErrInvalid,
		},
		{
			name: "commit same reservation twice, size matching",
			cmds: []Command{init, reserve(1), commit(2*page, 1, 1)}, refused: ErrInvalid,
		},
		{
			name: "commit same reservation twice, wrong size",
			cmds: []Command{init, reserve(1), commit(page, 1, 1)}, refused: ErrInvalid,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t, memDev, 1)
			res := applyCmds(t, s.fsm, tc.cmds...)
			if err := s.fsm.Err(); err != nil {
				t.Fatalf("the FSM stopped: %v (results %v)", err, res)
			}
			if last := res[len(res)-1]; !errors.Is(last.Err, tc.refused) || (tc.refused == nil && last.Err != nil) {
				t.Fatalf("last command: %s; want error %v", fmtResult(last), tc.refused)
			}
			s.check()
		})
	}
}

// TestSnapshotMakesStateDurable: ApplyBatch commits lazily, but a snapshot
// first makes the state durable up to its index (DESIGN.md: with
// NoSnapshotRestoreOnStart, Raft resumes after the snapshot's index, so
// anything the FSM lost below it would be lost for good). A power cut right
// after the snapshot finds the allocator at the snapshot's index.
func TestSnapshotMakesStateDurable(t *testing.T) {
	seed := testSeed(t)
	const n = 200
	logs := newWorkload(seed).logs(n)
	s := newStack(t, memDev, seed)
	applyLogs(t, s.fsm, logs, rand.New(rand.NewPCG(seed, 1)), 16)
	snap, err := s.fsm.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	snap.Release()
	want := s.state()
	s.crash(volume.CrashDropAll, nil)
	s.open()
	if s.allocAppliedAtOpen != n || s.catAppliedAtOpen != n {
		t.Fatalf("after a crash following the snapshot: allocator at %d, catalog at %d; want both %d", s.allocAppliedAtOpen, s.catAppliedAtOpen, n)
	}
	sameState(t, "after the crash", s.state(), want)
	s.check()
}

// TestJournalFailureStopsApply: DESIGN.md's FSM rule is that an I/O error
// inside Apply is fatal, never skipped. Once the allocator's journal has
// failed (a lazily written transaction hit a write error), the next batch
// must stop the FSM rather than keep applying into memory that can no
// longer reach the disk.
func TestJournalFailureStopsApply(t *testing.T) {
	seed := testSeed(t)
	logs := newWorkload(seed).logs(200)
	s := newStack(t, memDev, seed)
	r := rand.New(rand.NewPCG(seed, 1))
	applyLogs(t, s.fsm, logs[:100], r, 16)
	snap, err := s.fsm.Snapshot() // everything so far durable
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	snap.Release()
	s.mem.FailWritesAfter(0)
	ops := s.mem.Ops()
	s.fsm.ApplyBatch(logs[100:110])
	// The journal writes lazy transactions within a short delay; wait for
	// its (failed) attempt.
	waitFor(t, "the journal's write attempt", 5*time.Second, func() bool { return s.mem.Ops() > ops })
	s.fsm.ApplyBatch(logs[110:120])
	select {
	case <-s.fsm.Stopped():
	default:
		t.Fatalf("the FSM applied entries up to %d after its allocator journal failed", s.fsm.Applied())
	}
}

// TestInitGeometryMismatchStops: a node whose volume geometry differs from
// the group's cannot place blobs at the group's offsets; applying the
// group's Init stops it (by design, not a refusal).
func TestInitGeometryMismatchStops(t *testing.T) {
	s := newStack(t, memDev, 1)
	other := testGeometry
	other.LpageShift = 20
	res := applyCmds(t, s.fsm, Command{Kind: KindInit, Geometry: other.String()})
	if !errors.Is(res[0].Err, ErrStopped) || !errors.Is(s.fsm.Err(), ErrGeometryMismatch) {
		t.Fatalf("Init with geometry %s on a %s node: %s, Err() = %v; want a stop with ErrGeometryMismatch",
			other, testGeometry, fmtResult(res[0]), s.fsm.Err())
	}
	if got := catalogApplied(t, s.cat); got != 0 {
		t.Fatalf("catalog applied %d after the refused Init; want 0", got)
	}
}

// TestWaitApplied: WaitApplied returns once the index is applied (woken by
// ApplyBatch on another goroutine), or when its context ends.
func TestWaitApplied(t *testing.T) {
	s := newStack(t, memDev, 1)
	logs := newWorkload(1).logs(20)
	done := make(chan error, 1)
	go func() { done <- s.fsm.WaitApplied(context.Background(), 20) }()
	applyLogs(t, s.fsm, logs[:10], rand.New(rand.NewPCG(1, 1)), 4)
	select {
	case err := <-done:
		t.Fatalf("WaitApplied(20) returned %v at index 10", err)
	default:
	}
	applyLogs(t, s.fsm, logs[10:], rand.New(rand.NewPCG(1, 1)), 4)
	if err := <-done; err != nil {
		t.Fatalf("WaitApplied(20): %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- s.fsm.WaitApplied(ctx, 21) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitApplied with a canceled context = %v", err)
	}
}
