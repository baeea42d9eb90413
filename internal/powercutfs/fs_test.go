package powercutfs

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// testMount is a backing directory and a mount point with one FS mounted
// on them at a time, unmounted in t.Cleanup.
type testMount struct {
	t       *testing.T
	backing string
	dir     string
	fs      *FS
}

func newTestMount(t *testing.T) *testMount {
	t.Helper()
	if err := Available(); err != nil {
		t.Skipf("FUSE is not available here: %v", err)
	}
	m := &testMount{t: t, backing: t.TempDir(), dir: t.TempDir()}
	m.mount()
	t.Cleanup(func() {
		if err := m.fs.Unmount(); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	return m
}

func (m *testMount) mount() {
	m.t.Helper()
	fs, err := Mount(m.backing, m.dir, Options{})
	if err != nil {
		m.t.Fatal(err)
	}
	m.fs = fs
}

// cut cuts power and mounts again.
func (m *testMount) cut(mode Mode, seed uint64) Report {
	m.t.Helper()
	rep, err := m.fs.Cut(mode, seed)
	if err != nil {
		m.t.Fatalf("cut: %v", err)
	}
	m.mount()
	return rep
}

func (m *testMount) path(name string) string { return filepath.Join(m.dir, name) }

// create creates a file; close it before a cut (an open file keeps the
// mount busy). A test that fails first leaves it to t.Cleanup, which
// closes it before the mount's cleanup unmounts.
func (m *testMount) create(name string) *os.File {
	m.t.Helper()
	f, err := os.OpenFile(m.path(name), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		m.t.Fatal(err)
	}
	m.t.Cleanup(func() { f.Close() }) // an error: closed already
	return f
}

func (m *testMount) syncDir(name string) {
	m.t.Helper()
	d, err := os.Open(m.path(name))
	if err != nil {
		m.t.Fatal(err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		m.t.Fatalf("fsync directory %s: %v", name, err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, f *os.File, p []byte, off int64) {
	t.Helper()
	if _, err := f.WriteAt(p, off); err != nil {
		t.Fatal(err)
	}
}

func (m *testMount) requireContent(name string, want []byte) {
	m.t.Helper()
	got, err := os.ReadFile(m.path(name))
	if err != nil {
		m.t.Fatalf("after the cut: %v", err)
	}
	if !bytes.Equal(got, want) {
		m.t.Fatalf("after the cut %s holds %d bytes %q..., want %d bytes %q...", name, len(got), got[:min(len(got), 16)], len(want), want[:min(len(want), 16)])
	}
}

func (m *testMount) requireAbsent(name string) {
	m.t.Helper()
	if _, err := os.Stat(m.path(name)); !errors.Is(err, fs.ErrNotExist) {
		m.t.Fatalf("after the cut %s: stat %v, want it absent", name, err)
	}
}

// TestSyncedSurvivesUnsyncedDoesNot is the contract: after a DropAll cut a
// file holds exactly what its last fsync covered. It fails if the cut
// forgets to drop unsynced writes (or size changes), or if they reach the
// backing directory before their fsync.
func TestSyncedSurvivesUnsyncedDoesNot(t *testing.T) {
	for _, tc := range []struct {
		name     string
		datasync bool
	}{{"fsync", false}, {"fdatasync", true}} {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestMount(t)
			f := m.create("f")
			synced := bytes.Repeat([]byte("synced.."), 1000)
			writeAt(t, f, synced, 0)
			if tc.datasync {
				must(t, unix.Fdatasync(int(f.Fd())))
			} else {
				must(t, f.Sync())
			}
			m.syncDir(".")
			// Unsynced: an overwrite, an append, and a truncate that would
			// cut synced bytes.
			writeAt(t, f, []byte("LOST"), 100)
			writeAt(t, f, []byte("appended"), int64(len(synced)))
			must(t, f.Truncate(5000))
			writeAt(t, f, []byte("LOST"), 6000)
			must(t, f.Close())
			if data, _ := m.fs.Pending(); data != 4 {
				t.Fatalf("%d unsynced data changes, want 4", data)
			}
			// Reads see the unsynced state; the backing file does not have it.
			want := append(bytes.Clone(synced[:5000]), make([]byte, 1000)...)
			want = append(want, "LOST"...)
			copy(want[100:], "LOST")
			m.requireContent("f", want)
			if b, err := os.ReadFile(filepath.Join(m.backing, "tree", "f")); err != nil || !bytes.Equal(b, synced) {
				t.Fatalf("backing file: %v, %d bytes; want only the synced %d bytes", err, len(b), len(synced))
			}
			rep := m.cut(DropAll, 1)
			if rep.DataOps != 4 || rep.Dropped != 4 || rep.Kept+rep.Torn != 0 {
				t.Fatalf("report %v, want 4 changes dropped", rep)
			}
			m.requireContent("f", synced)
		})
	}
}

// A new file's name survives only once its directory is fsynced, whatever
// was synced of its data; a directory fsync also carries the earlier ops.
func TestNameNeedsDirectoryFsync(t *testing.T) {
	m := newTestMount(t)
	must(t, os.Mkdir(m.path("d"), 0o755))
	m.syncDir(".")
	for _, name := range []string{"d/named", "d/unnamed"} {
		f := m.create(name)
		writeAt(t, f, []byte(name), 0)
		must(t, f.Sync())
		must(t, f.Close())
	}
	m.syncDir("d") // both creates are durable now
	must(t, os.Rename(m.path("d/unnamed"), m.path("d/renamed")))
	must(t, os.Mkdir(m.path("d/sub"), 0o755))
	g := m.create("d/nodata")
	writeAt(t, g, []byte("never synced"), 0)
	must(t, g.Close())
	m.syncDir("d") // the rename, the mkdir and the create; not g's data
	h := m.create("d/late")
	writeAt(t, h, []byte("late"), 0)
	must(t, h.Sync()) // the file's fsync does not make its name durable
	must(t, h.Close())
	must(t, os.Remove(m.path("d/named"))) // not synced

	m.cut(DropAll, 1)
	m.requireContent("d/named", []byte("d/named"))
	m.requireAbsent("d/unnamed")
	m.requireContent("d/renamed", []byte("d/unnamed"))
	if st, err := os.Stat(m.path("d/sub")); err != nil || !st.IsDir() {
		t.Fatalf("d/sub after the cut: %v %v", st, err)
	}
	m.requireContent("d/nodata", nil)
	m.requireAbsent("d/late")
}

// TestDirectoryOps checks the namespace log op by op: what a directory
// fsync makes durable, and that a cut keeps a prefix of the rest.
func TestDirectoryOps(t *testing.T) {
	t.Run("unsynced unlink and rename are undone", func(t *testing.T) {
		m := newTestMount(t)
		for _, name := range []string{"a", "b"} {
			f := m.create(name)
			writeAt(t, f, []byte(name), 0)
			must(t, f.Sync())
			must(t, f.Close())
		}
		must(t, os.Mkdir(m.path("d"), 0o755))
		m.syncDir(".")
		must(t, os.Remove(m.path("a")))
		must(t, os.Rename(m.path("b"), m.path("d/b")))
		must(t, os.Remove(m.path("d/b")))
		must(t, os.Remove(m.path("d")))
		m.cut(DropAll, 1)
		m.requireContent("a", []byte("a"))
		m.requireContent("b", []byte("b"))
		if ents, err := os.ReadDir(m.path("d")); err != nil || len(ents) != 0 {
			t.Fatalf("d after the cut: %v %v, want an empty directory", ents, err)
		}
	})
	t.Run("synced directory ops survive", func(t *testing.T) {
		m := newTestMount(t)
		f := m.create("x")
		writeAt(t, f, []byte("x"), 0)
		must(t, f.Sync())
		must(t, f.Close())
		must(t, os.Mkdir(m.path("d"), 0o755))
		must(t, os.Rename(m.path("x"), m.path("d/x")))
		must(t, os.Mkdir(m.path("gone"), 0o755))
		must(t, os.Remove(m.path("gone")))
		m.syncDir(".") // the last op that touched "." is the rmdir: all four are durable
		m.cut(DropAll, 1)
		m.requireContent("d/x", []byte("x"))
		m.requireAbsent("x")
		m.requireAbsent("gone")
	})
	t.Run("atomic replace", func(t *testing.T) {
		// The pattern blobnode's format and hashicorp's snapshot store use:
		// write a temporary file or directory, fsync it, rename it into
		// place, fsync the parent.
		for _, syncParent := range []bool{false, true} {
			m := newTestMount(t)
			old := m.create("final")
			writeAt(t, old, []byte("old"), 0)
			must(t, old.Sync())
			must(t, old.Close())
			m.syncDir(".")
			must(t, os.Mkdir(m.path("snap.tmp"), 0o755))
			f := m.create("snap.tmp/state")
			writeAt(t, f, []byte("state"), 0)
			must(t, f.Sync())
			must(t, f.Close())
			tmp := m.create("final.tmp")
			writeAt(t, tmp, []byte("new"), 0)
			must(t, tmp.Sync())
			must(t, tmp.Close())
			must(t, os.Rename(m.path("final.tmp"), m.path("final")))
			must(t, os.Rename(m.path("snap.tmp"), m.path("snap")))
			if syncParent {
				m.syncDir(".")
			}
			m.cut(DropAll, 1)
			if syncParent {
				m.requireContent("final", []byte("new"))
				m.requireContent("snap/state", []byte("state"))
			} else {
				m.requireContent("final", []byte("old"))
				m.requireAbsent("snap.tmp")
				m.requireAbsent("snap")
			}
			m.requireAbsent("final.tmp")
		}
	})
	t.Run("a cut keeps a prefix of the namespace log", func(t *testing.T) {
		const files = 6
		seen := map[int]bool{}
		for seed := range uint64(12) {
			m := newTestMount(t)
			for i := range files {
				f := m.create(string(rune('a' + i)))
				must(t, f.Close())
			}
			rep := m.cut(KeepRandom, seed)
			k := 0
			for k < files {
				if _, err := os.Stat(m.path(string(rune('a' + k)))); err != nil {
					break
				}
				k++
			}
			for i := k; i < files; i++ {
				m.requireAbsent(string(rune('a' + i)))
			}
			if k != rep.MetaKept || rep.MetaOps != files {
				t.Fatalf("seed %d: the first %d files survived, report %v", seed, k, rep)
			}
			seen[k] = true
		}
		if len(seen) < 3 {
			t.Errorf("12 seeds kept only prefixes of lengths %v", seen)
		}
	})
}

// Unlinked but open, a file keeps its data and may still be written.
func TestUnlinkedOpenFile(t *testing.T) {
	m := newTestMount(t)
	f := m.create("f")
	writeAt(t, f, []byte("hello"), 0)
	must(t, os.Remove(m.path("f")))
	writeAt(t, f, []byte("!"), 5)
	must(t, f.Sync())
	b := make([]byte, 6)
	if _, err := f.ReadAt(b, 0); err != nil || string(b) != "hello!" {
		t.Fatalf("read the unlinked file: %q %v", b, err)
	}
	must(t, f.Close())
	m.syncDir(".")
	m.cut(DropAll, 1)
	m.requireAbsent("f")
	if ents, _ := os.ReadDir(filepath.Join(m.backing, "orphans")); len(ents) != 0 {
		t.Fatalf("orphan area after a mount: %v, want it empty", ents)
	}
}

// A torn write through the mount: a prefix of sectors, then perhaps a
// garbage piece, then the old bytes.
func TestTearThroughMount(t *testing.T) {
	old := bytes.Repeat([]byte{0xAA}, 8*SectorSize)
	neu := bytes.Repeat([]byte{0x55}, 6*SectorSize)
	bounds := sectorsOf(SectorSize, len(neu))
	var torn, garbage int
	for seed := range uint64(16) {
		m := newTestMount(t)
		f := m.create("f")
		writeAt(t, f, old, 0)
		must(t, f.Sync())
		m.syncDir(".")
		writeAt(t, f, neu, SectorSize)
		must(t, f.Close())
		rep := m.cut(Tear, seed)
		got, err := os.ReadFile(m.path("f"))
		if err != nil || len(got) != len(old) {
			t.Fatalf("seed %d: %d bytes, %v", seed, len(got), err)
		}
		k, g := classify(got[SectorSize:SectorSize+len(neu)], 0x55, 0xAA, bounds)
		if k < 0 || !bytes.Equal(got[:SectorSize], old[:SectorSize]) || !bytes.Equal(got[7*SectorSize:], old[:SectorSize]) {
			t.Fatalf("seed %d: %x is not old, a prefix of new sectors, maybe garbage, old", seed, got)
		}
		if rep.Torn > 0 {
			torn++
		}
		if g {
			garbage++
		}
	}
	if torn == 0 || garbage == 0 {
		t.Errorf("16 seeds: %d torn, %d with garbage; want some of each", torn, garbage)
	}
}

// A clean unmount makes everything durable.
func TestCleanUnmountKeepsAll(t *testing.T) {
	m := newTestMount(t)
	must(t, os.MkdirAll(m.path("a/b"), 0o755))
	f := m.create("a/b/f")
	writeAt(t, f, []byte("kept"), 0)
	must(t, f.Close())
	must(t, m.fs.Unmount())
	m.mount()
	m.requireContent("a/b/f", []byte("kept"))
}

// After a cut the mount fails every operation at once, before it is gone.
func TestCutFailsEveryOperation(t *testing.T) {
	m := newTestMount(t)
	f := m.create("f")
	writeAt(t, f, []byte("x"), 0)
	m.fs.s.mu.Lock()
	m.fs.s.dead = true // what Cut does first
	m.fs.s.mu.Unlock()
	if _, err := f.WriteAt([]byte("y"), 0); !errors.Is(err, syscall.EIO) {
		t.Fatalf("write after the cut: %v, want EIO", err)
	}
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("fsync after the cut: %v, want EIO", err)
	}
	f.Close() // EIO or not: the descriptor is released either way
	if _, err := m.fs.Cut(Mode(0), 1); err == nil {
		t.Fatal("Cut with mode 0: no error")
	}
	m.cut(DropAll, 1)
	m.requireAbsent("f")
}

// The FUSE server's goroutines are the FS's: they are gone once it is
// unmounted or cut.
func TestNoGoroutineOutlivesTheMount(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("FUSE is not available here: %v", err)
	}
	backing, dir := t.TempDir(), t.TempDir()
	before := runtime.NumGoroutine()
	for i, end := range []func(*FS) error{
		func(fs *FS) error { return fs.Unmount() },
		func(fs *FS) error { _, err := fs.Cut(Tear, 1); return err },
	} {
		fs, err := Mount(backing, dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		must(t, os.WriteFile(filepath.Join(dir, "f"), []byte("x"), 0o644))
		if err := end(fs); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
			<-time.After(time.Millisecond) // poll: goroutines end without telling
		}
		if n := runtime.NumGoroutine(); n > before {
			buf := make([]byte, 1<<16)
			t.Fatalf("end %d: %d goroutines, %d before the mount:\n%s", i, n, before, buf[:runtime.Stack(buf, true)])
		}
	}
}

// mmapChildEnv names the file that TestMmapChild checks. A process must
// never fault on a mapping of a mount it serves itself: the faulting
// thread waits for the FUSE server, which cannot run while the Go runtime
// waits for that thread to stop the world. So the mapping lives in a child
// process (this test binary, run again).
const mmapChildEnv = "POWERCUTFS_MMAP_CHILD"

// bbolt's pattern under load: pages written with pwrite and read through a
// shared mapping, while other handles open the file and stat it (bbolt's
// snapshot streams the database through its own descriptor). The mapping
// must never show a page older than a write that has returned: the
// kernel's page cache must not be invalidated behind a write whose bytes
// it holds but the FS has not yet received (the kernel then fetches the
// page again from the FS and caches the old bytes for good).
func TestMmapCoherentUnderConcurrentOpens(t *testing.T) {
	m := newTestMount(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestMmapChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), mmapChildEnv+"="+m.path("db"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("child:\n%s", out)
}

// TestMmapChild is the child process of TestMmapCoherentUnderConcurrentOpens.
func TestMmapChild(t *testing.T) {
	path := os.Getenv(mmapChildEnv)
	if path == "" {
		t.Skip("the child process of TestMmapCoherentUnderConcurrentOpens")
	}
	const (
		pages  = 64
		rounds = 100
	)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	must(t, f.Truncate(pages*pageSize))
	mem, err := unix.Mmap(int(f.Fd()), 0, pages*pageSize, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(mem)

	var published [pages]atomic.Uint64 // each page's newest version whose write returned
	done := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan string, 2)
	report := func(s string) {
		select {
		case errs <- s:
		default:
		}
	}
	wg.Add(2)
	go func() { // reader: every page is at least as new as published
		defer wg.Done()
		for i := 0; ; i = (i + 7) % pages {
			select {
			case <-done:
				return
			default:
			}
			want := published[i].Load()
			if got := binary.LittleEndian.Uint64(mem[i*pageSize:]); got < want {
				report(fmt.Sprintf("page %d reads version %d through the mapping after version %d was written", i, got, want))
				return
			}
		}
	}()
	go func() { // opener: what bbolt's snapshot and Stat do meanwhile
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			default:
			}
			g, err := os.Open(path)
			if err != nil {
				report(err.Error())
				return
			}
			g.Stat()
			g.Close()
		}
	}()
	page := make([]byte, pageSize)
	for v := uint64(1); v <= rounds && len(errs) == 0; v++ {
		for i := range pages {
			binary.LittleEndian.PutUint64(page, v)
			if _, err := f.WriteAt(page, int64(i*pageSize)); err != nil {
				t.Fatal(err)
			}
			published[i].Store(v)
		}
	}
	close(done)
	wg.Wait()
	select {
	case e := <-errs:
		t.Fatal(e)
	default:
	}
	st, err := f.Stat()
	if err != nil || st.Size() != pages*pageSize {
		t.Fatalf("stat: %v %v", st, err)
	}
}

