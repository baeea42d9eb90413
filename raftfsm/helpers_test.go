package raftfsm

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	mrand "math/rand"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	bbolt "go.etcd.io/bbolt"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/space"
	"github.com/blobnode/blobnode/volume"
)

var seedFlag = flag.Uint64("seed", 0, "seed for the randomised raftfsm tests (0: from the clock)")

// testSeed returns the seed of a randomised test and logs how to replay it.
func testSeed(t testing.TB) uint64 {
	t.Helper()
	seed := *seedFlag
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	t.Logf("seed %d (replay: go test -run '^%s$' -seed %d ./raftfsm/)", seed, strings.Split(t.Name(), "/")[0], seed)
	return seed
}

// testGeometry: 4 KiB spages, 256 KiB lpages, a 16 MiB volume, so a random
// workload reaches every class and runs out of space now and then.
var testGeometry = volume.Geometry{SpageShift: 12, LpageShift: 18, VolumeSize: 16 << 20}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

type devKind int

const (
	memDev  devKind = iota // volume.MemDevice: can crash
	fileDev                // volume.FileDevice in t.TempDir()
	// traceDev is a volume.Recorder over a MemDevice: it records one run's
	// writes and syncs, whose crash states a sweep rebuilds (the stack
	// itself is never crashed).
	traceDev
)

func (k devKind) String() string {
	switch k {
	case memDev:
		return "mem"
	case fileDev:
		return "file"
	default:
		return "trace"
	}
}

// stack is one node's state machine over real parts: a volume on a device,
// the space allocator, a bbolt catalog file and the FSM over them. It can be
// shut down cleanly, crashed (MemDevice only) and reopened from its files.
type stack struct {
	t        testing.TB
	kind     devKind
	dir      string
	geometry volume.Geometry   // the volume's
	mem      *volume.MemDevice // kind == memDev or traceDev
	rec      *volume.Recorder  // kind == traceDev: records the writes and syncs of mem

	vol   *volume.Volume
	alloc *space.Allocator
	cat   *catalog.DB
	fsm   *FSM

	// What the last open found before raftfsm.Open reconciled them.
	allocAppliedAtOpen, catAppliedAtOpen uint64
	needsRebuildAtOpen                   bool
	// forceRebuild makes the next open rebuild the allocator, as the daemon
	// does after an unclean stop.
	forceRebuild bool
	// catalogNoSync opens the catalog as the daemon does (see
	// openCatalog), for benchmarks: nothing in a test can then crash it.
	catalogNoSync bool
}

func newStack(t testing.TB, kind devKind, seed uint64) *stack {
	t.Helper()
	return newStackOf(t, kind, seed, testGeometry)
}

// newStackOf is newStack on a volume of geometry g.
func newStackOf(t testing.TB, kind devKind, seed uint64, g volume.Geometry) *stack {
	t.Helper()
	s := &stack{t: t, kind: kind, dir: t.TempDir(), geometry: g}
	var dev volume.Device
	switch kind {
	case memDev, traceDev:
		s.mem = volume.NewMemDevice(g.VolumeSize, int64(seed))
		dev = s.mem
		if kind == traceDev {
			s.rec = volume.NewRecorder(s.mem)
			dev = s.rec
		}
	case fileDev:
		fd, err := volume.CreateFileDevice(filepath.Join(s.dir, "volume"), g.VolumeSize)
		if err != nil {
			t.Fatalf("create volume file: %v", err)
		}
		dev = fd
	}
	vol, err := space.FormatVolume(dev, volume.FormatOptions{Geometry: g})
	if err != nil {
		t.Fatalf("format volume: %v", err)
	}
	s.vol = vol
	s.open()
	t.Cleanup(s.shutdown)
	return s
}

// restartOn opens a stack over dev, a MemDevice a power cut left, the way
// the daemon starts after an unclean stop: the old catalog was set aside,
// so a fresh one is opened, and the allocator is rebuilt (from that empty
// catalog here, and again by Restore when Raft restores its snapshot). The
// caller restores the snapshot and replays the log after it.
func restartOn(t testing.TB, dev *volume.MemDevice, g volume.Geometry) *stack {
	t.Helper()
	s := &stack{t: t, kind: memDev, dir: t.TempDir(), geometry: g, mem: dev, forceRebuild: true}
	s.open()
	t.Cleanup(s.shutdown)
	return s
}

