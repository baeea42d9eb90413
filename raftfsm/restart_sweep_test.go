package raftfsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/volume"
)

// sweepGeometry is a 4 MiB volume with 64 KiB lpages: a crash sweep builds
// a fresh MemDevice for every crash state, and a small one is quick to
// fill with garbage under the race detector.
var sweepGeometry = volume.Geometry{SpageShift: 12, LpageShift: 16, VolumeSize: 4 << 20}

// Events of the restart sweep's workload, recorded in its trace.
type (
	// logDurable: entries logs[:n] are in the Raft log. The log is durable
	// by construction: hashicorp/raft syncs an entry before it is
	// committed, applied or answered.
	logDurable int
	// snapshotStored: snaps[i] is in the snapshot store; an unclean start
	// restores the latest one.
	snapshotStored int
)

// storedSnapshot is a persisted FSM snapshot and the index it covers.
type storedSnapshot struct {
	index uint64
	data  []byte
}

// restartRun is one recorded run of the restart sweep's workload.
type restartRun struct {
	trace volume.Trace
	from  int // trace position where the workload began
	logs  []*raft.Log
	snaps []storedSnapshot
	// refs[n] is the replicated state (stack.content) once logs[:n] are
	// applied, for every length the log reached.
	refs map[int]string
	// blobs holds the bytes of each committed blob version, by version
	// (the index of the entry that committed it).
	blobs map[uint64][]byte
	// counts of what the workload did, to show it reached what the
	// sweep is for.
	counts summary
}

// restartDriver proposes the workload's commands on a recorded stack, one
// ApplyBatch per proposal, as a single node's Raft would apply them.
type restartDriver struct {
	t      *testing.T
	s      *stack
	r      *rand.Rand
	run    *restartRun
	nextID uint64
	live   map[string]bool  // keys that map a blob
	freed  []catalog.Extent // extents of blobs deleted or replaced and of aborted uploads
}

// chunkSums returns the CRC32C of each chunk of data.
func chunkSums(data []byte, chunk int) []uint32 {
	var out []uint32
	for len(data) > 0 {
		n := min(len(data), chunk)
		out = append(out, crc32.Checksum(data[:n], crc32.MakeTable(crc32.Castagnoli)))
		data = data[n:]
	}
	return out
}

func (d *restartDriver) randomBytes(n int64) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(d.r.Uint32())
	}
	return p
}

// propose appends cmds to the log as consecutive entries, records that the
// log holds them, applies them as one batch and records the state after.
func (d *restartDriver) propose(cmds ...Command) []Result {
	d.t.Helper()
	var batch []*raft.Log
	for _, c := range cmds {
		idx := uint64(len(d.run.logs) + len(batch) + 1)
		batch = append(batch, &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: c.Encode()})
	}
	d.run.logs = append(d.run.logs, batch...)
	d.s.rec.Event(logDurable(len(d.run.logs)))
	res := d.s.fsm.ApplyBatch(batch)
	if err := d.s.fsm.Err(); err != nil {
		d.t.Fatalf("recorded run: the FSM stopped at entries %d..%d: %v", batch[0].Index, batch[len(batch)-1].Index, err)
	}
	d.run.refs[len(d.run.logs)] = d.s.content()
	out := make([]Result, len(res))
	for i, x := range res {
		out[i], _ = x.(Result)
		if old := out[i].Old; old != nil {
			d.freed = append(d.freed, old.Extents...)
		}
	}
	return out
}

// reuses reports whether exts overlap pages freed earlier.
func (d *restartDriver) reuses(exts []catalog.Extent) bool {
	for _, e := range exts {
		for _, f := range d.freed {
			if e.Offset < f.Offset+f.Length && f.Offset < e.Offset+e.Length {
				return true
			}
		}
	}
	return false
}

func (d *restartDriver) key() string { return fmt.Sprintf("key-%d", d.r.IntN(6)) }

// inlineCmd returns a CommitInline of fresh random bytes under key.
func (d *restartDriver) inlineCmd(key string) Command {
	data := d.randomBytes(logUniform(d.r, 1, MaxInlineSize/2))
	return Command{Kind: KindCommitInline, Key: key, Size: int64(len(data)), ChunkSize: testChunk,
		Checksums: chunkSums(data, testChunk), Identity: d.r.Uint64(), Data: data}
}