// TestFailNextFsync: an armed failure fails the next fsync of a file of
// that name once, with EIO, and drops its unsynced writes for good: a
// later fsync succeeds but does not make them durable, reads still see
// them, and neither a cut nor a clean unmount brings them back. Other
// files, and their fsyncs, are not affected.
func TestFailNextFsync(t *testing.T) {
	for _, end := range []string{"cut", "unmount"} {
		t.Run(end, func(t *testing.T) {
			m := newTestMount(t)
			must(t, os.Mkdir(m.path("d"), 0o755))
			f, other := m.create("d/volume.blob"), m.create("other")
			synced := bytes.Repeat([]byte("synced.."), 1024)
			writeAt(t, f, synced, 0)
			writeAt(t, other, synced, 0)
			must(t, f.Sync())
			must(t, other.Sync())
			m.syncDir("d")
			m.syncDir(".")

			fault := m.fs.FailNextFsync("volume.blob")
			if fault.Path() != "" || fault.Dropped() != nil {
				t.Fatal("the fault reports a failure before any fsync")
			}
			writeAt(t, f, []byte("LOST1"), 100)
			writeAt(t, f, []byte("LOST2"), int64(len(synced))) // grows the file
			writeAt(t, other, []byte("other"), 100)
			must(t, other.Sync()) // another file's fsync does not take it
			select {
			case <-fault.Fired():
				t.Fatal("the fault fired on another file's fsync")
			default:
			}
			if err := unix.Fdatasync(int(f.Fd())); !errors.Is(err, syscall.EIO) {
				t.Fatalf("fdatasync after arming: %v, want EIO", err)
			}
			select {
			case <-fault.Fired():
			default:
				t.Fatal("the fsync failed but the fault did not fire")
			}
			if p, ds := fault.Path(), fault.Datasync(); p != filepath.Join("d", "volume.blob") || !ds {
				t.Fatalf("fault fired on %q (datasync %v), want d/volume.blob, an fdatasync", p, ds)
			}
			if got := fault.Dropped(); len(got) != 2 || got[0].Off != 100 || string(got[0].Data) != "LOST1" ||
				got[1].Off != int64(len(synced)) || string(got[1].Data) != "LOST2" {
				t.Fatalf("dropped %v, want the two unsynced writes", got)
			}
			if data, _ := m.fs.Pending(); data != 0 {
				t.Fatalf("%d unsynced changes after the failed fsync, want 0 (dropped)", data)
			}
			// Reads still see the dropped writes (the page cache keeps them).
			seen := append(bytes.Clone(synced), "LOST2"...)
			copy(seen[100:], "LOST1")
			m.requireContent("d/volume.blob", seen)

			// Once only: the next fsync succeeds and makes durable only what
			// was written after the failure.
			writeAt(t, f, []byte("KEPT"), 200)
			must(t, f.Sync())
			writeAt(t, f, []byte("unsynced"), 300)
			must(t, f.Close())
			must(t, other.Close())
			copy(seen[200:], "KEPT")
			copy(seen[300:], "unsynced")
			m.requireContent("d/volume.blob", seen)

			if end == "cut" {
				m.cut(DropAll, 1)
			} else {
				must(t, m.fs.Unmount()) // makes "unsynced" durable, not the dropped writes
				m.mount()
			}
			want := bytes.Clone(synced)
			copy(want[200:], "KEPT")
			if end == "unmount" {
				copy(want[300:], "unsynced")
			}
			m.requireContent("d/volume.blob", want)
			wantOther := bytes.Clone(synced)
			copy(wantOther[100:], "other")
			m.requireContent("other", wantOther)
		})
	}
}

