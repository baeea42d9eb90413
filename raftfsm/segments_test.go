package raftfsm

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	walfs "github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

func openWAL(tb testing.TB, dir string, vfs types.VFS, segmentSize int) *wal.WAL {
	tb.Helper()
	w, err := wal.Open(dir, wal.WithSegmentSize(segmentSize), wal.WithSegmentFiler(segment.NewFiler(dir, vfs)))
	if err != nil {
		tb.Fatal(err)
	}
	return w
}

func batchOf(first uint64, n, size int) []*raft.Log {
	logs := make([]*raft.Log, n)
	for i := range logs {
		idx := first + uint64(i)
		logs[i] = &raft.Log{Index: idx, Term: 1, Type: raft.LogCommand, Data: bytes.Repeat([]byte{byte(idx)}, size)}
	}
	return logs
}

// TestZeroAheadLogKeepsEveryEntry: the same appends to a log over
// raft-wal's own file system and to one over zeroAheadFS, with small
// segments (many rotations, appends that cross the zeroed mark, a batch
// larger than the stretch zeroed ahead, the log closed and reopened so
// that its tail segment is appended to again through OpenWriter), leave
// byte-identical segment files, and every entry reads back. Zeroing
// changes no byte a reader sees and grows no file.
func TestZeroAheadLogKeepsEveryEntry(t *testing.T) {
	const segmentSize = 3 << 20 // three stretches of zeroAhead
	var sizes []int
	for i := range 300 {
		sizes = append(sizes, 1000+i*37%5000)
	}
	sizes = append(sizes, 200<<10) // 1.6 MiB in one batch: past the zeroed stretch

	run := func(vfs func() types.VFS) string {
		dir := t.TempDir()
		next := uint64(1)
		appendBatches := func(w *wal.WAL, sizes ...int) {
			for _, size := range sizes {
				batch := batchOf(next, 8, size)
				if err := w.StoreLogs(batch); err != nil {
					t.Fatalf("StoreLogs at %d: %v", next, err)
				}
				next += uint64(len(batch))
			}
		}
		checkAll := func(w *wal.WAL) {
			t.Helper()
			for idx := uint64(1); idx < next; idx++ {
				var l raft.Log
				if err := w.GetLog(idx, &l); err != nil {
					t.Fatalf("GetLog(%d): %v", idx, err)
				}
				if l.Index != idx || len(l.Data) == 0 || !bytes.Equal(l.Data, bytes.Repeat([]byte{byte(idx)}, len(l.Data))) {
					t.Fatalf("entry %d reads back as index %d with %d bytes", idx, l.Index, len(l.Data))
				}
			}
		}
		w := openWAL(t, dir, vfs(), segmentSize)
		appendBatches(w, sizes...)
		checkAll(w)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		w = openWAL(t, dir, vfs(), segmentSize)
		checkAll(w)
		appendBatches(w, sizes[:100]...)
		checkAll(w)
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	plain := run(func() types.VFS { return walfs.New() })
	zeroed := run(func() types.VFS { return newZeroAheadFS() })

	files, err := filepath.Glob(filepath.Join(plain, "*.wal"))
	if err != nil || len(files) < 3 {
		t.Fatalf("%d segment files (%v): the test did not rotate the log", len(files), err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(zeroed, name))
		if err != nil {
			t.Fatalf("the zeroed log has no %s: %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes over zeroAheadFS, %d over raft-wal's file system, and they differ", name, len(got), len(want))
		}
	}
	if others, _ := filepath.Glob(filepath.Join(zeroed, "*.wal")); len(others) != len(files) {
		t.Errorf("%d segment files over zeroAheadFS, %d over raft-wal's file system", len(others), len(files))
	}
}

// TestZeroAheadWritesOnlyPastEveryWrite: the zeros go after the write
// that passes the mark, up to zeroAhead bytes and never past the file's
// size; writes below the mark (raft-wal rewinding after a failed append)
// zero nothing, so nothing written is ever overwritten with zeros.
func TestZeroAheadWritesOnlyPastEveryWrite(t *testing.T) {
	dir := t.TempDir()
	const size = zeroAhead + zeroAhead/2
	f, err := newZeroAheadFS().Create(dir, "seg", size)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zf := f.(*zeroAheadFile)
	write := func(off int64, b byte, n int) {
		t.Helper()
		if _, err := f.WriteAt(bytes.Repeat([]byte{b}, n), off); err != nil {
			t.Fatal(err)
		}
	}
	write(0, 'a', 100)
	if zf.zeroed != 100+zeroAhead {
		t.Fatalf("after the first write the mark is at %d, want %d", zf.zeroed, 100+zeroAhead)
	}
	write(100, 'b', 100)
	write(50, 'c', 10) // a rewind: below the mark
	if zf.zeroed != 100+zeroAhead {
		t.Fatalf("writes below the mark moved it to %d", zf.zeroed)
	}
	write(zeroAhead, 'd', 200) // passes the mark: zeros to the file's end only
	if zf.zeroed != size {
		t.Fatalf("mark at %d, want the file's size %d", zf.zeroed, size)
	}
	got := make([]byte, size)
	if _, err := f.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	want := make([]byte, size)
	copy(want[0:], bytes.Repeat([]byte{'a'}, 100))
	copy(want[100:], bytes.Repeat([]byte{'b'}, 100))
	copy(want[50:], bytes.Repeat([]byte{'c'}, 10))
	copy(want[zeroAhead:], bytes.Repeat([]byte{'d'}, 200))
	if !bytes.Equal(got, want) {
		t.Fatal("the file does not hold exactly what was written, zeros elsewhere")
	}
	if fi, err := os.Stat(filepath.Join(dir, "seg")); err != nil || fi.Size() != size {
		t.Fatalf("file size %v (%v), want %d", fi.Size(), err, size)
	}
}

// BenchmarkLogAppend: one Raft log batch of entries (what a leader
// appends per fsync under a small-PUT load), appended and synced, on
// raft-wal's own file system (fallocated segments) and on zeroAheadFS.
// Compare the two in one run; the difference is the journal commit of an
// extent conversion in nearly every fsync (see zeroAheadFS).
func BenchmarkLogAppend(b *testing.B) {
	for _, fs := range []struct {
		name string
		vfs  func() types.VFS
	}{
		{"fallocated", func() types.VFS { return walfs.New() }},
		{"zero-ahead", func() types.VFS { return newZeroAheadFS() }},
	} {
		for _, batch := range []int{1, 6} {
			b.Run(fmt.Sprintf("%s/batch=%d", fs.name, batch), func(b *testing.B) {
				w := openWAL(b, b.TempDir(), fs.vfs(), wal.DefaultSegmentSize)
				defer w.Close()
				const entry = 1100 // a 1 KiB inline PUT's command
				b.SetBytes(int64(batch * entry))
				next := uint64(1)
				for b.Loop() {
					if err := w.StoreLogs(batchOf(next, batch, entry)); err != nil {
						b.Fatal(err)
					}
					next += uint64(batch)
				}
			})
		}
	}
}
