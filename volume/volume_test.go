package volume

import (
	"bytes"
	"context"
	"errors"
	"math"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestDataPathBounds(t *testing.T) {
	_, v := newMemVolume(t, mediumOpts(), 1)
	l := v.Superblock().Layout
	end := l.HeapOffset + l.HeapSize
	for _, off := range []int64{l.HeapOffset, end - 4096} {
		p := fill(4096, byte(off))
		if n, err := v.WriteAt(p, off); n != 4096 || err != nil {
			t.Fatalf("write at %d: %d %v", off, n, err)
		}
		got := make([]byte, 4096)
		if n, err := v.ReadAt(got, off); n != 4096 || err != nil || !bytes.Equal(got, p) {
			t.Fatalf("read at %d: %d %v", off, n, err)
		}
	}
	for _, off := range []int64{-1, 0, l.StateOffset, l.HeapOffset - 1, end - 4095, end, math.MaxInt64 - 10, math.MinInt64} {
		if _, err := v.WriteAt(make([]byte, 4096), off); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("write at %d: %v", off, err)
		}
		if _, err := v.ReadAt(make([]byte, 4096), off); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("read at %d: %v", off, err)
		}
	}
	for _, off := range []int64{l.HeapOffset - 1, l.StateOffset + l.StateSize - 10, l.JournalOffset} {
		if err := v.ReadMeta(make([]byte, 20), off); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("read meta at %d: %v", off, err)
		}
		if err := v.WriteMetaDirect(make([]byte, 20), off); !errors.Is(err, ErrOutOfRange) {
			t.Errorf("write meta at %d: %v", off, err)
		}
	}
	if err := v.WriteMetaDirect([]byte("direct"), l.StateOffset); err != nil {
		t.Fatal(err)
	}
	checkMeta(t, v, l.StateOffset, []byte("direct"))
}

func TestDataDurableAfterSyncData(t *testing.T) {
	dev, v := newMemVolume(t, mediumOpts(), 1)
	off := v.Superblock().Layout.HeapOffset
	mustWrite(t, v, off, fill(8192, 'd'))
	if err := v.SyncData(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, v, off+8192, fill(4096, 'u')) // never synced
	crashClose(t, dev, v, CrashDropAll, nil)
	v = reopen(t, dev)
	got := make([]byte, 8192+4096)
	if _, err := v.ReadAt(got, off); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:8192], fill(8192, 'd')) {
		t.Fatal("synced data lost")
	}
	if bytes.Equal(got[8192:], fill(4096, 'u')) {
		t.Fatal("unsynced data survived CrashDropAll: the test double is not crashing")
	}
}

// TestSyncDataSharesSyncs holds one Sync in flight while N more callers
// arrive; they must all be served by one more Sync.
func TestSyncDataSharesSyncs(t *testing.T) {
	const waiters = 16
	dev, v := newMemVolume(t, mediumOpts(), 1)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	var first sync.Once
	dev.SetSyncHook(func() {
		block := false
		first.Do(func() { block = true })
		if block {
			entered <- struct{}{}
			<-release
		}
	})
	base := dev.Syncs()
	errs := make(chan error, waiters+1)
	go func() { errs <- v.SyncData(context.Background()) }()
	recv(t, entered, "the first sync")
	for range waiters {
		go func() { errs <- v.SyncData(context.Background()) }()
	}
	waitFor(t, "all callers to wait", func() bool {
		v.ds.mu.Lock()
		defer v.ds.mu.Unlock()
		return v.ds.waiting == waiters
	})
	close(release)
	for range waiters + 1 {
		if err := recv(t, errs, "SyncData"); err != nil {
			t.Fatal(err)
		}
	}
	if got := dev.Syncs() - base; got != 2 {
		t.Fatalf("%d callers used %d syncs, want 2", waiters+1, got)
	}
	if st := v.SyncStats(); st.Calls != waiters+1 || st.Syncs != 2 {
		t.Fatalf("stats %+v", st)
	}
}

