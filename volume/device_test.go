package volume

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

func TestFileDevice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vol")
	if _, err := CreateFileDevice(path, 0); !errors.Is(err, ErrBadGeometry) {
		t.Fatalf("create with size 0: %v", err)
	}
	dev, err := CreateFileDevice(path, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if dev.Size() != 1<<20 {
		t.Fatalf("size %d", dev.Size())
	}
	if _, err := CreateFileDevice(path, 1<<20); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second create: %v, want ErrExist", err)
	}
	if _, err := dev.WriteAt([]byte("hello"), 1<<20-5); err != nil {
		t.Fatal(err)
	}
	if err := dev.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := dev.Close(); err != nil {
		t.Fatal(err)
	}
	if err := dev.Sync(); err == nil {
		t.Fatal("sync after close succeeded")
	}

	dev, err = OpenFileDevice(path)
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	if dev.Size() != 1<<20 {
		t.Fatalf("reopened size %d", dev.Size())
	}
	b := make([]byte, 10)
	n, err := dev.ReadAt(b, 1<<20-5)
	if n != 5 || !errors.Is(err, io.EOF) || string(b[:5]) != "hello" {
		t.Fatalf("read past end: n=%d err=%v %q", n, err, b[:n])
	}
	if _, err := OpenFileDevice(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("open missing: %v", err)
	}
	if _, err := OpenFileDevice(t.TempDir()); err == nil {
		t.Fatal("opened a directory as a device")
	}
}

func TestMemDeviceGarbage(t *testing.T) {
	a, b, c := NewMemDevice(4096, 7), NewMemDevice(4096, 7), NewMemDevice(4096, 8)
	read := func(d *MemDevice) []byte {
		p := make([]byte, 4096)
		if err := readFull(d, p, 0); err != nil {
			t.Fatal(err)
		}
		return p
	}
	pa := read(a)
	if !bytes.Equal(pa, read(b)) {
		t.Fatal("same seed, different garbage")
	}
	if bytes.Equal(pa, read(c)) {
		t.Fatal("different seeds, same garbage")
	}
	if zeros := bytes.Count(pa, []byte{0}); zeros > 64 {
		t.Fatalf("garbage has %d zero bytes of 4096", zeros)
	}
	// Garbage is durable: a crash does not change it.
	a.Crash(CrashDropAll, nil)
	if !bytes.Equal(pa, read(a)) {
		t.Fatal("crash changed never-written bytes")
	}
}

func TestMemDeviceBounds(t *testing.T) {
	d := NewMemDevice(1024, 1)
	for _, off := range []int64{-1, 1000, 1 << 62} {
		if _, err := d.WriteAt(make([]byte, 100), off); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("write at %d: %v", off, err)
		}
	}
	if _, err := d.ReadAt(make([]byte, 1), -5); !errors.Is(err, ErrOutOfRange) {
		t.Errorf("read at -5: %v", err)
	}
	if n, err := d.ReadAt(make([]byte, 100), 1000); n != 24 || err != io.EOF {
		t.Errorf("read across the end: %d, %v", n, err)
	}
}

// TestMemDeviceCrashDropAll: only synced writes survive, and a Sync covers
// only writes that returned before it started.
func TestMemDeviceCrashDropAll(t *testing.T) {
	d := NewMemDevice(4096, 1)
	mustWrite(t, d, 0, fill(100, 'a'))
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, d, 100, fill(100, 'b'))
	mustWrite(t, d, 50, fill(100, 'c'))
	if d.Unsynced() != 2 {
		t.Fatalf("%d unsynced writes", d.Unsynced())
	}
	before := snapshot(t, NewMemDevice(4096, 1))
	copy(before, fill(100, 'a'))
	d.Crash(CrashDropAll, nil)
	if got := snapshot(t, d); !bytes.Equal(got, before) {
		t.Fatal("unsynced writes survived CrashDropAll")
	}

	// A write issued while a Sync is in flight is not covered by it.
	entered, release := make(chan struct{}), make(chan struct{})
	d.SetSyncHook(func() { entered <- struct{}{}; <-release })
	mustWrite(t, d, 0, fill(10, 'x'))
	done := make(chan error)
	go func() { done <- d.Sync() }()
	recv(t, entered, "sync hook")
	mustWrite(t, d, 10, fill(10, 'y'))
	close(release)
	if err := recv(t, done, "sync"); err != nil {
		t.Fatal(err)
	}
	d.SetSyncHook(nil)
	d.Crash(CrashDropAll, nil)
	got := snapshot(t, d)
	if !bytes.Equal(got[:10], fill(10, 'x')) || bytes.Equal(got[10:20], fill(10, 'y')) {
		t.Fatalf("after crash: %q", got[:20])
	}
}

