package raftfsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/volume"
)

// logsOf numbers cmds as consecutive entries from index 1.
func logsOf(cmds ...Command) []*raft.Log {
	logs := make([]*raft.Log, len(cmds))
	for i := range cmds {
		logs[i] = &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: cmds[i].Encode()}
	}
	return logs
}

func inlineCmd(key string, data []byte) Command {
	return Command{Kind: KindCommitInline, Key: key, Size: int64(len(data)), ChunkSize: testChunk,
		Checksums: []uint32{1}, Identity: 7, Data: data}
}

func blobExtents(t *testing.T, s *stack, key string) []catalog.Extent {
	t.Helper()
	var exts []catalog.Extent
	if err := s.cat.View(func(tx *catalog.Tx) error {
		b, ok, err := tx.GetBlob(key)
		if err == nil && !ok {
			err = errors.New("no such blob")
		}
		exts = b.Extents
		return err
	}); err != nil {
		t.Fatalf("blob %q: %v", key, err)
	}
	return exts
}

// blobBytes reads a blob's bytes from the heap as the catalog maps them.
func blobBytes(t *testing.T, s *stack, key string) []byte {
	t.Helper()
	var b catalog.Blob
	err := s.cat.View(func(tx *catalog.Tx) error {
		var ok bool
		var err error
		if b, ok, err = tx.GetBlob(key); err == nil && !ok {
			err = errors.New("no such blob")
		}
		return err
	})
	if err != nil {
		t.Fatalf("blob %q: %v", key, err)
	}
	var out []byte
	for _, e := range b.Extents {
		p := make([]byte, min(e.Length, b.Size-int64(len(out))))
		if _, err := s.vol.ReadAt(p, e.Offset); err != nil {
			t.Fatalf("read blob %q: %v", key, err)
		}
		out = append(out, p...)
	}
	return out
}

// restartUnclean crashes the stack and reopens it as the daemon does after
// an unclean stop with no snapshot: an empty catalog, the allocator
// rebuilt, and the whole log to replay.
func restartUnclean(t *testing.T, s *stack) {
	t.Helper()
	s.crash(volume.CrashDropAll, nil)
	if err := os.Remove(filepath.Join(s.dir, "catalog.db")); err != nil {
		t.Fatal(err)
	}
	s.forceRebuild = true
	s.open()
}

// TestInlineBlobSurvivesCrash: an inline blob's bytes are written at apply
// without a sync; after a power cut the log replay writes them again.
func TestInlineBlobSurvivesCrash(t *testing.T) {
	s := newStack(t, memDev, 1)
	data := bytes.Repeat([]byte("inline!"), 1500)
	logs := logsOf(Command{Kind: KindInit, Geometry: testGeometry.String()}, inlineCmd("a", data))
	res := applyLogs(t, s.fsm, logs, rand.New(rand.NewPCG(1, 1)), 1)
	if r := res[1].(Result); r.Err != nil || r.Version != 2 {
		t.Fatalf("inline commit: %s", fmtResult(r))
	}
	if got := blobBytes(t, s, "a"); !bytes.Equal(got, data) {
		t.Fatal("inline blob reads back different bytes")
	}
	restartUnclean(t, s)
	if s.vol.DataMark() != 0 {
		t.Fatalf("data mark %d after a crash with no data sync; want 0", s.vol.DataMark())
	}
	applyLogs(t, s.fsm, logs, rand.New(rand.NewPCG(1, 2)), 2)
	if got := blobBytes(t, s, "a"); !bytes.Equal(got, data) {
		t.Fatal("after crash and replay the inline blob reads back different bytes")
	}
	s.check()
}