// open opens whatever is closed (volume, allocator, catalog) and the FSM.
func (s *stack) open() {
	t := s.t
	t.Helper()
	if s.vol == nil {
		var dev volume.Device = s.mem
		switch s.kind {
		case fileDev:
			fd, err := volume.OpenFileDevice(filepath.Join(s.dir, "volume"))
			if err != nil {
				t.Fatalf("open volume file: %v", err)
			}
			dev = fd
		case traceDev:
			s.mem.Reopen()
			dev = s.rec
		default:
			s.mem.Reopen()
		}
		vol, err := volume.Open(dev, &s.geometry)
		if err != nil {
			t.Fatalf("open volume: %v", err)
		}
		s.vol = vol
	}
	alloc, err := space.Open(s.vol)
	s.needsRebuildAtOpen = errors.Is(err, space.ErrNeedsRebuild)
	if err != nil && !s.needsRebuildAtOpen {
		t.Fatalf("open allocator: %v", err)
	}
	s.alloc = alloc
	if s.cat == nil {
		s.cat = openCatalog(t, filepath.Join(s.dir, "catalog.db"), s.catalogNoSync)
	}
	s.allocAppliedAtOpen = alloc.AppliedIndex()
	s.catAppliedAtOpen = catalogApplied(t, s.cat)
	f, err := Open(context.Background(), s.cat, alloc, s.vol.Superblock().Placement(), discardLogger(), s.needsRebuildAtOpen || s.forceRebuild)
	if err != nil {
		t.Fatalf("raftfsm.Open: %v", err)
	}
	f.AttachData(s.vol)
	s.fsm = f
}

// openCatalog opens a catalog that syncs every Update (the daemon runs it
// with NoSync; a test cannot make bbolt lose page-cache writes, so here the
// catalog is the durable side and the MemDevice allocator the one that
// loses writes).
func openCatalog(t testing.TB, path string, noSync bool) *catalog.DB {
	t.Helper()
	db, err := catalog.Open(path, catalog.Options{InitialMmapSize: 16 << 20, Timeout: 5 * time.Second, NoSync: noSync})
	if err != nil {
		t.Fatalf("open catalog: %v", err)
	}
	return db
}

func catalogApplied(t testing.TB, db *catalog.DB) uint64 {
	t.Helper()
	var idx uint64
	if err := db.View(func(tx *catalog.Tx) error {
		var err error
		idx, err = tx.AppliedIndex()
		return err
	}); err != nil {
		t.Fatalf("catalog applied index: %v", err)
	}
	return idx
}

// shutdown closes the catalog and the volume, as a process exiting cleanly
// does. Idempotent.
func (s *stack) shutdown() {
	if s.cat != nil {
		if err := s.cat.Close(); err != nil {
			s.t.Errorf("close catalog: %v", err)
		}
		s.cat = nil
	}
	if s.vol != nil {
		if err := s.vol.Close(); err != nil && !errors.Is(err, volume.ErrCrashed) && !errors.Is(err, volume.ErrInjected) {
			s.t.Errorf("close volume: %v", err)
		}
		s.vol = nil
	}
	s.alloc, s.fsm = nil, nil
}

// crash simulates a power cut: the process dies (its files are closed
// without further writes reaching the device) and the MemDevice keeps only
// what mode lets survive of its unsynced writes. The catalog is a real file
// whose every Update was synced, so it keeps everything committed.
func (s *stack) crash(mode volume.CrashMode, rng *mrand.Rand) {
	s.t.Helper()
	if s.kind != memDev {
		s.t.Fatalf("crash needs a MemDevice stack, not %v", s.kind)
	}
	// Closing the volume writes nothing more: make every device operation
	// fail first, as it would after the power cut.
	s.mem.SetCrashAt(s.mem.Ops() + 1)
	_ = s.vol.Close()
	s.vol = nil
	if err := s.cat.Close(); err != nil {
		s.t.Errorf("close catalog: %v", err)
	}
	s.cat = nil
	s.alloc, s.fsm = nil, nil
	s.mem.Crash(mode, rng)
}

