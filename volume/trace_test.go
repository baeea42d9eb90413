package volume

import (
	"bytes"
	"fmt"
	"slices"
	"testing"
)

// TestCrashModesListed: CrashModes lists every mode MemDevice implements,
// so that every crash sweep picks up a new one. Modes are consecutive from
// CrashDropAll, and a mode MemDevice implements has a name of its own.
func TestCrashModesListed(t *testing.T) {
	modes := CrashModes()
	unnamed := func(m CrashMode) bool { return m.String() == fmt.Sprintf("CrashMode(%d)", int(m)) }
	for i, m := range modes {
		if m != CrashMode(i) || unnamed(m) {
			t.Fatalf("CrashModes()[%d] = %v: want the named modes in order from CrashDropAll", i, m)
		}
	}
	if next := CrashMode(len(modes)); !unnamed(next) {
		t.Fatalf("mode %v is named but missing from CrashModes: no crash sweep runs it", next)
	}
}

// TestTraceReplay: replaying a recorded trace on a fresh device of the
// same seed rebuilds the recorded device's image; the crash points are the
// syncs and the end; events keep their place; and Build at a crash point
// in CrashDropAll leaves exactly what the last completed sync covered.
func TestTraceReplay(t *testing.T) {
	const size = 8 << 10
	mem := NewMemDevice(size, 3)
	rec := NewRecorder(mem)
	mustWrite(t, rec, 0, fill(100, 'a'))
	from := rec.Len()
	if err := rec.Sync(); err != nil {
		t.Fatal(err)
	}
	rec.Event("first synced")
	mustWrite(t, rec, 600, fill(1000, 'b'))
	mustWrite(t, rec, 50, fill(100, 'c'))
	if err := rec.Sync(); err != nil {
		t.Fatal(err)
	}
	rec.Event("second synced")
	mustWrite(t, rec, 4000, fill(10, 'd')) // never synced
	mem.FailWritesAfter(0)
	if _, err := rec.WriteAt([]byte("x"), 0); err == nil {
		t.Fatal("injected write failure did not fail")
	}
	mem.FailWritesAfter(-1)
	tr := rec.Trace()
	if len(tr.Ops) != 8 || tr.Syncs() != 2 {
		t.Fatalf("trace of %d ops, %d syncs; want 8 and 2 (the failed write is not recorded)", len(tr.Ops), tr.Syncs())
	}
	want := []CrashPoint{{Sync: 0, Op: 1}, {Sync: 1, Op: 5}, {Sync: 2, Op: 8}}
	if got := tr.CrashPoints(from); !slices.Equal(got, want) {
		t.Fatalf("crash points %v; want %v", got, want)
	}
	if got := tr.CrashPoints(2); !slices.Equal(got, want[1:]) {
		t.Fatalf("crash points from op 2: %v; want %v", got, want[1:])
	}
	if got := tr.Events(5); !slices.Equal(got, []any{"first synced"}) {
		t.Fatalf("events before op 5: %v", got)
	}

	image := func(d Device) []byte {
		b := make([]byte, size)
		if _, err := d.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		return b
	}
	replayed := NewMemDevice(size, 3)
	if err := tr.Replay(replayed, len(tr.Ops)); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(image(replayed), image(mem)) {
		t.Fatal("replayed image differs from the recorded device")
	}

	// DropAll at the second sync keeps what the first synced, nothing else.
	dev := NewMemDevice(size, 3)
	if err := tr.Build(dev, CrashState{CrashPoint: want[1], Mode: CrashDropAll}); err != nil {
		t.Fatal(err)
	}
	expect := image(NewMemDevice(size, 3))
	copy(expect, fill(100, 'a'))
	if !bytes.Equal(image(dev), expect) {
		t.Fatal("crash before the second sync kept writes after the first")
	}
	states := tr.CrashStates(from, 3, 1)
	if n := len(want) * (1 + 3*(len(CrashModes())-1)); len(states) != n {
		t.Fatalf("%d crash states; want %d", len(states), n)
	}
}
