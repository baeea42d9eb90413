package raftfsm

import (
	"fmt"
	"io"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/volume"
)

// sameResult fails unless got is want field for field, with the very same
// sentinel error (errors.Is and == both hold for a caller).
func sameResult(t testing.TB, what string, got, want Result) {
	t.Helper()
	if got.Err != want.Err || !reflect.DeepEqual(got, want) {
		t.Fatalf("%s:\n got %s\nwant %s", what, fmtResult(got), fmtResult(want))
	}
}

func initCmd() Command { return Command{Kind: KindInit, Geometry: testGeometry.String()} }

const farDeadline = 1 << 62

func reserveCmd(id uint64, size int64) Command {
	return Command{Kind: KindReserve, ReservationID: id, Size: size, Deadline: farDeadline}
}

func commitCmd(key string, size int64, ids ...uint64) Command {
	return Command{Kind: KindCommit, Key: key, Size: size, ReservationIDs: ids, Identity: 5,
		ChunkSize: testChunk, Checksums: make([]uint32, (size+testChunk-1)/testChunk)}
}

func withID(c Command, id uint64) Command {
	c.RequestID = id
	return c
}

func requestCount(t testing.TB, s *stack) (n int, oldest uint64) {
	t.Helper()
	err := s.cat.View(func(tx *catalog.Tx) error {
		return tx.ForEachRequest(func(r catalog.Request) error {
			if n == 0 || r.Index < oldest {
				oldest = r.Index
			}
			n++
			return nil
		})
	})
	if err != nil {
		t.Fatalf("requests: %v", err)
	}
	return n, oldest
}

func recorded(t testing.TB, s *stack, id uint64) (catalog.Request, bool) {
	t.Helper()
	var r catalog.Request
	var ok bool
	if err := s.cat.View(func(tx *catalog.Tx) error {
		var err error
		r, ok, err = tx.GetRequest(id)
		return err
	}); err != nil {
		t.Fatalf("GetRequest(%d): %v", id, err)
	}
	return r, ok
}

// dedupCase is a command applied under a request id, other commands
// applied after it, and then the same entry again (the retry).
type dedupCase struct {
	name    string
	setup   []Command // before, without request ids
	cmd     Command   // the request (its id is set by the test)
	between []Command // between the first application and the retry
}

func dedupCases() []dedupCase {
	big := int64(12 << 20) // of the 16 MiB test volume
	return []dedupCase{
		{name: "reserve", cmd: reserveCmd(10, 100_000)},
		// The reservation id is free again once committed: executing the
		// retry would reserve new pages under it.
		{name: "reserve, then committed", cmd: reserveCmd(10, 100_000),
			between: []Command{commitCmd("k", 100_000, 10)}},
		{name: "reserve batch", cmd: Command{Kind: KindReserveBatch, ReservationIDs: []uint64{20, 21, 22}, Size: 4096, Deadline: farDeadline}},
		// Executing the retry would find no reservation (ErrNoReservation).
		{name: "commit", setup: []Command{reserveCmd(30, 5000)}, cmd: commitCmd("a", 5000, 30)},
		// Executing the retry of a conditional PUT would be a 412.
		{name: "conditional inline put", cmd: withIfNoneMatch(inlineCmd("b", []byte("bee")))},
		// Executing the retry would make another version replacing this one.
		{name: "replacing inline put", setup: []Command{inlineCmd("e", []byte("one"))}, cmd: inlineCmd("e", []byte("two"))},
		// Executing the retry would be ErrNotFound.
		{name: "delete", setup: []Command{inlineCmd("c", []byte("sea"))}, cmd: Command{Kind: KindDelete, Key: "c"}},
		// Executing the retry would abort the new reservation of the id.
		{name: "abort, then id reserved again", setup: []Command{reserveCmd(50, 4096)},
			cmd: Command{Kind: KindAbort, ReservationID: 50}, between: []Command{reserveCmd(50, 8192)}},
		// Executing the retry would expire a reservation made since.
		{name: "expire", cmd: Command{Kind: KindExpire, Now: 100},
			between: []Command{{Kind: KindReserve, ReservationID: 60, Size: 4096, Deadline: 50}}},
		// Executing the retry would register the removed member again.
		{name: "register, then deregistered", cmd: Command{Kind: KindRegister, NodeID: "n1", APIAddr: "a:1", RaftAddr: "a:2"},
			between: []Command{{Kind: KindDeregister, NodeID: "n1"}}},
		// A recorded refusal stays one: executing the retry would succeed.
		{name: "refused put, then key deleted", setup: []Command{inlineCmd("f", []byte("eff"))},
			cmd: withIfNoneMatch(inlineCmd("f", []byte("new"))), between: []Command{{Kind: KindDelete, Key: "f"}}},
		{name: "out of space, then space freed", setup: []Command{reserveCmd(70, big)},
			cmd: reserveCmd(71, 8<<20), between: []Command{{Kind: KindAbort, ReservationID: 70}}},
		{name: "noop", cmd: Command{Kind: KindNoop}},
	}
}

