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

// TestFileDataModel drives random writes, truncates, syncs and cuts and
// compares reads with a byte slice, and the backing file with the last
// synced byte slice: synced data survives a DropAll cut, unsynced data
// does not, and unsynced data never reaches the backing file early.
func TestFileDataModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	for round := range 20 {
		initial := make([]byte, rng.IntN(3*pageSize))
		for i := range initial {
			initial[i] = byte(rng.Uint32())
		}
		d := newTestData(t, initial)
		cur, durable := slices.Clone(initial), slices.Clone(initial)
		for step := range 300 {
			switch k := rng.IntN(20); {
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
			case k < 16:
				size := rng.IntN(5 * pageSize)
				if err := d.truncate(int64(size)); err != nil {
					t.Fatal(err)
				}
				cur = modelTruncate(cur, size)
			case k < 19:
				if err := d.sync(); err != nil {
					t.Fatal(err)
				}
				durable = slices.Clone(cur)
			default:
				if err := d.cut(newPlan(DropAll, 0, &Report{})); err != nil {
					t.Fatal(err)
				}
				cur = slices.Clone(durable)
			}
			if got := readAll(t, d); !bytes.Equal(got, cur) {
				t.Fatalf("round %d step %d: read %d bytes, want %d (first difference at %d)", round, step, len(got), len(cur), firstDiff(got, cur))
			}
			if got := backingBytes(t, d); !bytes.Equal(got, durable) {
				t.Fatalf("round %d step %d: backing file has %d bytes, durable state %d (first difference at %d)", round, step, len(got), len(durable), firstDiff(got, durable))
			}
		}
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