// TestSyncDataWaitsForLaterSync: a caller arriving during a Sync does not
// return on that Sync's completion (it may not cover its writes).
func TestSyncDataWaitsForLaterSync(t *testing.T) {
	dev, v := newMemVolume(t, mediumOpts(), 1)
	off := v.Superblock().Layout.HeapOffset
	entered := make(chan int, 2)
	release := make(chan struct{}, 2)
	var n atomic.Int32
	dev.SetSyncHook(func() {
		entered <- int(n.Add(1))
		<-release
	})
	first := make(chan error, 1)
	go func() { first <- v.SyncData(context.Background()) }()
	recv(t, entered, "first sync")
	mustWrite(t, v, off, fill(100, 'w'))
	second := make(chan error, 1)
	go func() { second <- v.SyncData(context.Background()) }()
	waitFor(t, "second caller to wait", func() bool {
		v.ds.mu.Lock()
		defer v.ds.mu.Unlock()
		return v.ds.waiting == 1
	})
	release <- struct{}{}
	if err := recv(t, first, "first SyncData"); err != nil {
		t.Fatal(err)
	}
	if got := recv(t, entered, "second sync"); got != 2 {
		t.Fatalf("sync number %d", got)
	}
	select {
	case err := <-second:
		t.Fatalf("second caller returned (%v) before its own sync completed", err)
	default:
	}
	release <- struct{}{}
	if err := recv(t, second, "second SyncData"); err != nil {
		t.Fatal(err)
	}
	dev.SetSyncHook(nil)
	crashClose(t, dev, v, CrashDropAll, nil)
	v = reopen(t, dev)
	got := make([]byte, 100)
	if _, err := v.ReadAt(got, off); err != nil || !bytes.Equal(got, fill(100, 'w')) {
		t.Fatalf("data written before the second SyncData lost: %v", err)
	}
}

func TestSyncDataContextCancel(t *testing.T) {
	dev, v := newMemVolume(t, mediumOpts(), 1)
	entered, release := make(chan struct{}, 1), make(chan struct{})
	dev.SetSyncHook(func() {
		entered <- struct{}{}
		<-release
	})
	leader := make(chan error, 1)
	go func() { leader <- v.SyncData(context.Background()) }()
	recv(t, entered, "sync")
	ctx, cancel := context.WithCancel(context.Background())
	waiter := make(chan error, 1)
	go func() { waiter <- v.SyncData(ctx) }()
	waitFor(t, "caller to wait", func() bool {
		v.ds.mu.Lock()
		defer v.ds.mu.Unlock()
		return v.ds.waiting == 1
	})
	cancel()
	if err := recv(t, waiter, "cancelled SyncData"); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait: %v", err)
	}
	close(release)
	if err := recv(t, leader, "leader"); err != nil {
		t.Fatal(err)
	}
	// A caller whose context is already done does not start a sync.
	if err := v.SyncData(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("SyncData with a done context: %v", err)
	}
}

func TestSyncDataErrorIsSticky(t *testing.T) {
	dev, v := newMemVolume(t, mediumOpts(), 1)
	dev.FailSyncAfter(0)
	if err := v.SyncData(context.Background()); !errors.Is(err, ErrInjected) {
		t.Fatalf("first: %v", err)
	}
	dev.FailSyncAfter(-1)
	if err := v.SyncData(context.Background()); !errors.Is(err, ErrInjected) {
		t.Fatalf("after the device recovered: %v, want the sticky error", err)
	}
}

// TestCloseStopsJournalGoroutine: Close returns only after the commit
// goroutine has exited, and everything after Close fails with ErrClosed.
func TestCloseStopsJournalGoroutine(t *testing.T) {
	dev, v := newMemVolume(t, mediumOpts(), 1)
	j := v.Journal()
	select {
	case <-j.done:
		t.Fatal("journal goroutine not running")
	default:
	}
	stateOff := v.Superblock().Layout.StateOffset
	// Submitted but not waited for: Close must still commit it.
	var txn Txn
	txn.Write(stateOff, []byte("pending"))
	c := j.Submit(&txn)
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-j.done:
	default:
		t.Fatal("Close returned with the journal goroutine running")
	}
	if err := c.Wait(context.Background()); err != nil {
		t.Fatalf("txn submitted before Close: %v", err)
	}
	wantErr(t, v.Close(), ErrClosed)
	wantErr(t, j.Commit(context.Background(), &txn), ErrClosed)
	wantErr(t, j.Checkpoint(context.Background()), ErrClosed)
	wantErr(t, v.ReadMeta(make([]byte, 1), stateOff), ErrClosed)
	wantErr(t, v.WriteMetaDirect(make([]byte, 1), stateOff), ErrClosed)
	_, err := v.ReadAt(make([]byte, 1), v.Superblock().Layout.HeapOffset)
	wantErr(t, err, ErrClosed)
	_, err = v.WriteAt(make([]byte, 1), v.Superblock().Layout.HeapOffset)
	wantErr(t, err, ErrClosed)
	wantErr(t, v.SyncData(context.Background()), ErrClosed)
	wantErr(t, v.Sync(), ErrClosed)
	if _, err := dev.ReadAt(make([]byte, 1), 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("Close did not close the device: %v", err)
	}
	v = reopen(t, dev)
	checkMeta(t, v, stateOff, []byte("pending"))
}