func withIfNoneMatch(c Command) Command {
	c.IfNoneMatch = true
	return c
}

// TestDedupAppliesOnce: an entry whose request id is recorded is not
// executed again and returns the recorded Result, whether the retry is in
// the first application's batch or a later one: the retry returns exactly
// the first Result, and the state is that of a log where the retry is a
// Noop.
func TestDedupAppliesOnce(t *testing.T) {
	const id = 0xfeedface
	for _, tc := range dedupCases() {
		for _, oneBatch := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/one-batch=%v", tc.name, oneBatch), func(t *testing.T) {
				cmds := append([]Command{initCmd()}, tc.setup...)
				first := len(cmds)
				cmds = append(cmds, withID(tc.cmd, id))
				cmds = append(cmds, tc.between...)
				retry := len(cmds)
				cmds = append(cmds, withID(tc.cmd, id))
				logs := entries(1, cmds...)
				refCmds := append(append([]Command{}, cmds[:retry]...), Command{Kind: KindNoop})

				apply := func(s *stack, logs []*raft.Log) []any {
					if oneBatch {
						out := s.fsm.ApplyBatch(logs[:first])
						return append(out, s.fsm.ApplyBatch(logs[first:])...)
					}
					var out []any
					for _, l := range logs {
						out = append(out, s.fsm.ApplyBatch([]*raft.Log{l})...)
					}
					return out
				}
				s := newStack(t, memDev, 1)
				res := apply(s, logs)
				if err := s.fsm.Err(); err != nil {
					t.Fatalf("state machine stopped: %v", err)
				}
				ref := newStack(t, memDev, 1)
				refRes := apply(ref, entries(1, refCmds...))
				if err := ref.fsm.Err(); err != nil {
					t.Fatalf("reference stopped: %v", err)
				}
				want, _ := res[first].(Result)
				sameResult(t, "retry", res[retry].(Result), want)
				sameResults(t, "up to the retry", logs[:retry], res[:retry], refRes[:retry])
				sameState(t, "state after the retry (want: as if it were a Noop)", s.state(), ref.state())
				rec, ok := recorded(t, s, id)
				if !ok || rec.Index != uint64(first+1) {
					t.Fatalf("request record %+v, %v; want one at index %d", rec, ok, first+1)
				}
				s.check()
			})
		}
	}
}

// TestDedupDistinctIDs: the same command under two different request ids,
// or twice without one, is executed twice.
func TestDedupDistinctIDs(t *testing.T) {
	put := inlineCmd("g", []byte("gee"))
	tests := []struct {
		name     string
		ids      [2]uint64
		cmd      Command
		want0    error // the first application's refusal, if any
		wantSame bool  // the second result equals the first
		want1    error
	}{
		{"put, two ids", [2]uint64{1, 2}, put, nil, false, nil},
		{"put, no id", [2]uint64{0, 0}, put, nil, false, nil},
		{"put, id then none", [2]uint64{7, 0}, put, nil, false, nil},
		{"put, none then id", [2]uint64{0, 7}, put, nil, false, nil},
		{"reserve, two ids", [2]uint64{1, 2}, reserveCmd(5, 4096), nil, false, ErrDuplicate},
		{"reserve, no id", [2]uint64{0, 0}, reserveCmd(5, 4096), nil, false, ErrDuplicate},
		{"same id (control)", [2]uint64{3, 3}, put, nil, true, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t, memDev, 1)
			applyOne(t, s.fsm, 1, initCmd())
			r0 := applyOne(t, s.fsm, 2, withID(tc.cmd, tc.ids[0]))
			r1 := applyOne(t, s.fsm, 3, withID(tc.cmd, tc.ids[1]))
			if r0.Err != tc.want0 || r1.Err != tc.want1 {
				t.Fatalf("results %s / %s; want errors %v / %v", fmtResult(r0), fmtResult(r1), tc.want0, tc.want1)
			}
			if same := reflect.DeepEqual(r0, r1); same != tc.wantSame {
				t.Fatalf("results %s / %s; want equal: %v", fmtResult(r0), fmtResult(r1), tc.wantSame)
			}
			if tc.cmd.Kind == KindCommitInline && !tc.wantSame && (r1.Version != 3 || r1.Old == nil || r1.Old.Version != 2) {
				t.Fatalf("second put: %s; want version 3 replacing version 2", fmtResult(r1))
			}
			n, _ := requestCount(t, s)
			want := 0
			for _, id := range tc.ids {
				if id != 0 && (want == 0 || id != tc.ids[0]) {
					want++
				}
			}
			if n != want {
				t.Fatalf("%d request records; want %d", n, want)
			}
			s.check()
		})
	}
}