// check proves the stack consistent: the catalog's own invariants, and the
// allocator against the extents the catalog says are owned.
func (s *stack) check() {
	t := s.t
	t.Helper()
	if err := s.cat.Check(); err != nil {
		t.Fatalf("catalog check: %v", err)
	}
	owned, err := OwnedExtents(s.cat)
	if err != nil {
		t.Fatalf("owned extents: %v", err)
	}
	if err := s.alloc.CheckOwned(owned); err != nil {
		t.Fatalf("allocator check: %v", err)
	}
}

// content dumps the replicated state: every blob record, every reservation,
// every recorded request (with the index it applied at), every member and
// the allocator's counters. It leaves out applied indexes, which a
// restarted Raft node advances with its own entries.
func (s *stack) content() string {
	t := s.t
	t.Helper()
	var b strings.Builder
	err := s.cat.View(func(tx *catalog.Tx) error {
		if g, err := tx.GetMeta(geometryMeta); err == nil {
			fmt.Fprintf(&b, "geometry %q\n", g)
		} else if !errors.Is(err, catalog.ErrNotFound) {
			return err
		}
		if err := tx.ForEachBlob(func(bl catalog.Blob) error {
			fmt.Fprintf(&b, "blob %q v=%d size=%d exts=%v chunk=%d sums=%v ct=%q created=%d id=%d\n",
				bl.Key, bl.Version, bl.Size, bl.Extents, bl.ChunkSize, bl.Checksums, bl.ContentType, bl.Created, bl.ReservationID)
			return nil
		}); err != nil {
			return err
		}
		if err := tx.ForEachReservation(func(r catalog.Reservation) error {
			fmt.Fprintf(&b, "resv %d size=%d deadline=%d exts=%v\n", r.ID, r.Size, r.Deadline, r.Extents)
			return nil
		}); err != nil {
			return err
		}
		if err := tx.ForEachRequest(func(q catalog.Request) error {
			old := "-"
			if q.Old != nil {
				old = fmt.Sprintf("%q/v%d", q.Old.Key, q.Old.Version)
			}
			fmt.Fprintf(&b, "request %d index=%d fp=%08x code=%d exts=%v batch=%v version=%d old=%s\n",
				q.ID, q.Index, q.Fingerprint, q.Code, q.Extents, q.Batch, q.Version, old)
			return nil
		}); err != nil {
			return err
		}
		members, err := tx.Members()
		for _, m := range members {
			fmt.Fprintf(&b, "member %q api=%q raft=%q\n", m.ID, m.APIAddr, m.RaftAddr)
		}
		return err
	})
	if err != nil {
		t.Fatalf("dump catalog: %v", err)
	}
	st := s.alloc.Stats()
	fmt.Fprintf(&b, "alloc total=%d free=%d used=%d largest=%d frag=%v\n", st.TotalBytes, st.FreeBytes, st.UsedBytes, st.LargestFree, st.Fragmentation)
	for _, c := range st.Classes {
		fmt.Fprintf(&b, "class %d free=%d used=%d\n", c.PageSize, c.FreePages, c.UsedPages)
	}
	return b.String()
}

// state is content plus the applied indexes of catalog, allocator and FSM.
func (s *stack) state() string {
	s.t.Helper()
	return fmt.Sprintf("applied catalog=%d allocator=%d fsm=%d\n%s",
		catalogApplied(s.t, s.cat), s.alloc.AppliedIndex(), s.fsm.Applied(), s.content())
}

// sameState fails the test unless two state dumps are equal, naming the
// first line where they differ.
func sameState(t testing.TB, what, got, want string) {
	t.Helper()
	if got == want {
		return
	}
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := range max(len(g), len(w)) {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			t.Fatalf("%s: states differ at line %d (of %d and %d):\n got %s\nwant %s", what, i+1, len(g), len(w), gl, wl)
		}
	}
}

