package powercutfs

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// newTestData returns a file's data over a backing file holding durable.
func newTestData(t *testing.T, durable []byte) *fileData {
	t.Helper()
	path := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(path, durable, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	d := newFileData(int64(len(durable)))
	d.back = f
	return d
}

// backingBytes is what the backing file holds: the durable content.
func backingBytes(t *testing.T, d *fileData) []byte {
	t.Helper()
	b, err := os.ReadFile(d.back.Name())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func readAll(t *testing.T, d *fileData) []byte {
	t.Helper()
	p := make([]byte, d.size+100)
	n, err := d.read(p, 0)
	if err != nil {
		t.Fatal(err)
	}
	return p[:n]
}

// modelWrite and modelTruncate are the obvious byte-slice semantics.
func modelWrite(b, p []byte, off int) []byte {
	if end := off + len(p); end > len(b) {
		b = append(b, make([]byte, end-len(b))...)
	}
	copy(b[off:], p)
	return b
}

func modelTruncate(b []byte, size int) []byte {
	if size <= len(b) {
		return slices.Clone(b[:size])
	}
	return append(b, make([]byte, size-len(b))...)
}

// TestFileDataModel drives random writes, truncates, syncs, failed syncs
// and cuts and compares reads with a byte slice, and the backing file with
// the durable byte slice: synced data survives a DropAll cut, unsynced
// data does not, and unsynced data never reaches the backing file early.
// A failed sync drops the unsynced changes from the durable state for
// good while reads keep seeing them; a later sync applies only the later
// changes, to the durable state.
func TestFileDataModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	failed := 0
	for round := range 20 {
		initial := make([]byte, rng.IntN(3*pageSize))
		for i := range initial {
			initial[i] = byte(rng.Uint32())
		}
		d := newTestData(t, initial)
		cur, durable := slices.Clone(initial), slices.Clone(initial)
		var unsynced []dataOp // what the next sync applies to durable
		for step := range 300 {
			switch k := rng.IntN(21); {
			case k < 12:
				p := make([]byte, 1+rng.IntN(2*pageSize))
				for i := range p {
					p[i] = byte(rng.Uint32())
				}
				off := rng.IntN(4 * pageSize)
				if err := d.write(p, int64(off)); err != nil {
					t.Fatal(err)
				}
				cur = modelWrite(cur, p, off)
				unsynced = append(unsynced, dataOp{off: int64(off), data: p})
			case k < 16:
				size := rng.IntN(5 * pageSize)
				if err := d.truncate(int64(size)); err != nil {
					t.Fatal(err)
				}
				cur = modelTruncate(cur, size)
				unsynced = append(unsynced, dataOp{off: int64(size)})
			case k < 19:
				if err := d.sync(); err != nil {
					t.Fatal(err)
				}
				for _, op := range unsynced {
					if op.data == nil {
						durable = modelTruncate(durable, int(op.off))
					} else {
						durable = modelWrite(durable, op.data, int(op.off))
					}
				}
				unsynced = nil
			case k < 20:
				if got := d.drop(); len(got) != len(unsynced) {
					t.Fatalf("round %d step %d: a failed sync dropped %d changes, want %d", round, step, len(got), len(unsynced))
				}
				unsynced = nil
				failed++
			default:
				if err := d.cut(newPlan(DropAll, 0, &Report{})); err != nil {
					t.Fatal(err)
				}
				cur = slices.Clone(durable)
				unsynced = nil
			}
			if got := readAll(t, d); !bytes.Equal(got, cur) {
				t.Fatalf("round %d step %d: read %d bytes, want %d (first difference at %d)", round, step, len(got), len(cur), firstDiff(got, cur))
			}
			if got := backingBytes(t, d); !bytes.Equal(got, durable) {
				t.Fatalf("round %d step %d: backing file has %d bytes, durable state %d (first difference at %d)", round, step, len(got), len(durable), firstDiff(got, durable))
			}
		}
	}
	if failed == 0 {
		t.Error("no failed sync was tried")
	}
}

// A failed sync drops the unsynced changes, those that grow and shrink the
// file too, for good: reads still see them, a later sync makes durable
// only what came after the failure, and a cut reverts reads to that.
func TestFailedSyncDropsForGood(t *testing.T) {
	old := bytes.Repeat([]byte{0xAA}, 2*pageSize)
	d := newTestData(t, old)
	grow := bytes.Repeat([]byte{0x11}, pageSize)
	if err := d.write(grow, 3*pageSize); err != nil { // grows the file to 4 pages
		t.Fatal(err)
	}
	if err := d.write([]byte("lost"), 10); err != nil {
		t.Fatal(err)
	}
	if got := d.drop(); len(got) != 2 || got[0].off != 3*pageSize || string(got[1].data) != "lost" {
		t.Fatalf("dropped %v, want the two writes", got)
	}
	cur := modelWrite(modelWrite(slices.Clone(old), grow, 3*pageSize), []byte("lost"), 10)
	if got := readAll(t, d); !bytes.Equal(got, cur) {
		t.Fatalf("after the failed sync reads see %d bytes (first difference at %d), want the dropped writes still there", len(got), firstDiff(got, cur))
	}
	// After the failure: a write inside the old size, one past it, and a
	// truncate that keeps part of the dropped growth in the current content.
	if err := d.write([]byte("kept"), 20); err != nil {
		t.Fatal(err)
	}
	if err := d.truncate(3*pageSize + 100); err != nil {
		t.Fatal(err)
	}
	if err := d.write([]byte("tail"), 3*pageSize+50); err != nil {
		t.Fatal(err)
	}
	if err := d.sync(); err != nil {
		t.Fatal(err)
	}
	cur = modelWrite(modelTruncate(modelWrite(cur, []byte("kept"), 20), 3*pageSize+100), []byte("tail"), 3*pageSize+50)
	durable := modelWrite(modelTruncate(modelWrite(slices.Clone(old), []byte("kept"), 20), 3*pageSize+100), []byte("tail"), 3*pageSize+50)
	if got := readAll(t, d); !bytes.Equal(got, cur) {
		t.Fatalf("after the next sync reads see %d bytes (first difference at %d), want %d", len(got), firstDiff(got, cur), len(cur))
	}
	if got := backingBytes(t, d); !bytes.Equal(got, durable) {
		t.Fatalf("after the next sync the durable state has %d bytes (first difference at %d), want %d without the dropped writes", len(got), firstDiff(got, durable), len(durable))
	}
	if bytes.Contains(backingBytes(t, d), []byte("lost")) || bytes.Contains(backingBytes(t, d), grow[:64]) {
		t.Fatal("a dropped write became durable")
	}
	if err := d.cut(newPlan(KeepRandom, 1, &Report{})); err != nil { // nothing is unsynced
		t.Fatal(err)
	}
	if got := readAll(t, d); !bytes.Equal(got, durable) {
		t.Fatalf("after a cut reads see %d bytes (first difference at %d), want the durable %d", len(got), firstDiff(got, durable), len(durable))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestSectorsOf(t *testing.T) {
	for _, tc := range []struct {
		off  int64
		n    int
		want []int
	}{
		{0, 512, []int{0, 512}},
		{0, 1, []int{0, 1}},
		{0, 1536, []int{0, 512, 1024, 1536}},
		{100, 412, []int{0, 412}},
		{100, 413, []int{0, 412, 413}},
		{1000, 2000, []int{0, 24, 536, 1048, 1560, 2000}},
		{512, 512, []int{0, 512}},
	} {
		if got := sectorsOf(tc.off, tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("sectorsOf(%d, %d) = %v, want %v", tc.off, tc.n, got, tc.want)
		}
	}
}

// TestCutModes checks what each mode leaves of writes over old data:
// DropAll nothing, KeepRandom each write whole or not at all, Tear in
// addition a prefix of a write's sectors, then possibly one garbage piece
// (neither old nor new), then old bytes. Over many seeds every outcome the
// mode allows shows up.
func TestCutModes(t *testing.T) {
	const size = 16 * SectorSize
	old := bytes.Repeat([]byte{0xAA}, size)
	// Two writes at unaligned offsets, so that pieces are part sectors too.
	writes := []dataOp{{off: 300, data: bytes.Repeat([]byte{0x11}, 3000)}, {off: 5000, data: bytes.Repeat([]byte{0x22}, 2100)}}
	for _, mode := range Modes() {
		t.Run(mode.String(), func(t *testing.T) {
			var whole, absent, torn, garbage int
			for seed := range uint64(200) {
				d := newTestData(t, old)
				for _, w := range writes {
					if err := d.write(w.data, w.off); err != nil {
						t.Fatal(err)
					}
				}
				var rep Report
				if err := d.cut(newPlan(mode, seed, &rep)); err != nil {
					t.Fatal(err)
				}
				got := backingBytes(t, d)
				if len(got) != size {
					t.Fatalf("seed %d: %d bytes after the cut, want %d", seed, len(got), size)
				}
				if rep.DataOps != 2 || rep.Kept+rep.Torn+rep.Dropped != 2 {
					t.Fatalf("seed %d: report %v", seed, rep)
				}
				for _, w := range writes {
					region := got[w.off : w.off+int64(len(w.data))]
					bounds := sectorsOf(w.off, len(w.data))
					k, g := classify(region, w.data[0], old[0], bounds)
					switch {
					case k < 0:
						t.Fatalf("seed %d: write at %d left %x...: not a prefix of its sectors, then garbage, then old bytes", seed, w.off, region[:min(len(region), 64)])
					case k == len(bounds)-1:
						whole++
					case k == 0 && !g:
						absent++
					default:
						torn++
					}
					if g {
						garbage++
					}
				}
				// Bytes outside the writes are never touched.
				for i := range got {
					inWrite := false
					for _, w := range writes {
						inWrite = inWrite || (int64(i) >= w.off && int64(i) < w.off+int64(len(w.data)))
					}
					if !inWrite && got[i] != old[i] {
						t.Fatalf("seed %d: byte %d outside the writes changed", seed, i)
					}
				}
			}
			t.Logf("%v: %d whole, %d absent, %d torn (%d garbage)", mode, whole, absent, torn, garbage)
			switch mode {
			case DropAll:
				if whole+torn+garbage != 0 {
					t.Errorf("DropAll kept writes")
				}
			case KeepRandom:
				if torn+garbage != 0 || whole == 0 || absent == 0 {
					t.Errorf("KeepRandom: want writes whole or absent, both seen")
				}
			case Tear:
				if whole == 0 || absent == 0 || torn == 0 || garbage == 0 {
					t.Errorf("Tear: want whole, absent, torn and garbage outcomes all seen")
				}
			}
		})
	}
}

// classify reads a write's region after a cut, where the write filled
// newB over oldB: it returns how many leading pieces (bounds as sectorsOf)
// hold new bytes, and whether the next piece is garbage (neither all old
// nor all new). After those pieces every byte must be old; k < 0 if not.
func classify(region []byte, newB, oldB byte, bounds []int) (k int, garbage bool) {
	pieces := len(bounds) - 1
	all := func(i int, b byte) bool {
		for _, c := range region[bounds[i]:bounds[i+1]] {
			if c != b {
				return false
			}
		}
		return true
	}
	for k < pieces && all(k, newB) {
		k++
	}
	rest := k
	if rest < pieces && !all(rest, oldB) {
		garbage = true // not all new either, or k would count it
		rest++
	}
	for i := rest; i < pieces; i++ {
		if !all(i, oldB) {
			return -1, false
		}
	}
	return k, garbage
}

// A torn write that extends the file grows it only as far as the bytes
// that landed, and a dropped one not at all.
func TestCutTornAppend(t *testing.T) {
	sawShort := false
	for seed := range uint64(100) {
		d := newTestData(t, make([]byte, SectorSize))
		if err := d.write(bytes.Repeat([]byte{7}, 4*SectorSize), SectorSize); err != nil {
			t.Fatal(err)
		}
		if err := d.cut(newPlan(Tear, seed, &Report{})); err != nil {
			t.Fatal(err)
		}
		got := len(backingBytes(t, d))
		if got%SectorSize != 0 || got < SectorSize || got > 5*SectorSize {
			t.Fatalf("seed %d: %d bytes after a torn append of 4 sectors to 1", seed, got)
		}
		sawShort = sawShort || (got > SectorSize && got < 5*SectorSize)
	}
	if !sawShort {
		t.Error("no torn append landed part of its sectors")
	}
}
