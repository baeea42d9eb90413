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

	for _, mode := range []CrashMode{CrashDropAll, CrashKeepRandom, CrashTearOne} {
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
	sb := func(slots map[int64][]byte) []byte {
		b := make([]byte, SuperblockSize)
		for off, s := range slots {
			copy(b[off:], s)
		}
		return b
	}
	torn := encodeMark(9)
	torn[10] ^= 1
	tests := []struct {
		name     string
		slots    map[int64][]byte
		wantMark uint64
		wantNext int64
	}{
		{"none", nil, 0, markSlot0},
		{"slot0", map[int64][]byte{markSlot0: encodeMark(3)}, 3, markSlot1},
		{"slot1", map[int64][]byte{markSlot1: encodeMark(4)}, 4, markSlot0},
		{"both, 1 newer", map[int64][]byte{markSlot0: encodeMark(3), markSlot1: encodeMark(4)}, 4, markSlot0},
		{"both, 0 newer", map[int64][]byte{markSlot0: encodeMark(5), markSlot1: encodeMark(4)}, 5, markSlot1},
		{"newer torn", map[int64][]byte{markSlot0: encodeMark(3), markSlot1: torn}, 3, markSlot1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, next := readMark(sb(tc.slots))
			if m != tc.wantMark || next != tc.wantNext {
				t.Fatalf("readMark = %d, %d; want %d, %d", m, next, tc.wantMark, tc.wantNext)
			}
		})
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