// Faults fire in the order armed, one fsync each, and only on a file of
// that name; an fsync of a directory of that name does not take one.
func TestFailNextFsyncOnce(t *testing.T) {
	m := newTestMount(t)
	must(t, os.Mkdir(m.path("x"), 0o755))
	f := m.create("x/x")
	writeAt(t, f, []byte("a"), 0)
	first, second := m.fs.FailNextFsync("x"), m.fs.FailNextFsync("x")
	m.syncDir("x") // a directory: not the file the faults are for
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("first fsync: %v, want EIO", err)
	}
	if len(first.Dropped()) != 1 || second.Path() != "" {
		t.Fatalf("after one failed fsync: first dropped %v, second fired on %q", first.Dropped(), second.Path())
	}
	if err := f.Sync(); !errors.Is(err, syscall.EIO) {
		t.Fatalf("second fsync: %v, want EIO", err)
	}
	if second.Path() != "x/x" || len(second.Dropped()) != 0 {
		t.Fatalf("second fault: path %q, dropped %v; want x/x, nothing (nothing was unsynced)", second.Path(), second.Dropped())
	}
	if err := f.Sync(); err != nil {
		t.Fatalf("third fsync: %v, want success", err)
	}
	must(t, f.Close())
}

// TestReadErrorsInArmedRange: while FailReads is armed, a read of a file
// of that name that needs a page overlapping the range fails with EIO,
// whether the kernel had the page cached (FailReads drops it) or not;
// reads of the other pages, and of another file, succeed, also when a
// failed readahead covered them; nothing is lost: once cleared, the file
// reads back whole.
func TestReadErrorsInArmedRange(t *testing.T) {
	for _, cached := range []bool{true, false} {
		t.Run(map[bool]string{true: "cached", false: "uncached"}[cached], func(t *testing.T) {
			m := newTestMount(t)
			must(t, os.Mkdir(m.path("d"), 0o755))
			f, other := m.create("d/volume.blob"), m.create("other")
			content := make([]byte, 64*pageSize)
			for i := range content {
				content[i] = byte(i/pageSize) ^ byte(i)
			}
			writeAt(t, f, content, 0)
			writeAt(t, other, content, 0)
			must(t, f.Sync()) // durable or not makes no difference; half of it unsynced
			writeAt(t, f, content[32*pageSize:], 32*pageSize)
			must(t, f.Close())
			must(t, other.Close())
			if cached {
				// Written and read through the mount: every page is cached.
				m.requireContent("d/volume.blob", content)
			} else {
				// A new mount starts with an empty page cache.
				must(t, m.fs.Unmount())
				m.mount()
			}

			// Pages 20 to 22 overlap the range.
			const off, length = 20*pageSize + 100, 2 * pageSize
			fault, err := m.fs.FailReads("volume.blob", off, length)
			if err != nil {
				t.Fatal(err)
			}
			rf, err := os.Open(m.path("d/volume.blob"))
			must(t, err)
			defer rf.Close()
			read := func(at int64, n int) ([]byte, error) {
				b := make([]byte, n)
				k, err := rf.ReadAt(b, at)
				return b[:k], err
			}
			// The pages around it first: uncached, their readahead takes in
			// the failing pages, and the kernel reads them again alone.
			for _, page := range []int64{19, 23, 0, 63} {
				if b, err := read(page*pageSize, pageSize); err != nil || !bytes.Equal(b, content[page*pageSize:][:pageSize]) {
					t.Fatalf("read page %d, outside the range: %v (%d bytes, right ones: %v)", page, err, len(b), bytes.Equal(b, content[page*pageSize:][:len(b)]))
				}
			}
			for _, at := range []int64{
				off, off + length - 1, // the range's first and last bytes
				20 * pageSize,    // a byte of a failing page before the range
				off + length + 1, // and after it
			} {
				if b, err := read(at, 1); !errors.Is(err, syscall.EIO) {
					t.Fatalf("read at %d, of a page overlapping [%d, %d): %v (%d bytes), want EIO", at, off, off+length, err, len(b))
				}
			}
			// A read that starts before the range gets the bytes before it,
			// then EIO.
			b, err := read(16*pageSize, 8*pageSize)
			if !errors.Is(err, syscall.EIO) || !bytes.Equal(b, content[16*pageSize:][:len(b)]) || len(b) > 4*pageSize {
				t.Fatalf("read across the range: %v after %d bytes (right ones: %v), want EIO after at most the 4 pages before it",
					err, len(b), bytes.Equal(b, content[16*pageSize:][:len(b)]))
			}
			if _, err := os.ReadFile(m.path("d/volume.blob")); !errors.Is(err, syscall.EIO) {
				t.Fatalf("read the whole file: %v, want EIO", err)
			}
			m.requireContent("other", content) // another name
			failed := fault.Failed()
			if failed == 0 {
				t.Fatal("reads failed, but the fault counted none")
			}

			m.fs.ClearReadFaults()
			m.requireContent("d/volume.blob", content)
			if fault.Failed() != failed {
				t.Fatalf("the fault counted %d failed reads after it was cleared", fault.Failed()-failed)
			}
			// The second half was never synced: a clean unmount makes it
			// durable, and the new mount reads it all.
			must(t, rf.Close())
			must(t, m.fs.Unmount())
			m.mount()
			m.requireContent("d/volume.blob", content)
		})
	}
}