// TestInlineReplayKeepsNewerUpload is the case the data mark exists for:
// an inline blob is deleted, its pages go to an upload whose bytes came
// over HTTP (synced, in no log entry), and the node crashes. Replaying the
// old inline entry must not write its bytes over the newer blob. The
// "no mark" case wipes the mark before the restart and shows that the
// replay would then destroy the newer blob, so this test can fail.
func TestInlineReplayKeepsNewerUpload(t *testing.T) {
	for _, wipeMark := range []bool{false, true} {
		name := map[bool]string{false: "mark", true: "no mark"}[wipeMark]
		t.Run(name, func(t *testing.T) {
			s := newStack(t, memDev, 2)
			old := bytes.Repeat([]byte{0xaa}, 4096)
			logs := logsOf(
				Command{Kind: KindInit, Geometry: testGeometry.String()},
				inlineCmd("a", old),
				Command{Kind: KindDelete, Key: "a"},
				Command{Kind: KindReserve, ReservationID: 9, Size: 4096, Deadline: 1 << 62},
			)
			applyLogs(t, s.fsm, logs[:2], rand.New(rand.NewPCG(2, 1)), 1)
			aExts := blobExtents(t, s, "a")
			res := applyLogs(t, s.fsm, logs[2:], rand.New(rand.NewPCG(2, 1)), 1)
			aExt := res[1].(Result).Extents[0]
			if len(aExts) != 1 || aExt != aExts[0] {
				t.Fatalf("the reservation got %v, not a's page %v: the test needs the reuse", aExt, aExts)
			}
			newer := bytes.Repeat([]byte{0x55}, 4096)
			if _, err := s.vol.WriteAt(newer, aExt.Offset); err != nil {
				t.Fatal(err)
			}
			if err := s.vol.SyncData(context.Background()); err != nil { // the upload's data sync
				t.Fatal(err)
			}
			commit := Command{Kind: KindCommit, Key: "b", ReservationIDs: []uint64{9}, Size: 4096,
				ChunkSize: testChunk, Checksums: []uint32{2}, Identity: 9}
			logs = append(logs, &raft.Log{Index: 5, Term: 1, Type: raft.LogCommand, Data: commit.Encode()})
			if r := applyLogs(t, s.fsm, logs[4:], rand.New(rand.NewPCG(2, 2)), 1)[0].(Result); r.Err != nil {
				t.Fatalf("commit b: %v", r.Err)
			}
			if wipeMark {
				s.mem.SetCrashAt(0)
				// Both mark pages (format version 2).
				if _, err := s.mem.WriteAt(make([]byte, 2*4096), volume.SuperblockSize); err != nil {
					t.Fatal(err)
				}
				if err := s.mem.Sync(); err != nil {
					t.Fatal(err)
				}
			}
			restartUnclean(t, s)
			if want := uint64(2 * map[bool]int{false: 1, true: 0}[wipeMark]); s.vol.DataMark() != want {
				t.Fatalf("data mark after restart %d; want %d", s.vol.DataMark(), want)
			}
			applyLogs(t, s.fsm, logs, rand.New(rand.NewPCG(2, 3)), 3)
			got := blobBytes(t, s, "b")
			if clobbered := bytes.Equal(got, old); clobbered != wipeMark {
				t.Fatalf("blob b after replay: clobbered=%v, want %v", clobbered, wipeMark)
			}
			if !wipeMark && !bytes.Equal(got, newer) {
				t.Fatal("blob b reads back different bytes after replay")
			}
			s.check()
		})
	}
}

// TestInlineRefusals: inline commits that do not add up are refused
// without allocating, and a failed precondition allocates nothing either.
func TestInlineRefusals(t *testing.T) {
	s := newStack(t, memDev, 3)
	applyCmds(t, s.fsm, Command{Kind: KindInit, Geometry: testGeometry.String()})
	before := s.content()
	good := inlineCmd("k", []byte("abc"))
	cases := map[string]func(c *Command){
		"size differs from data":  func(c *Command) { c.Size = 4 },
		"no key":                  func(c *Command) { c.Key = "" },
		"empty":                   func(c *Command) { c.Size, c.Data = 0, nil },
		"two checksums":           func(c *Command) { c.Checksums = []uint32{1, 2} },
		"chunk smaller than blob": func(c *Command) { c.ChunkSize = 2 },
		"if-match on absent key":  func(c *Command) { c.IfMatch = 5 },
	}
	for name, mutate := range cases {
		c := good
		mutate(&c)
		r := applyCmds(t, s.fsm, c)[0]
		if r.Err == nil {
			t.Fatalf("%s: accepted", name)
		}
		if err := s.fsm.Err(); err != nil {
			t.Fatalf("%s: state machine stopped: %v", name, err)
		}
		sameState(t, name, s.content(), before)
	}
	if r := applyCmds(t, s.fsm, good)[0]; r.Err != nil {
		t.Fatalf("valid inline commit refused: %v", r.Err)
	}
	c := good
	c.IfNoneMatch = true
	if r := applyCmds(t, s.fsm, c)[0]; !errors.Is(r.Err, ErrPreconditionFailed) {
		t.Fatalf("if-none-match on an existing key: %v", r.Err)
	}
	s.check()
}