// TestCloseStopsGoroutineAfterDeviceError: a journal that failed still
// stops its goroutine on Close.
func TestCloseStopsGoroutineAfterDeviceError(t *testing.T) {
	dev, v := newMemVolume(t, mediumOpts(), 1)
	dev.FailWritesAfter(0)
	var txn Txn
	txn.Write(v.Superblock().Layout.StateOffset, []byte("x"))
	wantErr(t, v.Journal().Commit(context.Background(), &txn), ErrInjected)
	wantErr(t, v.Close(), ErrInjected)
	select {
	case <-v.Journal().done:
	case <-time.After(10 * time.Second):
		t.Fatal("journal goroutine still running after Close")
	}
}

// countingDevice counts the bytes read through it.
type countingDevice struct {
	Device
	read atomic.Int64
}

func (d *countingDevice) ReadAt(p []byte, off int64) (int, error) {
	d.read.Add(int64(len(p)))
	return d.Device.ReadAt(p, off)
}

// TestOpenCleanVolumeReadsConstant: after a clean Close, Open reads the
// superblock, the header slots and one record header, whatever the size
// of the journal or the number of transactions committed before.
func TestOpenCleanVolumeReadsConstant(t *testing.T) {
	opts := mediumOpts()
	opts.Geometry.VolumeSize = 32 << 20
	opts.StateSize = 1 << 20
	dev, v := newMemVolume(t, opts, 1)
	l := v.Superblock().Layout
	for i := range 500 {
		mustCommit(t, v, recordWrite{l.StateOffset + int64(i)*64, fill(64, byte(i))})
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	dev.Reopen()
	cd := &countingDevice{Device: dev}
	v, err := Open(cd, &opts.Geometry)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	if got, limit := cd.read.Load(), int64(SuperblockSize+2*markEncoded+2*headerSlotSize+recordHdrSize); got > limit {
		t.Fatalf("open read %d bytes, want <= %d", got, limit)
	}
	if v.Journal().Stats().Replayed != 0 {
		t.Fatal("clean volume replayed records")
	}
	checkMeta(t, v, l.StateOffset+499*64, fill(64, byte(499%256)))
}

// TestReformatIgnoresOldLog: records an earlier format left in the log
// area are not replayed into a new volume on the same device.
func TestReformatIgnoresOldLog(t *testing.T) {
	opts := smallOpts()
	dev, v := newMemVolume(t, opts, 1)
	off := v.Superblock().Layout.StateOffset
	before := make([]byte, 64)
	if err := v.ReadMeta(before, off); err != nil {
		t.Fatal(err)
	}
	mustCommit(t, v, recordWrite{off, fill(64, 'o')})
	crashClose(t, dev, v, CrashDropAll, nil)
	// Undo the in-place write so only the log holds it.
	mustWrite(t, dev, off, before)
	opts.UUID[0]++
	if _, err := Format(dev, opts); err != nil {
		t.Fatal(err)
	}
	v = reopen(t, dev)
	checkMeta(t, v, off, before)
}

// TestWriteMetaDirectNotOverwrittenByReplay: a direct write after a
// journaled write of the same bytes survives a crash; replaying the
// journaled write over it would lose it.
func TestWriteMetaDirectNotOverwrittenByReplay(t *testing.T) {
	dev, v := newMemVolume(t, smallOpts(), 1)
	off := v.Superblock().Layout.StateOffset
	mustCommit(t, v, recordWrite{off, fill(32, 'j')})
	if err := v.WriteMetaDirect(fill(32, 'd'), off); err != nil {
		t.Fatal(err)
	}
	if err := v.Sync(); err != nil {
		t.Fatal(err)
	}
	crashClose(t, dev, v, CrashDropAll, nil)
	v = reopen(t, dev)
	checkMeta(t, v, off, fill(32, 'd'))
}

// TestVolumeOnFile runs the basic cycle on a real file.
func TestVolumeOnFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "vol")
	opts := mediumOpts()
	dev, err := CreateFileDevice(path, opts.Geometry.VolumeSize)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := Format(dev, opts)
	if err != nil {
		t.Fatal(err)
	}
	v, err := Open(dev, &opts.Geometry)
	if err != nil {
		t.Fatal(err)
	}
	if v.Superblock() != sb || sb.UUID == ([16]byte{}) || sb.UUID[6]>>4 != 4 {
		t.Fatalf("superblock %+v", v.Superblock())
	}
	mustCommit(t, v, recordWrite{sb.Layout.StateOffset + 100, []byte("meta")})
	mustWrite(t, v, sb.Layout.HeapOffset, []byte("data"))
	if err := v.SyncData(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	dev, err = OpenFileDevice(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err = Open(dev, &opts.Geometry)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	checkMeta(t, v, sb.Layout.StateOffset+100, []byte("meta"))
	got := make([]byte, 4)
	if _, err := v.ReadAt(got, sb.Layout.HeapOffset); err != nil || string(got) != "data" {
		t.Fatalf("data %q %v", got, err)
	}
}