// TestMemDeviceCrashKeepRandom: every 512-byte piece of every unsynced
// write (split at absolute sector boundaries) survives whole or not at all,
// and over a few seeds both outcomes occur.
func TestMemDeviceCrashKeepRandom(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewSource(seed))
	base := snapshot(t, NewMemDevice(4096, 1))
	kept, lost := 0, 0
	for range 20 {
		d := NewMemDevice(4096, 1)
		mustWrite(t, d, 100, fill(1000, 'n')) // pieces [100,512) [512,1024) [1024,1100)
		mustWrite(t, d, 2048, fill(1024, 'm'))
		d.Crash(CrashKeepRandom, rng)
		got := snapshot(t, d)
		for _, p := range [][2]int{{100, 512}, {512, 1024}, {1024, 1100}, {2048, 2560}, {2560, 3072}} {
			seg := got[p[0]:p[1]]
			switch {
			case bytes.Equal(seg, base[p[0]:p[1]]):
				lost++
			case bytes.Count(seg, seg[:1]) == len(seg) && (seg[0] == 'n' || seg[0] == 'm'):
				kept++
			default:
				t.Fatalf("piece %v partially written: %q", p, seg)
			}
		}
		if !bytes.Equal(got[:100], base[:100]) || !bytes.Equal(got[1100:2048], base[1100:2048]) {
			t.Fatal("bytes outside the writes changed")
		}
	}
	if kept == 0 || lost == 0 {
		t.Fatalf("kept %d, lost %d pieces: not random", kept, lost)
	}
}

// TestMemDeviceCrashTearOne: the writes before the torn one survive, it
// keeps a strict prefix of its sectors, the writes after it are lost.
func TestMemDeviceCrashTearOne(t *testing.T) {
	seed := testSeed(t)
	rng := rand.New(rand.NewSource(seed))
	base := snapshot(t, NewMemDevice(16384, 1))
	tornAt := map[int]bool{}
	for range 40 {
		d := NewMemDevice(16384, 1)
		for i := range 5 {
			mustWrite(t, d, int64(i)*2048, fill(2048, byte('A'+i)))
		}
		d.Crash(CrashTearOne, rng)
		got := snapshot(t, d)
		torn := -1
		for i := range 5 {
			w := got[i*2048 : (i+1)*2048]
			sectors := 0
			for s := 0; s < 4 && bytes.Equal(w[s*512:(s+1)*512], fill(512, byte('A'+i))); s++ {
				sectors++
			}
			if !bytes.Equal(w[sectors*512:], base[i*2048+sectors*512:(i+1)*2048]) {
				t.Fatalf("write %d: not a sector prefix", i)
			}
			switch {
			case torn < 0 && sectors == 4:
			case torn < 0:
				torn = i
			case sectors != 0:
				t.Fatalf("write %d after the torn write %d survived", i, torn)
			}
		}
		if torn < 0 {
			t.Fatal("no write was torn")
		}
		tornAt[torn] = true
	}
	if len(tornAt) < 2 {
		t.Fatalf("always tore the same write: %v", tornAt)
	}
}