// fmtResult renders an ApplyBatch response for comparison across replicas
// (Result.Old is a pointer; its contents are what must agree).
func fmtResult(x any) string {
	r, ok := x.(Result)
	if !ok {
		return fmt.Sprintf("%T(%v)", x, x)
	}
	old := "-"
	if r.Old != nil {
		old = fmt.Sprintf("%q/v%d/%d/%v", r.Old.Key, r.Old.Version, r.Old.Size, r.Old.Extents)
	}
	return fmt.Sprintf("err=%v exts=%v batch=%v version=%d old=%s", r.Err, r.Extents, r.Batch, r.Version, old)
}

// applyLogs feeds logs to f in random batches of 1..maxBatch entries and
// returns the responses, failing the test if the FSM stops.
func applyLogs(t testing.TB, f *FSM, logs []*raft.Log, r *rand.Rand, maxBatch int) []any {
	t.Helper()
	out := make([]any, 0, len(logs))
	for len(logs) > 0 {
		n := min(len(logs), 1+r.IntN(maxBatch))
		var res []any
		if n == 1 && r.IntN(2) == 0 {
			res = []any{f.Apply(logs[0])} // raft.FSM's single-entry path
		} else {
			res = f.ApplyBatch(logs[:n])
		}
		if len(res) != n {
			t.Fatalf("ApplyBatch of %d entries returned %d responses", n, len(res))
		}
		if err := f.Err(); err != nil {
			t.Fatalf("FSM stopped applying entries %d..%d: %v", logs[0].Index, logs[n-1].Index, err)
		}
		out = append(out, res...)
		logs = logs[n:]
	}
	return out
}

// sameResults fails unless two response lists agree entry by entry.
func sameResults(t testing.TB, what string, logs []*raft.Log, got, want []any) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: %d responses, want %d", what, len(got), len(want))
	}
	for i := range got {
		if g, w := fmtResult(got[i]), fmtResult(want[i]); g != w {
			t.Fatalf("%s: entry %d differs:\n got %s\nwant %s", what, logs[i].Index, g, w)
		}
	}
}

// workload generates a random but mostly meaningful command stream: it
// remembers the reservations it proposed, so most Commits name live ones,
// and advances a logical clock carried in Expire and Reserve deadlines.
type workload struct {
	r       *rand.Rand
	index   uint64   // index of the next log entry
	nextID  uint64   // next reservation id
	pending []resv   // proposed reservations not yet consumed by a Commit or Abort
	keys    []string // key space, small so keys are replaced and deleted
	commits map[string][]uint64
	now     int64 // logical clock, unix ns
	// noInline replaces CommitInline entries by Commits, for tests whose
	// device faults must hit the allocator's journal, not a blob's bytes.
	noInline bool
	// recent holds the encodings of the last commands given a request id,
	// which later entries retry (repeat verbatim) now and then; retries
	// and reuses (another command under a recent id) count them.
	recent          [][]byte
	retries, reuses int
	// allIDs gives every command a request id (and never reuses one).
	allIDs bool
	// commands counts generated commands: every so often one of them is
	// a command the FSM always refuses, so that every run, whatever its
	// seed, exercises those paths.
	commands int
}

type resv struct {
	id   uint64
	size int64
}

const (
	testChunk = 64 << 10
	clockStep = int64(time.Second)
)

func newWorkload(seed uint64) *workload {
	w := &workload{
		r: rand.New(rand.NewPCG(seed, 0x5eed)), index: 1, nextID: 1,
		commits: make(map[string][]uint64), now: 1_700_000_000 * int64(time.Second),
	}
	for i := range 12 {
		w.keys = append(w.keys, fmt.Sprintf("bucket/key-%02d", i))
	}
	return w
}