// TestInlineFailedCommitKeepsLiveBlobs: a batch deletes blob x and stores
// an inline blob y on x's freed page, and its catalog commit fails (disk
// full). The catalog is rolled back, so x stays mapped to that page and
// the read-only node keeps serving it; the inline bytes of y must not have
// been written over it. Once the disk recovers, the batch applies and y
// holds its own bytes.
func TestInlineFailedCommitKeepsLiveBlobs(t *testing.T) {
	s := newStack(t, fileDev, 4)
	failer := injectCommitFailures(s.fsm)
	xData := bytes.Repeat([]byte{0xaa}, 4096)
	yData := bytes.Repeat([]byte{0x55}, 4096)
	logs := logsOf(
		Command{Kind: KindInit, Geometry: testGeometry.String()},
		inlineCmd("x", xData),
		Command{Kind: KindDelete, Key: "x"},
		inlineCmd("y", yData),
	)
	applyLogs(t, s.fsm, logs[:2], rand.New(rand.NewPCG(4, 1)), 1)
	xExts := blobExtents(t, s, "x")

	failer.set(diskError(syscall.ENOSPC))
	done := make(chan []any, 1)
	go func() { done <- s.fsm.ApplyBatch(logs[2:]) }()
	failer.waitFailures(t, 1)
	if got := blobBytes(t, s, "x"); !bytes.Equal(got, xData) {
		t.Error("while the batch's commit fails, live blob x reads back the bytes of the uncommitted inline blob y")
	}
	failer.set(nil)
	res := <-done
	if r := res[1].(Result); r.Err != nil {
		t.Fatalf("inline commit of y: %v", r.Err)
	}
	if yExts := blobExtents(t, s, "y"); len(yExts) != 1 || yExts[0] != xExts[0] {
		t.Fatalf("y got %v, not x's page %v: the test needs the reuse", yExts, xExts)
	}
	if got := blobBytes(t, s, "y"); !bytes.Equal(got, yData) {
		t.Fatal("after recovery inline blob y reads back different bytes")
	}
	s.check()
}

// failingData is a heap whose writes fail while err is set.
type failingData struct {
	BlobData
	mu  sync.Mutex // guards err
	err error
}

func (d *failingData) set(err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.err = err
}

func (d *failingData) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	err := d.err
	d.mu.Unlock()
	if err != nil {
		return 0, err
	}
	return d.BlobData.WriteAt(p, off)
}

// TestInlineWriteFailure: a failed inline data write makes the node
// read-only (not stopped) and is retried; if the FSM is closed before it
// succeeds, the FSM stops, so that the daemon's next start is unclean and
// replays the entry whose bytes the catalog maps but the heap lacks.
func TestInlineWriteFailure(t *testing.T) {
	for _, recovers := range []bool{true, false} {
		t.Run(map[bool]string{true: "recovers", false: "closed"}[recovers], func(t *testing.T) {
			s := newStack(t, memDev, 5)
			d := &failingData{BlobData: s.vol}
			s.fsm.AttachData(d)
			data := bytes.Repeat([]byte{0x42}, 5000)
			logs := logsOf(Command{Kind: KindInit, Geometry: testGeometry.String()}, inlineCmd("a", data))
			applyLogs(t, s.fsm, logs[:1], rand.New(rand.NewPCG(5, 1)), 1)

			d.set(diskError(syscall.EIO))
			done := make(chan []any, 1)
			go func() { done <- s.fsm.ApplyBatch(logs[1:]) }()
			waitReadOnly(t, s.fsm, true)
			if err := s.fsm.Err(); err != nil {
				t.Fatalf("a failed inline data write stopped the state machine: %v", err)
			}
			if !recovers {
				s.fsm.Close()
				r := (<-done)[0].(Result)
				if !errors.Is(r.Err, ErrStopped) || !errors.Is(s.fsm.Err(), syscall.EIO) {
					t.Fatalf("closed while the write fails: result %v, Err %v; want the FSM stopped", r.Err, s.fsm.Err())
				}
				return
			}
			d.set(nil)
			if r := (<-done)[0].(Result); r.Err != nil || r.Version != 2 {
				t.Fatalf("inline commit after recovery: %s", fmtResult(r))
			}
			waitReadOnly(t, s.fsm, false)
			if got := blobBytes(t, s, "a"); !bytes.Equal(got, data) {
				t.Fatal("inline blob reads back different bytes after recovery")
			}
			s.check()
		})
	}
}