// commands proposes a batch of one to three inline puts and deletes.
func (d *restartDriver) commands() {
	d.t.Helper()
	var cmds []Command
	for range 1 + d.r.IntN(3) {
		if d.r.IntN(3) == 0 {
			cmds = append(cmds, Command{Kind: KindDelete, Key: d.key()})
		} else {
			cmds = append(cmds, d.inlineCmd(d.key()))
		}
	}
	res := d.propose(cmds...)
	for i, c := range cmds {
		switch {
		case c.Kind == KindDelete && res[i].Err == nil:
			delete(d.live, c.Key)
			d.run.counts["delete"]++
		case c.Kind == KindDelete && errors.Is(res[i].Err, ErrNotFound):
		case c.Kind == KindCommitInline && res[i].Err == nil:
			d.run.blobs[res[i].Version] = c.Data
			d.live[c.Key] = true
			d.run.counts["inline"]++
		case c.Kind == KindCommitInline && errors.Is(res[i].Err, ErrNoSpace):
		default:
			d.t.Fatalf("recorded run: %v refused: %v", kindNames[c.Kind], res[i].Err)
		}
	}
	// Which pages the inline blobs got is known once the batch applied.
	for i, c := range cmds {
		if c.Kind == KindCommitInline && res[i].Err == nil && d.live[c.Key] {
			if d.reuses(blobExtents(d.t, d.s, c.Key)) {
				d.run.counts["inline on freed pages"]++
			}
		}
	}
}

// stream uploads a blob the way a coordinator does: Reserve, write the
// bytes to the reserved extents, make them durable (data before pointer),
// then Commit, or now and then Abort after the bytes are written.
func (d *restartDriver) stream() {
	d.t.Helper()
	size := logUniform(d.r, 1, 256<<10)
	id := d.nextID
	d.nextID++
	res := d.propose(Command{Kind: KindReserve, ReservationID: id, Size: size, Deadline: 1 << 62})[0]
	if errors.Is(res.Err, ErrNoSpace) {
		return
	}
	if res.Err != nil {
		d.t.Fatalf("recorded run: reserve: %v", res.Err)
	}
	if d.reuses(res.Extents) {
		d.run.counts["streamed on freed pages"]++
	}
	data := d.randomBytes(size)
	rest := data
	for _, e := range res.Extents {
		n := min(int64(len(rest)), e.Length)
		if _, err := d.s.vol.WriteAt(rest[:n], e.Offset); err != nil {
			d.t.Fatalf("recorded run: write streamed data: %v", err)
		}
		rest = rest[n:]
	}
	if err := d.s.vol.SyncData(context.Background()); err != nil {
		d.t.Fatalf("recorded run: sync streamed data: %v", err)
	}
	if d.r.IntN(5) == 0 {
		if r := d.propose(Command{Kind: KindAbort, ReservationID: id})[0]; r.Err != nil {
			d.t.Fatalf("recorded run: abort: %v", r.Err)
		}
		d.freed = append(d.freed, res.Extents...)
		d.run.counts["aborted after its data"]++
		return
	}
	key := d.key()
	c := Command{Kind: KindCommit, Key: key, ReservationIDs: []uint64{id}, Size: size, ChunkSize: testChunk,
		Checksums: chunkSums(data, testChunk), Identity: id}
	r := d.propose(c)[0]
	if r.Err != nil {
		d.t.Fatalf("recorded run: commit: %v", r.Err)
	}
	d.run.blobs[r.Version] = data
	d.live[key] = true
	d.run.counts["streamed"]++
}