// logs returns the next n entries: the first entry of a workload is Init.
// Now and then an entry is a configuration change, which the FSM must
// skip (hashicorp/raft hands those to a BatchingFSM too).
func (w *workload) logs(n int) []*raft.Log {
	out := make([]*raft.Log, 0, n)
	for range n {
		l := &raft.Log{Index: w.index, Term: 1 + w.index/64, Type: raft.LogCommand}
		switch {
		case w.index == 1:
			l.Data = (&Command{Kind: KindInit, Geometry: testGeometry.String()}).Encode()
		case w.r.IntN(100) < 2:
			l.Type = raft.LogConfiguration
			l.Data = []byte("not a command")
		case len(w.recent) > 0 && w.r.IntN(100) < 4:
			// A retry: the same bytes as a recent command with an id.
			l.Data = w.recent[len(w.recent)-1-w.r.IntN(len(w.recent))]
			w.retries++
		default:
			c := w.command()
			if c.Kind == KindCommit || c.Kind == KindCommitInline {
				w.commits[c.Key] = append(w.commits[c.Key], w.index)
			}
			w.requestID(&c)
			l.Data = c.Encode()
			if c.RequestID != 0 {
				w.recent = append(w.recent, l.Data)
				if len(w.recent) > 24 {
					w.recent = w.recent[1:]
				}
			}
		}
		out = append(out, l)
		w.index++
	}
	return out
}

// requestID gives a third of the commands (all with allIDs) a random request
// id, and now and then one of a recent command (a proposer bug:
// ErrRequestIDReused).
func (w *workload) requestID(c *Command) {
	if w.allIDs {
		c.RequestID = w.r.Uint64() | 1
		return
	}
	switch p := w.r.IntN(100); {
	case (p < 1 || w.commands%128 == 100) && len(w.recent) > 0:
		prev, err := DecodeCommand(w.recent[w.r.IntN(len(w.recent))])
		if err != nil {
			panic(err) // the workload's own encoding
		}
		c.RequestID = prev.RequestID
		w.reuses++
	case p < 34:
		c.RequestID = w.r.Uint64() | 1
	}
}

func (w *workload) key() string { return w.keys[w.r.IntN(len(w.keys))] }

// ifMatch returns 0 (no condition) or a version the key may have: the index
// of one of its earlier Commits (which may have been refused or replaced).
func (w *workload) ifMatch(key string) uint64 {
	if w.r.IntN(100) >= 20 {
		return 0
	}
	if cs := w.commits[key]; len(cs) > 0 && w.r.IntN(4) > 0 {
		return cs[len(cs)-1-w.r.IntN(min(len(cs), 3))]
	}
	return 1 + w.r.Uint64N(w.index)
}

// logUniform returns a size between lo and hi, uniform in log scale.
func logUniform(r *rand.Rand, lo, hi int64) int64 {
	x := float64(lo) * math.Pow(float64(hi)/float64(lo), r.Float64())
	return max(lo, min(hi, int64(x)))
}

// command returns one random command (never Init: a second Init with another
// geometry stops the node by design).
func (w *workload) command() Command {
	r := w.r
	w.commands++
	switch w.commands % 64 {
	case 21:
		// Size 0: ErrInvalid, and nothing reserved.
		return Command{Kind: KindReserve, ReservationID: w.nextID, Deadline: w.now + clockStep}
	case 42:
		// No key: ErrInvalid before any reservation is looked up.
		return Command{Kind: KindCommit, Identity: r.Uint64(), Created: w.now}
	}
	switch p := r.IntN(100); {
	case p < 38:
		c := Command{Kind: KindReserve, ReservationID: w.nextID, Size: logUniform(r, 1, 1536<<10),
			Deadline: w.now + (1+r.Int64N(25))*clockStep}
		switch q := r.IntN(100); {
		case q < 3 && len(w.pending) > 0:
			c.ReservationID = w.pending[r.IntN(len(w.pending))].id // ErrDuplicate while it lives
			return c
		case q < 4:
			c.Size = 0 // ErrInvalid
		}
		w.nextID++
		w.pending = append(w.pending, resv{c.ReservationID, c.Size})
		return c
	case p < 42:
		// A pool of small reservations, as the store makes ahead of uploads.
		c := Command{Kind: KindReserveBatch, Size: int64(4096) << r.IntN(4), Deadline: w.now + (1+r.Int64N(25))*clockStep}
		for range 1 + r.IntN(8) {
			c.ReservationIDs = append(c.ReservationIDs, w.nextID)
			w.pending = append(w.pending, resv{w.nextID, c.Size})
			w.nextID++
		}
		return c
	case p < 58:
		return w.commit()
	case p < 64 && w.noInline:
		return w.commit()
	case p < 64:
		return w.inline()
	case p < 72:
		c := Command{Kind: KindAbort, ReservationID: 1 + r.Uint64N(w.nextID)}
		if len(w.pending) > 0 && r.IntN(4) > 0 {
			i := len(w.pending) - 1 - r.IntN(min(len(w.pending), 6))
			c.ReservationID = w.pending[i].id
			w.pending = append(w.pending[:i], w.pending[i+1:]...)
		}
		return c
	case p < 84:
		k := w.key()
		return Command{Kind: KindDelete, Key: k, IfMatch: w.ifMatch(k)}
	case p < 94:
		w.now += r.Int64N(5) * clockStep
		return Command{Kind: KindExpire, Now: w.now}
	case p < 97:
		return Command{Kind: KindNoop}
	default:
		return w.member()
	}
}