// TestInlineReplayAfterSnapshotRestore: the daemon's unclean start, with a
// snapshot. Entries after the snapshot replay over a crashed volume: inline
// blobs at or below the data mark are not written again (a's page now
// holds a newer upload's synced bytes), one above it is (c, on x's page).
// Wiping the mark before the restart makes this test fail.
func TestInlineReplayAfterSnapshotRestore(t *testing.T) {
	s := newStack(t, memDev, 6)
	pageOf := func(key string) catalog.Extent {
		exts := blobExtents(t, s, key)
		if len(exts) != 1 {
			t.Fatalf("blob %q has %d extents", key, len(exts))
		}
		return exts[0]
	}
	aData := bytes.Repeat([]byte{0xa1}, 4096)
	xData := bytes.Repeat([]byte{0xb2}, 4096)
	cData := bytes.Repeat([]byte{0xc3}, 4096)
	newer := bytes.Repeat([]byte{0xd4}, 4096)
	logs := logsOf(
		Command{Kind: KindInit, Geometry: testGeometry.String()},
		inlineCmd("a", aData),
		inlineCmd("x", xData),
		Command{Kind: KindDelete, Key: "a"},
		Command{Kind: KindDelete, Key: "x"},
		Command{Kind: KindReserve, ReservationID: 9, Size: 4096, Deadline: 1 << 62},
		Command{Kind: KindCommit, Key: "b", ReservationIDs: []uint64{9}, Size: 4096,
			ChunkSize: testChunk, Checksums: []uint32{2}, Identity: 9},
		inlineCmd("c", cData),
	)
	r := rand.New(rand.NewPCG(6, 1))
	applyLogs(t, s.fsm, logs[:1], r, 1)
	snap, err := s.fsm.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	snap.Release()

	applyLogs(t, s.fsm, logs[1:3], r, 1)
	aPage, xPage := pageOf("a"), pageOf("x")
	res := applyLogs(t, s.fsm, logs[3:6], r, 1)
	if got := res[2].(Result).Extents; len(got) != 1 || got[0] != aPage {
		t.Fatalf("the reservation got %v, not a's page %v: the test needs the reuse", got, aPage)
	}
	if _, err := s.vol.WriteAt(newer, aPage.Offset); err != nil {
		t.Fatal(err)
	}
	if err := s.vol.SyncData(context.Background()); err != nil { // the upload's data sync
		t.Fatal(err)
	}
	applyLogs(t, s.fsm, logs[6:], r, 2)
	if got := pageOf("c"); got != xPage {
		t.Fatalf("c got %v, not x's page %v: the test needs the reuse", got, xPage)
	}

	s.crash(volume.CrashDropAll, nil)
	if err := os.Remove(filepath.Join(s.dir, "catalog.db")); err != nil {
		t.Fatal(err)
	}
	s.forceRebuild = true
	s.open()
	if m := s.vol.DataMark(); m != 3 {
		t.Fatalf("data mark %d after the crash; want 3 (x, recorded by the upload's sync)", m)
	}
	if err := s.fsm.Restore(io.NopCloser(&sink.Buffer)); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	applyLogs(t, s.fsm, logs, rand.New(rand.NewPCG(6, 2)), 3)
	if got := blobBytes(t, s, "b"); !bytes.Equal(got, newer) {
		t.Error("after restore and replay the streamed blob b was overwritten")
	}
	if got := blobBytes(t, s, "c"); !bytes.Equal(got, cData) {
		t.Error("after restore and replay inline blob c reads back different bytes")
	}
	s.check()
}