// TestDedupRequestIDReused: a different command under a recorded id is
// refused with ErrRequestIDReused and not executed; the original's retry
// still gets its recorded Result.
func TestDedupRequestIDReused(t *testing.T) {
	s := newStack(t, memDev, 1)
	ref := newStack(t, memDev, 1)
	first := withID(reserveCmd(1, 4096), 9)
	other := withID(reserveCmd(2, 4096), 9)
	var want Result
	for _, st := range []*stack{s, ref} {
		applyOne(t, st.fsm, 1, initCmd())
		want = applyOne(t, st.fsm, 2, first)
	}
	if r := applyOne(t, s.fsm, 3, other); r.Err != ErrRequestIDReused {
		t.Fatalf("another command under a recorded id: %s; want ErrRequestIDReused", fmtResult(r))
	}
	applyOne(t, ref.fsm, 3, Command{Kind: KindNoop})
	sameState(t, "after the refused reuse (want: as if a Noop)", s.state(), ref.state())
	sameResult(t, "retry of the original", applyOne(t, s.fsm, 4, first), want)
	s.check()
}

// TestDedupWindow: a request is recorded for exactly window entries: a
// retry at index i+window-1 is deduplicated, the record is gone once an
// entry at i+window applies, and a retry after that executes again. With a
// small window the log is contiguous; with the real DedupWindow the
// entries jump ahead (the state machine does not need contiguous indexes),
// so the real constant's arithmetic is what is tested.
func TestDedupWindow(t *testing.T) {
	tests := []struct {
		name       string
		window     uint64
		contiguous bool
	}{
		{"small window", 8, true},
		{"small window, jumps", 8, false},
		{"DedupWindow", DedupWindow, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t, memDev, 1)
			s.fsm.window = tc.window
			w := tc.window
			next := uint64(1)
			// at applies c at index i, filling the gap with Noops if the
			// log is contiguous.
			at := func(i uint64, c Command) Result {
				t.Helper()
				if tc.contiguous {
					for ; next < i; next++ {
						applyOne(t, s.fsm, next, Command{Kind: KindNoop})
					}
				}
				next = i + 1
				return applyOne(t, s.fsm, i, c)
			}
			at(1, initCmd())
			a := withID(reserveCmd(1, 4096), 0xa)
			b := withID(reserveCmd(2, 4096), 0xb)
			want := at(2, a)
			if want.Err != nil {
				t.Fatalf("reserve: %s", fmtResult(want))
			}
			at(3, b)
			sameResult(t, "retry at the window's last entry", at(2+w-1, a), want)
			if _, ok := recorded(t, s, 0xa); !ok {
				t.Fatalf("record gone before index %d", 2+w)
			}
			at(2+w, Command{Kind: KindNoop})
			if _, ok := recorded(t, s, 0xa); ok {
				t.Fatalf("record of index 2 still there at index %d (window %d)", 2+w, w)
			}
			if _, ok := recorded(t, s, 0xb); !ok {
				t.Fatalf("record of index 3 gone at index %d (window %d)", 2+w, w)
			}
			// Executed again: reservation 1 is still live.
			if r := at(2+w+1, a); r.Err != ErrDuplicate {
				t.Fatalf("retry past the window: %s; want ErrDuplicate (executed again)", fmtResult(r))
			}
			if _, ok := recorded(t, s, 0xb); ok {
				t.Fatalf("record of index 3 still there at index %d", 3+w)
			}
			if r, ok := recorded(t, s, 0xa); !ok || r.Index != 3+w {
				t.Fatalf("re-executed request recorded %+v, %v; want at index %d", r, ok, 3+w)
			}
			s.check()
		})
	}
}