// member returns a Register or Deregister among a few node ids; a few
// Registers are deliberately refused (an address that is not host:port).
func (w *workload) member() Command {
	r := w.r
	id := fmt.Sprintf("node-%d", r.IntN(5))
	if r.IntN(4) == 0 {
		return Command{Kind: KindDeregister, NodeID: id}
	}
	c := Command{Kind: KindRegister, NodeID: id,
		APIAddr: fmt.Sprintf("10.0.0.%d:8080", r.IntN(256)), RaftAddr: fmt.Sprintf("10.0.0.%d:7000", r.IntN(256))}
	if r.IntN(10) == 0 {
		c.APIAddr = "no-port" // ErrInvalid
	}
	return c
}

// commit takes one to three of the most recent pending reservations and
// commits them under a random key; a few Commits are deliberately refused
// (missing reservation, wrong size, failed precondition).
func (w *workload) commit() Command {
	r := w.r
	k := w.key()
	c := Command{Kind: KindCommit, Key: k, Identity: r.Uint64(), ContentType: "application/x-test",
		Created: w.now, IfMatch: w.ifMatch(k), IfNoneMatch: r.IntN(100) < 8}
	if len(w.pending) > 0 && r.IntN(100) >= 4 {
		n := 1 + r.IntN(min(3, len(w.pending)))
		for range n {
			i := len(w.pending) - 1 - r.IntN(min(len(w.pending), 4))
			c.ReservationIDs = append(c.ReservationIDs, w.pending[i].id)
			c.Size += w.pending[i].size
			w.pending = append(w.pending[:i], w.pending[i+1:]...)
		}
	}
	switch q := r.IntN(100); {
	case q < 4:
		c.ReservationIDs = append(c.ReservationIDs, w.nextID+1000) // never reserved
	case q < 8:
		c.Size++ // does not match the reservations
	}
	if c.Size > 0 {
		c.ChunkSize = testChunk
		c.Checksums = make([]uint32, (c.Size+testChunk-1)/testChunk)
		for i := range c.Checksums {
			c.Checksums[i] = r.Uint32()
		}
	}
	return c
}

// inline returns a CommitInline of random bytes under a random key; a few
// are deliberately refused (size not matching the data, a failed
// precondition).
func (w *workload) inline() Command {
	r := w.r
	k := w.key()
	size := logUniform(r, 1, MaxInlineSize)
	c := Command{Kind: KindCommitInline, Key: k, Identity: r.Uint64(), ContentType: "application/x-small",
		Created: w.now, IfMatch: w.ifMatch(k), IfNoneMatch: r.IntN(100) < 8,
		Size: size, ChunkSize: testChunk, Checksums: []uint32{r.Uint32()}, Data: make([]byte, size)}
	for i := range c.Data {
		c.Data[i] = byte(r.Uint32())
	}
	if r.IntN(100) < 4 {
		c.Size++ // does not match the data
	}
	return c
}