// TestInlineBatchWrites: every inline blob of a batch reads back its own
// bytes, whatever the batch's shape: blobs of one page, of several pages,
// replaced in the same batch (their pages freed and taken again by later
// blobs of the batch, so the order of the writes matters), and the garbage
// a page held before never shows.
func TestInlineBatchWrites(t *testing.T) {
	s := newStack(t, memDev, 9)
	r := rand.New(rand.NewPCG(9, 9))
	blob := func(n int) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = byte(r.IntN(255) + 1) // never 0, so stray zero fill shows
		}
		return p
	}
	applyLogs(t, s.fsm, logsOf(Command{Kind: KindInit, Geometry: testGeometry.String()}), r, 1)
	// Garbage on the pages the first batch will take: a blob never reads
	// what its page held before, and no zero fill lands inside a blob.
	junk := bytes.Repeat([]byte{0xEE}, 1<<20)
	if _, err := s.vol.WriteAt(junk, s.vol.Superblock().Layout.HeapOffset); err != nil {
		t.Fatal(err)
	}

	want := map[string][]byte{}
	index := uint64(1)
	batch := func(cmds ...Command) []*raft.Log {
		logs := make([]*raft.Log, len(cmds))
		for i := range cmds {
			index++
			logs[i] = &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: cmds[i].Encode()}
			want[cmds[i].Key] = cmds[i].Data
		}
		return logs
	}
	apply := func(what string, logs []*raft.Log) []any {
		t.Helper()
		out := s.fsm.ApplyBatch(logs)
		for i, res := range out {
			if r := res.(Result); r.Err != nil {
				t.Fatalf("%s: entry %d: %v", what, logs[i].Index, r.Err)
			}
		}
		for k, v := range want {
			if got := blobBytes(t, s, k); !bytes.Equal(got, v) {
				t.Fatalf("%s: blob %q reads back %d bytes that differ from the %d it was given", what, k, len(got), len(v))
			}
		}
		return out
	}

	// Small PUTs of one page each, the common batch.
	var cmds []Command
	for i := range 8 {
		cmds = append(cmds, inlineCmd(fmt.Sprintf("k%d", i), blob(1000+i)))
	}
	apply("fresh pages", batch(cmds...))

	// Mixed sizes: pages of several classes, some blobs on several pages.
	sizes := []int{1024, 100, 4096, 5000, 1, 3000, 9000, 12000}
	cmds = cmds[:0]
	for i, n := range sizes {
		cmds = append(cmds, inlineCmd(fmt.Sprintf("m%d", i), blob(n)))
	}
	apply("mixed sizes", batch(cmds...))

	// Replace every other blob and add new ones in one batch: the old
	// versions' pages are freed as the batch goes and may be handed out
	// again within it.
	cmds = cmds[:0]
	for i := range sizes {
		if i%2 == 0 {
			cmds = append(cmds, inlineCmd(fmt.Sprintf("k%d", i), blob(r.IntN(6000)+1)))
		}
		cmds = append(cmds, inlineCmd(fmt.Sprintf("n%d", i), blob(r.IntN(6000)+1)))
	}
	apply("replaced in the batch", batch(cmds...))

	// A blob written, replaced and its page taken by another, all in one
	// batch: two writes to one page, which must land in log order.
	a := inlineCmd("a", blob(1000))
	a2 := inlineCmd("a", blob(1000))
	bc := inlineCmd("b", blob(1000))
	out := apply("page reused in the batch", batch(a, a2, bc))
	if old := out[1].(Result).Old; old == nil || blobExtents(t, s, "b")[0] != old.Extents[0] {
		t.Fatalf("b was not given the page a's first version had (replaced: %v): the case is not exercised", old)
	}
	s.check()
}

// BenchmarkApplyInlineBatch applies batches of six 1 KiB inline PUTs (the
// batch a node's log appends under 16 clients) on a file-backed volume
// and catalog: the state machine's whole share of a small PUT. "one node":
// commands without a request id, as a one-node group proposes them; "group":
// each with one (ascending, as a coordinator numbers them), so each is
// recorded for deduplication, as on every node of a group; "group,
// pruning": also with the record that falls out of the window pruned at
// each entry, as once a group has applied DedupWindow entries.
func BenchmarkApplyInlineBatch(b *testing.B) {
	for _, bc := range []struct {
		name   string
		ids    bool
		window uint64
	}{{"one node", false, 0}, {"group", true, 0}, {"group, pruning", true, 1024}} {
		b.Run(bc.name, func(b *testing.B) { benchmarkApplyInlineBatch(b, bc.ids, bc.window) })
	}
}

// benchmarkApplyInlineBatch: with window set, the dedup window is that
// many entries, so that every entry also prunes the record that fell out
// of it, as in a group that has run for DedupWindow entries.
func benchmarkApplyInlineBatch(b *testing.B, ids bool, window uint64) {
	s := newStack(b, fileDev, 1)
	s.shutdown()
	s.catalogNoSync = true
	s.open()
	if window > 0 {
		s.fsm.window = window
	}
	r := rand.New(rand.NewPCG(1, 2))
	applyLogs(b, s.fsm, logsOf(Command{Kind: KindInit, Geometry: testGeometry.String()}), r, 1)
	const batch = 6
	data := bytes.Repeat([]byte{7}, 1024)
	index := uint64(1)
	keys := 0
	b.SetBytes(batch * int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		logs := make([]*raft.Log, batch)
		for i := range logs {
			index++
			keys = (keys + 1) % 1024 // replace old blobs: the 16 MiB volume never fills
			c := inlineCmd(fmt.Sprintf("bench/%06d", keys), data)
			if ids {
				c.RequestID = 0xB10B<<48 | index
			}
			logs[i] = &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: c.Encode()}
		}
		for _, res := range s.fsm.ApplyBatch(logs) {
			if r := res.(Result); r.Err != nil {
				b.Fatal(r.Err)
			}
		}
	}
}