// snapshot takes and persists a snapshot, as Raft does by threshold.
func (d *restartDriver) snapshot() {
	d.t.Helper()
	snap, err := d.s.fsm.Snapshot()
	if err != nil {
		d.t.Fatalf("recorded run: Snapshot: %v", err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		d.t.Fatalf("recorded run: Persist: %v", err)
	}
	snap.Release()
	d.run.snaps = append(d.run.snaps, storedSnapshot{index: d.s.fsm.Applied(), data: sink.Bytes()})
	d.s.rec.Event(snapshotStored(len(d.run.snaps) - 1))
	d.run.counts["snapshot"]++
}

// recordRestartRun records steps workload steps on a traceDev stack: the
// Init entry, then inline puts and deletes in batches, streamed uploads
// (some aborted after their bytes were written) and snapshots, at least
// two of them.
func recordRestartRun(t *testing.T, seed uint64, steps int) restartRun {
	t.Helper()
	s := newStackOf(t, traceDev, seed, sweepGeometry)
	run := restartRun{from: s.rec.Len(), refs: map[int]string{0: s.content()}, blobs: map[uint64][]byte{}, counts: summary{}}
	d := &restartDriver{t: t, s: s, r: rand.New(rand.NewPCG(seed, 9)), run: &run, nextID: 1, live: map[string]bool{}}
	d.propose(Command{Kind: KindInit, Geometry: sweepGeometry.String()})
	for step := range steps {
		switch p := d.r.IntN(100); {
		case step == steps/3 || step == 2*steps/3:
			d.snapshot()
		case p < 40:
			d.commands()
		case p < 75:
			d.stream()
		case p < 88 && len(d.live) > 0:
			for k := range d.live { // any live key; which one does not matter
				if r := d.propose(Command{Kind: KindDelete, Key: k})[0]; r.Err != nil {
					t.Fatalf("recorded run: delete %q: %v", k, r.Err)
				}
				delete(d.live, k)
				run.counts["delete"]++
				break
			}
		default:
			d.snapshot()
		}
	}
	run.trace = s.rec.Trace()
	return run
}

// TestRestartCrashSweep crashes the state machine at every sync boundary
// of one recorded run, in every crash mode (see volume.Trace), and
// restarts it the way the daemon does after an unclean stop: the catalog
// is discarded, the allocator rebuilt, the latest stored snapshot restored
// and the Raft log after it replayed through ApplyBatch. The log and the
// snapshots are what the run had made durable before the crash: Raft syncs
// an entry before it is applied, and stores a snapshot only after the FSM
// synced its state. The workload has inline blobs (written to the heap by
// the FSM, guarded by the data mark), streamed blobs (Reserve, bytes
// written and synced by the test, then Commit), aborted uploads, deletes
// and replacements whose pages later blobs reuse, and snapshots. After the
// restart the replicated state equals that of a node that never crashed at
// the same log position, the catalog and the allocator pass their checks,
// and every blob reads back exactly its bytes, which match its checksums.
// BLOBNODE_FULL_SWEEP=1 sweeps more and longer runs, and more rng seeds.
func TestRestartCrashSweep(t *testing.T) {
	seed := testSeed(t)
	runs, steps, seeds := 1, 40, 2
	if volume.FullSweep() {
		runs, steps, seeds = 4, 80, 6
	}
	for run := range runs {
		t.Run(fmt.Sprint("run=", run), func(t *testing.T) {
			sweepRestart(t, seed+uint64(run), steps, seeds)
		})
	}
}

func sweepRestart(t *testing.T, seed uint64, steps, seeds int) {
	run := recordRestartRun(t, seed, steps)
	t.Logf("recorded run: %d entries, %d snapshots, %d device ops, %d syncs; %v",
		len(run.logs), len(run.snaps), len(run.trace.Ops), run.trace.Syncs(), run.counts)
	run.counts.requireSome(t, "inline", "streamed", "delete", "snapshot", "inline on freed pages", "streamed on freed pages")
	if t.Failed() {
		t.FailNow()
	}
	r := rand.New(rand.NewPCG(seed, 10))
	states := run.trace.CrashStates(run.from, seeds, int64(seed))
	restored, marked, checked := 0, 0, 0
	for _, cs := range states {
		n, snap := 0, -1
		for _, e := range run.trace.Events(cs.Op) {
			switch e := e.(type) {
			case logDurable:
				n = int(e)
			case snapshotStored:
				snap = int(e)
			}
		}
		dev := volume.NewMemDevice(sweepGeometry.VolumeSize, int64(seed))
		if err := run.trace.Build(dev, cs); err != nil {
			t.Fatalf("%v: %v", cs, err)
		}
		s := restartOn(t, dev, sweepGeometry)
		if s.vol.DataMark() > 0 {
			marked++ // inline entries up to the mark are not written again
		}
		first := uint64(0)
		if snap >= 0 {
			if err := s.fsm.Restore(io.NopCloser(bytes.NewReader(run.snaps[snap].data))); err != nil {
				t.Fatalf("%v: restore snapshot %d: %v", cs, snap, err)
			}
			first = run.snaps[snap].index
			restored++
		}
		applyLogs(t, s.fsm, run.logs[first:n], r, 4)
		what := fmt.Sprintf("%v, log of %d entries, snapshot at %d", cs, n, first)
		s.check()
		sameState(t, what, s.content(), run.refs[n])
		checked += checkBlobBytes(t, what, s, run.blobs)
		s.shutdown()
	}
	t.Logf("checked %d crash states (%d restored a snapshot, %d opened with a data mark), %d blob reads",
		len(states), restored, marked, checked)
}

// checkBlobBytes reads back every blob the catalog maps and compares it
// with the bytes its version was committed with and with its checksums.
// It returns how many blobs it read.
func checkBlobBytes(t *testing.T, what string, s *stack, want map[uint64][]byte) int {
	t.Helper()
	var blobs []catalog.Blob
	if err := s.cat.View(func(tx *catalog.Tx) error {
		return tx.ForEachBlob(func(b catalog.Blob) error {
			blobs = append(blobs, b)
			return nil
		})
	}); err != nil {
		t.Fatalf("%s: list blobs: %v", what, err)
	}
	for _, b := range blobs {
		got := blobBytes(t, s, b.Key)
		data, ok := want[b.Version]
		if !ok {
			t.Fatalf("%s: blob %q version %d was never committed", what, b.Key, b.Version)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("%s: blob %q version %d (%d bytes at %v) reads back other bytes", what, b.Key, b.Version, b.Size, b.Extents)
		}
		if sums := chunkSums(got, int(b.ChunkSize)); fmt.Sprint(sums) != fmt.Sprint(b.Checksums) {
			t.Fatalf("%s: blob %q version %d fails its checksums", what, b.Key, b.Version)
		}
	}
	return len(blobs)
}