// memSink is a raft.SnapshotSink over a bytes.Buffer.
type memSink struct {
	bytes.Buffer
	closed, canceled bool
}

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Cancel() error { s.canceled = true; return nil }
func (s *memSink) Close() error  { s.closed = true; return nil }

var _ raft.SnapshotSink = (*memSink)(nil)

// summary counts the outcomes of a run by kind, to show (and assert) that a
// random workload reached the code it is meant to test.
type summary map[string]int

func summarise(logs []*raft.Log, res []any) summary {
	s := summary{}
	for i, l := range logs {
		if l.Type != raft.LogCommand {
			s["skipped"]++
			continue
		}
		c, err := DecodeCommand(l.Data)
		if err != nil {
			s["undecodable"]++
			continue
		}
		r, _ := res[i].(Result)
		outcome := "ok"
		if r.Err != nil {
			outcome = r.Err.Error()
		}
		s[kindNames[c.Kind]+" "+outcome]++
	}
	return s
}

var kindNames = map[Kind]string{
	KindNoop: "noop", KindInit: "init", KindReserve: "reserve", KindCommit: "commit",
	KindAbort: "abort", KindExpire: "expire", KindDelete: "delete", KindReserveBatch: "reserve-batch",
	KindCommitInline: "commit-inline", KindRegister: "register", KindDeregister: "deregister", KindRenew: "renew",
}

// requireSome fails unless the run had at least one of each named outcome.
func (s summary) requireSome(t testing.TB, outcomes ...string) {
	t.Helper()
	for _, o := range outcomes {
		if s[o] == 0 {
			t.Errorf("workload never produced %q; outcomes: %v", o, s)
		}
	}
}

// catalogBytes dumps, as hex, every key and value of every bucket but the
// node-local one, as a snapshot of the catalog holds them: two replicas
// that applied the same entries must agree byte for byte (bbolt's page
// layout may differ; its contents may not).
func catalogBytes(t testing.TB, db *catalog.DB) string {
	t.Helper()
	snap, err := db.BeginSnapshot()
	if err != nil {
		t.Fatalf("begin snapshot: %v", err)
	}
	var buf bytes.Buffer
	_, err = snap.WriteTo(&buf)
	snap.Release()
	if err != nil {
		t.Fatalf("write snapshot: %v", err)
	}
	// Strip the frame (magic, length; checksum) to get the bbolt image.
	const header, trailer = 16, 4
	path := filepath.Join(t.TempDir(), "image.db")
	if err := os.WriteFile(path, buf.Bytes()[header:buf.Len()-trailer], 0o600); err != nil {
		t.Fatal(err)
	}
	bdb, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("open snapshot image: %v", err)
	}
	defer bdb.Close()
	var b strings.Builder
	err = bdb.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func(name []byte, bk *bbolt.Bucket) error {
			if string(name) == "local" {
				return nil
			}
			fmt.Fprintf(&b, "bucket %s\n", name)
			return bk.ForEach(func(k, v []byte) error {
				fmt.Fprintf(&b, "%x=%x\n", k, v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatalf("dump snapshot image: %v", err)
	}
	return b.String()
}

// entries encodes commands as consecutive log entries from index first.
func entries(first uint64, cmds ...Command) []*raft.Log {
	logs := make([]*raft.Log, len(cmds))
	for i := range cmds {
		logs[i] = &raft.Log{Index: first + uint64(i), Term: 1, Type: raft.LogCommand, Data: cmds[i].Encode()}
	}
	return logs
}

// applyOne applies one command at index and returns its Result, failing
// the test if the state machine stops.
func applyOne(t testing.TB, f *FSM, index uint64, c Command) Result {
	t.Helper()
	r, _ := f.ApplyBatch(entries(index, c))[0].(Result)
	if err := f.Err(); err != nil {
		t.Fatalf("entry %d (kind %d) stopped the state machine: %v", index, c.Kind, err)
	}
	return r
}
