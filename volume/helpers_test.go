package volume

import (
	"bytes"
	"context"
	"errors"
	"math/rand"
	"os"
	"strconv"
	"testing"
	"time"
)

// smallOpts is a tiny volume: a 4 KiB log (so checkpoints come often), a
// 16 KiB state region and two 4 KiB lpages of heap.
func smallOpts() FormatOptions {
	return FormatOptions{
		Geometry:    Geometry{SpageShift: 12, LpageShift: 12, VolumeSize: journalOffset(FormatVersion) + MinJournalSize + 16<<10 + 2*4096},
		JournalSize: MinJournalSize,
		StateSize:   16 << 10,
		UUID:        [16]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16},
	}
}

// mediumOpts is a 4 MiB volume with the default (1 MiB) journal.
func mediumOpts() FormatOptions {
	return FormatOptions{
		Geometry:  Geometry{SpageShift: 12, LpageShift: 16, VolumeSize: 4 << 20},
		StateSize: 64 << 10,
	}
}

// newMemVolume formats and opens a volume on a fresh MemDevice. The volume
// is closed at cleanup if the test did not close it.
func newMemVolume(t testing.TB, opts FormatOptions, seed int64) (*MemDevice, *Volume) {
	t.Helper()
	dev := NewMemDevice(opts.Geometry.VolumeSize, seed)
	if _, err := Format(dev, opts); err != nil {
		t.Fatalf("format: %v", err)
	}
	v, err := Open(dev, nil)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return dev, v
}

// reopen opens dev again after a Close or a Crash.
func reopen(t testing.TB, dev *MemDevice) *Volume {
	t.Helper()
	dev.Reopen()
	v, err := Open(dev, nil)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return v
}

// crashClose stops v as a power cut would: the device refuses every
// further write and sync, so Close stops the journal goroutine without
// checkpointing. The device is then crashed with mode.
func crashClose(t testing.TB, dev *MemDevice, v *Volume, mode CrashMode, rng *rand.Rand) {
	t.Helper()
	dev.SetCrashAt(dev.Ops() + 1)
	if err := v.Close(); err == nil {
		t.Fatalf("close of a crashed device succeeded")
	}
	dev.Crash(mode, rng)
}

// stateBytes returns the whole state region.
func stateBytes(t testing.TB, v *Volume) []byte {
	t.Helper()
	l := v.Superblock().Layout
	b := make([]byte, l.StateSize)
	if err := v.ReadMeta(b, l.StateOffset); err != nil {
		t.Fatalf("read state: %v", err)
	}
	return b
}

// testSeed returns VOLUME_SEED if set, else a fresh seed, and logs how to
// replay it.
func testSeed(t testing.TB) int64 {
	t.Helper()
	seed := time.Now().UnixNano()
	if s := os.Getenv("VOLUME_SEED"); s != "" {
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			t.Fatalf("VOLUME_SEED=%q: %v", s, err)
		}
		seed = v
	}
	t.Logf("seed %d (replay: VOLUME_SEED=%d go test -run '^%s$' ./volume/)", seed, seed, t.Name())
	return seed
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(10 * time.Second)
	defer deadline.Stop()
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		case <-tick.C:
		}
	}
}

// recv waits for a value on ch with a deadline.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

func mustCommit(t testing.TB, v *Volume, writes ...recordWrite) {
	t.Helper()
	var txn Txn
	for _, w := range writes {
		txn.Write(w.off, w.data)
	}
	if err := v.Journal().Commit(context.Background(), &txn); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func checkMeta(t testing.TB, v *Volume, off int64, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	if err := v.ReadMeta(got, off); err != nil {
		t.Fatalf("read meta at %d: %v", off, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("meta at %d = %x, want %x", off, got, want)
	}
}

func wantErr(t testing.TB, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("error %v, want %v", err, target)
	}
}

func fill(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }

// logAreaOffset is where the log starts in the journal region of a volume
// of FormatVersion (TestLogAreaOffset keeps it honest).
const logAreaOffset = 2 * regionAlign

func TestLogAreaOffset(t *testing.T) {
	if _, l := journalSlots(FormatVersion); l != logAreaOffset {
		t.Fatalf("log area at %d, the tests assume %d", l, logAreaOffset)
	}
}