// TestDedupTableBounded: under a long workload where every command carries
// a request id, the request table never holds more than window records and
// none older than the window, and it does fill up to about that (the
// records are pruned, not never made).
func TestDedupTableBounded(t *testing.T) {
	seed := testSeed(t)
	const window = 32
	s := newStack(t, memDev, seed)
	s.fsm.window = window
	w := newWorkload(seed)
	w.allIDs = true
	r := rand.New(rand.NewPCG(seed, 1))
	peak, total := 0, 0
	for range 40 {
		logs := w.logs(50)
		applyLogs(t, s.fsm, logs, r, 16)
		for _, l := range logs {
			if c, err := DecodeCommand(l.Data); err == nil && c.RequestID != 0 {
				total++
			}
		}
		n, oldest := requestCount(t, s)
		if n > window {
			t.Fatalf("%d request records at index %d; want at most %d", n, s.fsm.Applied(), window)
		}
		if n > 0 && oldest+window <= s.fsm.Applied()-3 {
			// The last entries of a batch may be configuration changes,
			// which do not prune; three in a row are unlikely but allowed.
			t.Fatalf("oldest record at index %d, applied %d, window %d", oldest, s.fsm.Applied(), window)
		}
		peak = max(peak, n)
	}
	t.Logf("%d entries with request ids, at most %d records", total, peak)
	if total < 4*window || peak < window*3/4 {
		t.Fatalf("%d requests, peak table size %d: the test did not exercise pruning", total, peak)
	}
	s.check()
}

// TestDedupDeterministicPruning: with a small window, where many of the
// workload's retries fall outside it, two replicas fed the same log in
// different batchings give the same responses and hold the same catalog
// bytes, request table included.
func TestDedupDeterministicPruning(t *testing.T) {
	seed := testSeed(t)
	const window = 16
	a := newStack(t, memDev, seed)
	b := newStack(t, fileDev, seed)
	a.fsm.window, b.fsm.window = window, window
	ra, rb := rand.New(rand.NewPCG(seed, 1)), rand.New(rand.NewPCG(seed, 2))
	w := newWorkload(seed)
	for round := range 6 {
		logs := w.logs(100)
		resA := applyLogs(t, a.fsm, logs, ra, 24)
		resB := applyLogs(t, b.fsm, logs, rb, 3)
		sameResults(t, fmt.Sprintf("round %d", round), logs, resB, resA)
		sameState(t, fmt.Sprintf("round %d", round), b.state(), a.state())
		sameState(t, fmt.Sprintf("round %d catalog bytes", round), catalogBytes(t, b.cat), catalogBytes(t, a.cat))
	}
	a.check()
	b.check()
}

// TestDedupAfterSnapshotRestore: a node restored from a snapshot answers a
// retry with the result recorded before the snapshot, as the node that
// took it does; and one restored from an older snapshot, replaying the
// entries after it, records the request again and deduplicates too.
func TestDedupAfterSnapshotRestore(t *testing.T) {
	const id = 0x51
	cmds := []Command{initCmd(), reserveCmd(1, 5000), withID(commitCmd("k", 5000, 1), id), reserveCmd(2, 4096)}
	retry := withID(commitCmd("k", 5000, 1), id)
	tests := []struct {
		name   string
		snapAt int // entries applied before the snapshot
	}{
		{"snapshot after the request", len(cmds)},
		{"snapshot before the request, replay", 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := newStack(t, memDev, 1)
			logs := entries(1, cmds...)
			res := applyLogs(t, a.fsm, logs[:tc.snapAt], rand.New(rand.NewPCG(1, 1)), 3)
			snap, err := a.fsm.Snapshot()
			if err != nil {
				t.Fatalf("Snapshot: %v", err)
			}
			sink := &memSink{}
			if err := snap.Persist(sink); err != nil {
				t.Fatalf("Persist: %v", err)
			}
			snap.Release()
			res = append(res, applyLogs(t, a.fsm, logs[tc.snapAt:], rand.New(rand.NewPCG(1, 2)), 3)...)
			want := res[2].(Result)
			if want.Err != nil || want.Version != 3 {
				t.Fatalf("commit: %s", fmtResult(want))
			}

			b := newStack(t, fileDev, 2)
			applyLogs(t, b.fsm, newWorkload(2).logs(40), rand.New(rand.NewPCG(2, 1)), 8) // state to replace
			if err := b.fsm.Restore(io.NopCloser(&sink.Buffer)); err != nil {
				t.Fatalf("Restore: %v", err)
			}
			applyLogs(t, b.fsm, logs[tc.snapAt:], rand.New(rand.NewPCG(1, 3)), 3)
			sameState(t, "restored and caught up", b.state(), a.state())
			next := uint64(len(cmds) + 1)
			for _, st := range []*stack{a, b} {
				sameResult(t, "retry", applyOne(t, st.fsm, next, retry), want)
			}
			sameState(t, "after the retries", b.state(), a.state())
			b.check()
		})
	}
}