func TestMemDeviceCrashAt(t *testing.T) {
	d := NewMemDevice(4096, 1)
	mustWrite(t, d, 0, []byte("a"))
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if d.Ops() != 2 {
		t.Fatalf("ops %d", d.Ops())
	}
	d.SetCrashAt(4) // the second write from here
	mustWrite(t, d, 1, []byte("b"))
	if _, err := d.WriteAt([]byte("c"), 2); !errors.Is(err, ErrCrashed) {
		t.Fatalf("write at the crash point: %v", err)
	}
	if err := d.Sync(); !errors.Is(err, ErrCrashed) {
		t.Fatalf("sync after the crash point: %v", err)
	}
	got := make([]byte, 3)
	if err := readFull(d, got, 0); err != nil || got[1] != 'b' || got[2] == 'c' {
		t.Fatalf("before crash: %q %v", got, err)
	}
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ReadAt(got, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("read after close: %v", err)
	}
	d.Crash(CrashDropAll, nil)
	if err := readFull(d, got, 0); err != nil || got[0] != 'a' || got[1] == 'b' {
		t.Fatalf("after crash: %q %v", got, err)
	}
	mustWrite(t, d, 1, []byte("b")) // usable again, crash point cleared
}

func TestMemDeviceInjectedFaults(t *testing.T) {
	d := NewMemDevice(4096, 1)
	d.FailWritesAfter(1)
	mustWrite(t, d, 0, []byte("a"))
	for range 2 {
		if _, err := d.WriteAt([]byte("b"), 1); !errors.Is(err, ErrInjected) {
			t.Fatalf("write: %v", err)
		}
	}
	d.FailWritesAfter(-1)
	mustWrite(t, d, 1, []byte("b"))
	d.FailSyncAfter(0)
	if err := d.Sync(); !errors.Is(err, ErrInjected) {
		t.Fatalf("sync: %v", err)
	}
	got := make([]byte, 2)
	if d.Unsynced() != 0 || readFull(d, got, 0) != nil || got[0] == 'a' || got[1] == 'b' {
		t.Fatalf("after a failed sync: %d unsynced writes, reads %q; want the writes dropped", d.Unsynced(), got)
	}
	if err := d.Sync(); !errors.Is(err, ErrInjected) {
		t.Fatalf("second sync of a broken disk: %v", err)
	}
	d.FailSyncAfter(-1)
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	d.FailReads(100, 10)
	for _, off := range []int64{95, 100, 109} {
		if _, err := d.ReadAt(make([]byte, 6), off); !errors.Is(err, ErrInjected) {
			t.Fatalf("read at %d of a bad range: %v", off, err)
		}
	}
	if _, err := d.ReadAt(make([]byte, 6), 110); err != nil {
		t.Fatalf("read next to a bad range: %v", err)
	}
	if d.Syncs() != 1 || d.Writes() != 2 {
		t.Fatalf("syncs %d writes %d", d.Syncs(), d.Writes())
	}
}

// TestMemDeviceTearGarbage: the sector at the tear holds neither the old
// nor the new bytes; sectors before it hold the new bytes, after it the old.
func TestMemDeviceTearGarbage(t *testing.T) {
	for seed := range int64(50) {
		d := NewMemDevice(8*memSector, seed)
		old := snapshot(t, d)
		mustWrite(t, d, 0, bytes.Repeat([]byte{0xAB}, 8*memSector))
		d.Crash(CrashTearGarbage, rand.New(rand.NewSource(seed)))
		img := snapshot(t, d)
		garbage := 0
		for s := 0; s < 8; s++ {
			sec, was := img[s*memSector:(s+1)*memSector], old[s*memSector:(s+1)*memSector]
			isNew := bytes.Equal(sec, bytes.Repeat([]byte{0xAB}, memSector))
			switch {
			case garbage == 0 && isNew:
			case garbage == 0 && !bytes.Equal(sec, was):
				garbage++
			case garbage == 1 && bytes.Equal(sec, was):
			default:
				t.Fatalf("seed %d: sector %d is not new before the tear, garbage at it, old after it", seed, s)
			}
		}
		if garbage != 1 {
			t.Fatalf("seed %d: %d garbage sectors, want 1", seed, garbage)
		}
	}
}

func mustWrite(t testing.TB, d io.WriterAt, off int64, p []byte) {
	t.Helper()
	if _, err := d.WriteAt(p, off); err != nil {
		t.Fatalf("write at %d: %v", off, err)
	}
}

func snapshot(t testing.TB, d *MemDevice) []byte {
	t.Helper()
	b := make([]byte, d.Size())
	if err := readFull(d, b, 0); err != nil {
		t.Fatal(err)
	}
	return b
}
