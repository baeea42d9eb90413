package volume

import (
	"bytes"
	"context"
	"math/rand"
	"sync/atomic"
	"testing"
)

// TestDataMarkCrashSweep crashes a workload of tagged writes and marked
// syncs at every device operation, in every crash mode, and checks the
// mark's two promises after reopening: every write tagged at or below the
// durable mark survived, and the mark is at least the last one a returned
// SyncData vouched for.
func TestDataMarkCrashSweep(t *testing.T) {
	const rounds = 6
	opts := mediumOpts()
	payload := func(tag int) []byte { return bytes.Repeat([]byte{byte(tag)}, 1000) }
	run := func(dev *MemDevice, v *Volume) (acked uint64) {
		var counter atomic.Uint64
		v.SetDataMarkSource(counter.Load)
		heap := v.Superblock().Layout.HeapOffset
		for tag := 1; tag <= rounds; tag++ {
			if _, err := v.WriteAt(payload(tag), heap+int64(tag)*4096); err != nil {
				return acked
			}
			counter.Store(uint64(tag)) // the write above has returned
			if err := v.SyncData(context.Background()); err != nil {
				return acked
			}
			acked = uint64(tag)
		}
		return acked
	}
	// Count the operations of a clean run, to sweep them all.
	dev, v := newMemVolume(t, opts, 1)
	base := dev.Ops()
	if got := run(dev, v); got != rounds {
		t.Fatalf("clean run acked %d of %d", got, rounds)
	}
	total := dev.Ops() - base
	v.Close()
	v = reopen(t, dev)
	if got := v.DataMark(); got != rounds {
		t.Fatalf("after a clean run the mark is %d, want %d", got, rounds)
	}

	for _, mode := range CrashModes() {
		for op := int64(1); op <= total+1; op++ {
			dev, v := newMemVolume(t, opts, op)
			dev.SetCrashAt(dev.Ops() + op)
			acked := run(dev, v)
			crashClose(t, dev, v, mode, rand.New(rand.NewSource(op)))
			v = reopen(t, dev)
			mark := v.DataMark()
			if mark < acked {
				t.Fatalf("%v, crash at op %d: mark %d below the acknowledged %d", mode, op, mark, acked)
			}
			heap := v.Superblock().Layout.HeapOffset
			for tag := 1; tag <= int(mark); tag++ {
				got := make([]byte, 1000)
				if _, err := v.ReadAt(got, heap+int64(tag)*4096); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(got, payload(tag)) {
					t.Fatalf("%v, crash at op %d: mark %d but write %d is not durable", mode, op, mark, tag)
				}
			}
			v.Close()
		}
	}
}

// TestDataMarkSlots checks the slot decoding: a torn or garbage slot is
// ignored, the larger intact one wins, and the next write goes to the
// other slot.
func TestDataMarkSlots(t *testing.T) {
	torn := encodeMark(9)
	torn[10] ^= 1
	none := make([]byte, markEncoded)
	tests := []struct {
		name         string
		slot0, slot1 []byte
		wantMark     uint64
		wantNext     int
	}{
		{"none", none, none, 0, 0},
		{"slot0", encodeMark(3), none, 3, 1},
		{"slot1", none, encodeMark(4), 4, 0},
		{"both, 1 newer", encodeMark(3), encodeMark(4), 4, 0},
		{"both, 0 newer", encodeMark(5), encodeMark(4), 5, 1},
		{"newer torn", encodeMark(3), torn, 3, 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, next := readMark(tc.slot0, tc.slot1)
			if m != tc.wantMark || next != tc.wantNext {
				t.Fatalf("readMark = %d, %d; want %d, %d", m, next, tc.wantMark, tc.wantNext)
			}
		})
	}
}

// TestDataMarkPages: on a version 2 volume the mark slots are pages of
// their own, between the superblock and the journal: writing marks never
// touches the superblock's page, and a version 1 volume (slots inside the
// superblock's page, journal right after it) still opens and keeps its
// mark.
func TestDataMarkPages(t *testing.T) {
	opts := mediumOpts()
	dev, v := newMemVolume(t, opts, 7)
	if l := v.Superblock().Layout; l.JournalOffset != SuperblockSize+markPages*regionAlign {
		t.Fatalf("journal at %d; want after the superblock and %d mark pages", l.JournalOffset, markPages)
	}
	sb := make([]byte, SuperblockSize)
	if _, err := dev.ReadAt(sb, 0); err != nil {
		t.Fatal(err)
	}
	var mark atomic.Uint64
	v.SetDataMarkSource(mark.Load)
	for m := uint64(1); m <= 3; m++ {
		mark.Store(m)
		if err := v.SyncData(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	after := make([]byte, SuperblockSize)
	if _, err := dev.ReadAt(after, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(sb, after) {
		t.Fatal("writing data marks changed the superblock's page")
	}
	v.Close()
	if v = reopen(t, dev); v.DataMark() != 3 {
		t.Fatalf("mark after reopen %d; want 3", v.DataMark())
	}
	v.Close()

	// A version 1 volume: write its superblock and legacy slots by hand.
	old := NewMemDevice(opts.Geometry.VolumeSize, 8)
	l, err := ComputeLayout(opts)
	if err != nil {
		t.Fatal(err)
	}
	shift := l.JournalOffset - SuperblockSize
	l.JournalOffset, l.StateOffset, l.HeapOffset = SuperblockSize, l.StateOffset-shift, l.HeapOffset-shift
	l.HeapSize = (opts.Geometry.VolumeSize - l.HeapOffset) / opts.Geometry.LpageSize() * opts.Geometry.LpageSize()
	b := EncodeSuperblock(Superblock{Version: 1, Geometry: opts.Geometry, Layout: l})
	copy(b[1536:], encodeMark(41))
	j := make([]byte, 2*headerSlotSize)
	copy(j, encodeJournalHeader(journalHeader{generation: 1, nextSeq: 1}))
	if _, err := old.WriteAt(j, l.JournalOffset); err != nil {
		t.Fatal(err)
	}
	if _, err := old.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
	v1, err := Open(old, nil)
	if err != nil {
		t.Fatalf("open a version 1 volume: %v", err)
	}
	defer v1.Close()
	if v1.DataMark() != 41 || v1.Superblock().Version != 1 {
		t.Fatalf("version 1 volume: mark %d, version %d; want 41, 1", v1.DataMark(), v1.Superblock().Version)
	}
}

func FuzzDecodeMark(f *testing.F) {
	f.Add(encodeMark(0))
	f.Add(encodeMark(1 << 40))
	f.Add([]byte("BNDMARK1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, ok := decodeMark(b)
		if !ok {
			return
		}
		if !bytes.Equal(encodeMark(m), b[:markEncoded]) {
			t.Fatalf("decoded %d from bytes that do not re-encode", m)
		}
	})
}