// TestDedupAfterRestart: after a clean restart, a power cut (the catalog
// keeps its commits), or an unclean start that discards the catalog and
// replays the whole log, Raft replays the log and a retry still returns the
// recorded result.
func TestDedupAfterRestart(t *testing.T) {
	const id = 0x77
	cmds := []Command{initCmd(), reserveCmd(1, 5000), withID(commitCmd("k", 5000, 1), id), inlineCmd("x", []byte("ex"))}
	retry := withID(commitCmd("k", 5000, 1), id)
	for _, restart := range []string{"clean", "crash", "unclean"} {
		t.Run(restart, func(t *testing.T) {
			s := newStack(t, memDev, 1)
			logs := entries(1, cmds...)
			res := applyLogs(t, s.fsm, logs, rand.New(rand.NewPCG(1, 1)), 2)
			want := res[2].(Result)
			before := s.content()
			switch restart {
			case "clean":
				s.shutdown()
				s.open()
			case "crash":
				s.crash(volume.CrashDropAll, nil)
				s.open()
			case "unclean":
				restartUnclean(t, s)
			}
			applyLogs(t, s.fsm, logs, rand.New(rand.NewPCG(1, 2)), 3) // Raft's replay
			sameState(t, "after restart and replay", s.content(), before)
			sameResult(t, "retry", applyOne(t, s.fsm, uint64(len(cmds)+1), retry), want)
			s.check()
		})
	}
}

// TestResultCodes: every refusal Apply returns has a stable code that maps
// back to the same sentinel; unknown codes are refused.
func TestResultCodes(t *testing.T) {
	refusals := []error{nil, ErrNoSpace, ErrPreconditionFailed, ErrNotFound, ErrNoReservation,
		ErrDuplicate, ErrInvalid, ErrGeometryMismatch}
	seen := map[uint64]bool{}
	for _, e := range refusals {
		code, ok := errCode(e)
		if !ok {
			t.Fatalf("no code for %v", e)
		}
		if seen[code] {
			t.Fatalf("code %d used twice", code)
		}
		seen[code] = true
		back, ok := codeErr(code)
		if !ok || back != e {
			t.Fatalf("code %d decodes to %v, %v; want %v", code, back, ok, e)
		}
	}
	for _, e := range []error{ErrRequestIDReused, ErrStopped, ErrClosed, fmt.Errorf("wrapped: %w", ErrNoSpace)} {
		if _, ok := errCode(e); ok {
			t.Errorf("%v has a code; only Apply's bare refusals may", e)
		}
	}
	if _, ok := codeErr(uint64(len(refusals))); ok {
		t.Errorf("code %d decodes", len(refusals))
	}
	if _, err := recordedResult(catalog.Request{ID: 1, Index: 1, Code: 99}); err == nil {
		t.Errorf("a record with an unknown code rebuilt a Result")
	}
	// Frozen values: they are in replicated catalogs.
	for code, e := range map[uint64]error{0: nil, 1: ErrNoSpace, 2: ErrPreconditionFailed, 3: ErrNotFound,
		4: ErrNoReservation, 5: ErrDuplicate, 6: ErrInvalid, 7: ErrGeometryMismatch} {
		if got, _ := errCode(e); got != code {
			t.Errorf("code of %v is %d; frozen as %d", e, got, code)
		}
	}
}

// TestBatchLimitsAgree: the largest ReserveBatch result fits the catalog's
// request record.
func TestBatchLimitsAgree(t *testing.T) {
	if maxReservations > catalog.MaxRequestBatch {
		t.Fatalf("a ReserveBatch may hold %d ids, a request record %d batch entries", maxReservations, catalog.MaxRequestBatch)
	}
}
