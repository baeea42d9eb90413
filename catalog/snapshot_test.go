package catalog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"

	bbolt "go.etcd.io/bbolt"
)

// snapshotBytes takes a snapshot of db and returns its stream.
func snapshotBytes(tb testing.TB, db *DB) []byte {
	tb.Helper()
	s, err := db.BeginSnapshot()
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Release()
	var buf bytes.Buffer
	n, err := s.WriteTo(&buf)
	if err != nil {
		tb.Fatal(err)
	}
	if n != int64(buf.Len()) || n != s.Size() {
		tb.Fatalf("WriteTo returned %d, wrote %d, Size says %d", n, buf.Len(), s.Size())
	}
	return buf.Bytes()
}

// state is every replicated record and every local mark of a catalog.
type state struct {
	Blobs    []Blob
	Resv     []Reservation
	Applied  uint64
	Geometry string
	Local    map[string]uint64
}

func readState(tb testing.TB, db *DB) state {
	tb.Helper()
	var s state
	s.Local = map[string]uint64{}
	mustView(tb, db, func(tx *Tx) error {
		if err := tx.ForEachBlob(func(b Blob) error {
			s.Blobs = append(s.Blobs, b)
			if v, ok, err := tx.LocalVersion(b.Key); err != nil {
				return err
			} else if ok {
				s.Local[b.Key] = v
			}
			return nil
		}); err != nil {
			return err
		}
		if err := tx.ForEachReservation(func(r Reservation) error { s.Resv = append(s.Resv, r); return nil }); err != nil {
			return err
		}
		var err error
		if s.Applied, err = tx.AppliedIndex(); err != nil {
			return err
		}
		g, err := tx.GetMeta("geometry")
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		s.Geometry = string(g)
		return nil
	})
	return s
}

func TestSnapshotIsPointInTime(t *testing.T) {
	db := openTest(t, Options{NoSync: true})
	putBlobs(t, db, testBlob("keep", 1, 10), testBlob("gone-later", 2, 10))
	mustUpdate(t, db, func(tx *Tx) error {
		if err := tx.PutReservation(testReservation(3, 4096, 100)); err != nil {
			return err
		}
		if err := tx.PutMeta("geometry", []byte("v1")); err != nil {
			return err
		}
		return tx.SetAppliedIndex(3)
	})
	want := readState(t, db)

	s, err := db.BeginSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Release()
	if i, err := s.AppliedIndex(); i != 3 || err != nil {
		t.Fatalf("Snapshot.AppliedIndex = %d, %v", i, err)
	}

	// Enough writes after the snapshot to allocate and free many pages.
	mustUpdate(t, db, func(tx *Tx) error {
		for i := range 2000 {
			if err := tx.PutBlob(testBlob(fmt.Sprintf("after/%05d", i), uint64(10+i), int64(i))); err != nil {
				return err
			}
		}
		if err := tx.DeleteBlob("gone-later"); err != nil {
			return err
		}
		if err := tx.DeleteReservation(3); err != nil {
			return err
		}
		if err := tx.PutMeta("geometry", []byte("v2")); err != nil {
			return err
		}
		return tx.SetAppliedIndex(2100)
	})

	var first, second bytes.Buffer
	if _, err := s.WriteTo(&first); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteTo(&second); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(first.Bytes(), second.Bytes()) {
		t.Fatal("two WriteTo calls on one snapshot differ")
	}
	s.Release()
	s.Release() // idempotent
	if _, err := s.WriteTo(io.Discard); !errors.Is(err, ErrSnapshotReleased) {
		t.Fatalf("WriteTo after Release: %v", err)
	}

	other := openTest(t, Options{})
	if err := other.Restore(bytes.NewReader(first.Bytes())); err != nil {
		t.Fatal(err)
	}
	got := readState(t, other)
	want.Local = map[string]uint64{}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("restored state is not the snapshot's:\n got %+v\nwant %+v", got, want)
	}
}

func TestRestoreKeepsOnlyMatchingLocalMarks(t *testing.T) {
	sender := openTest(t, Options{})
	putBlobs(t, sender, testBlob("a", 1, 5), testBlob("b", 5, 5), testBlob("d", 4, 5), testBlob("e", 6, 5))
	mustUpdate(t, sender, func(tx *Tx) error {
		if err := tx.MarkLocal("d", 4); err != nil { // the sender's mark: must not travel
			return err
		}
		if err := tx.MarkLocal("a", 1); err != nil {
			return err
		}
		return tx.SetAppliedIndex(6)
	})

	receiver := openTest(t, Options{})
	putBlobs(t, receiver, testBlob("a", 1, 5), testBlob("b", 2, 5), testBlob("c", 3, 5), testBlob("e", 6, 5))
	mustUpdate(t, receiver, func(tx *Tx) error {
		for _, kv := range []struct {
			k string
			v uint64
		}{{"a", 1}, {"b", 2}, {"c", 3}} {
			if err := tx.MarkLocal(kv.k, kv.v); err != nil {
				return err
			}
		}
		return tx.SetAppliedIndex(3)
	})

	if err := receiver.Restore(bytes.NewReader(snapshotBytes(t, sender))); err != nil {
		t.Fatal(err)
	}
	got := readState(t, receiver)
	if keys := blobKeys(got.Blobs); !slices.Equal(keys, []string{"a", "b", "d", "e"}) {
		t.Errorf("blobs after restore: %q", keys)
	}
	if got.Applied != 6 {
		t.Errorf("applied index after restore: %d", got.Applied)
	}
	// a: same (key, version) here and there: kept. b: version changed,
	// c: gone, d: only the sender's mark, e: never marked here.
	if want := map[string]uint64{"a": 1}; !reflect.DeepEqual(got.Local, want) {
		t.Errorf("local marks after restore: %v, want %v", got.Local, want)
	}
	mustView(t, receiver, func(tx *Tx) error {
		if _, ok, _ := tx.LocalVersion("c"); ok {
			return errors.New("mark for a blob the snapshot lacks survived")
		}
		return nil
	})

	// The swap is durable: a reopen sees the restored catalog.
	path := receiver.Path()
	if err := receiver.Close(); err != nil {
		t.Fatal(err)
	}
	reopened := openAt(t, path, Options{})
	if again := readState(t, reopened); !reflect.DeepEqual(again, got) {
		t.Errorf("after reopen:\n got %+v\nwant %+v", again, got)
	}
}

// frame wraps a body the way WriteTo does.
func frame(body []byte) []byte {
	out := append([]byte(snapshotMagic), binary.BigEndian.AppendUint64(nil, uint64(len(body)))...)
	out = append(out, body...)
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
}

// boltImage builds a bbolt file with fn and returns its bytes.
func boltImage(t *testing.T, fn func(*bbolt.Tx) error) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "image.db")
	bdb, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Update(fn); err != nil {
		t.Fatal(err)
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestRestoreRejectsBadStreams(t *testing.T) {
	source := openTest(t, Options{})
	putBlobs(t, source, testBlob("x", 1, 1))
	good := snapshotBytes(t, source)
	body := good[snapshotHeaderLen : len(good)-snapshotTrailerLen]

	flipped := bytes.Clone(good)
	flipped[snapshotHeaderLen+5000] ^= 0x10

	foreign := frame(boltImage(t, func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket([]byte("not-a-catalog"))
		return err
	}))
	newerLayout := func() []byte {
		p := filepath.Join(t.TempDir(), "newer.db")
		if err := os.WriteFile(p, body, 0o600); err != nil {
			t.Fatal(err)
		}
		setLayout(t, p, layoutVersion+1)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return frame(b)
	}()
	badRecord := func() []byte {
		p := filepath.Join(t.TempDir(), "bad.db")
		if err := os.WriteFile(p, body, 0o600); err != nil {
			t.Fatal(err)
		}
		bdb, err := bbolt.Open(p, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := bdb.Update(func(tx *bbolt.Tx) error {
			return tx.Bucket([]byte(bucketBlobs)).Put([]byte("y"), []byte{9, 9})
		}); err != nil {
			t.Fatal(err)
		}
		if err := bdb.Close(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return frame(b)
	}()

	// Leaf pages bbolt cannot parse, behind a valid meta page, freelist and
	// framing: the checks and accept read them at the same time.
	badPages := func() []byte {
		many := openTest(t, Options{})
		var blobs []Blob
		for i := range 300 {
			blobs = append(blobs, testBlob(fmt.Sprintf("key/%04d", i), uint64(i+1), 1))
		}
		putBlobs(t, many, blobs...)
		img := bytes.Clone(snapshotBytes(t, many)[snapshotHeaderLen:])
		img = img[:len(img)-snapshotTrailerLen]
		spoilLeafPages(t, img)
		return frame(img)
	}()

	tests := []struct {
		name   string
		stream []byte
		want   error
	}{
		{"unparseable leaf pages", badPages, ErrCorrupt},
		{"empty", nil, ErrCorrupt},
		{"short header", good[:10], ErrCorrupt},
		{"bad magic", append([]byte("XXXXXXXX"), good[8:]...), ErrCorrupt},
		{"zero length", frame(nil), ErrCorrupt},
		{"truncated body", good[:snapshotHeaderLen+len(body)/2], ErrCorrupt},
		{"missing trailer", good[:len(good)-2], ErrCorrupt},
		{"flipped body byte", flipped, ErrCorrupt},
		{"zero-filled body", frame(make([]byte, len(body))), ErrCorrupt},
		{"bbolt file that is not a catalog", foreign, ErrCorrupt},
		{"newer layout", newerLayout, ErrUnknownLayout},
		{"undecodable record", badRecord, ErrCorrupt},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db := openTest(t, Options{})
			putBlobs(t, db, testBlob("mine", 7, 3))
			mustUpdate(t, db, func(tx *Tx) error { return tx.MarkLocal("mine", 7) })
			before := readState(t, db)

			err := db.Restore(bytes.NewReader(tc.stream))
			if !errors.Is(err, tc.want) {
				t.Fatalf("Restore: %v, want %v", err, tc.want)
			}
			t.Logf("Restore: %v", err)
			if after := readState(t, db); !reflect.DeepEqual(after, before) {
				t.Fatalf("failed Restore changed the catalog:\n%+v\n%+v", after, before)
			}
			entries, _ := os.ReadDir(filepath.Dir(db.Path()))
			if len(entries) != 1 {
				t.Fatalf("directory holds %d entries after a failed Restore", len(entries))
			}
		})
	}
}

func TestRestoreReadsOnlyItsOwnBytes(t *testing.T) {
	source := openTest(t, Options{})
	putBlobs(t, source, testBlob("x", 1, 1))
	stream := append(snapshotBytes(t, source), "ALLOCATOR-STATE"...)
	r := bytes.NewReader(stream)
	db := openTest(t, Options{})
	if err := db.Restore(r); err != nil {
		t.Fatal(err)
	}
	rest, _ := io.ReadAll(r)
	if string(rest) != "ALLOCATOR-STATE" {
		t.Fatalf("Restore consumed bytes past its snapshot; left %q", rest)
	}
}

func TestRestoreWithOpenSnapshotAndConcurrentReaders(t *testing.T) {
	db := openTest(t, Options{NoSync: true})
	putBlobs(t, db, testBlob("old", 1, 1))

	held, err := db.BeginSnapshot()
	if err != nil {
		t.Fatal(err)
	}

	source := openTest(t, Options{})
	putBlobs(t, source, testBlob("new", 2, 1))
	newStream := snapshotBytes(t, source)

	// Readers and a writer run throughout the swap (for the race detector
	// and to show they see one file or the other, never an error).
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				err := db.View(func(tx *Tx) error {
					n, err := tx.CountBlobs()
					if err == nil && n < 1 {
						err = fmt.Errorf("count %d", n)
					}
					return err
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	if err := db.Restore(bytes.NewReader(newStream)); err != nil {
		t.Fatal(err)
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("reader during restore: %v", err)
	}

	// The held snapshot still streams the replaced file's state.
	var buf bytes.Buffer
	if _, err := held.WriteTo(&buf); err != nil {
		t.Fatalf("WriteTo of a snapshot of the replaced file: %v", err)
	}
	held.Release()
	check := openTest(t, Options{})
	if err := check.Restore(bytes.NewReader(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if keys := blobKeys(readState(t, check).Blobs); !slices.Equal(keys, []string{"old"}) {
		t.Fatalf("held snapshot holds %q", keys)
	}
	if keys := blobKeys(readState(t, db).Blobs); !slices.Equal(keys, []string{"new"}) {
		t.Fatalf("restored catalog holds %q", keys)
	}
	// And the restored catalog takes writes.
	putBlobs(t, db, testBlob("newer", 3, 1))
}

func TestRestoreAfterClose(t *testing.T) {
	source := openTest(t, Options{})
	stream := snapshotBytes(t, source)
	db, err := Open(filepath.Join(t.TempDir(), "c.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := db.Restore(bytes.NewReader(stream)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Restore after Close: %v", err)
	}
}

// Close while a snapshot is open does not block; the snapshot keeps working
// and the file is closed (and unlocked) on Release.
func TestCloseWithOpenSnapshot(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	putBlobs(t, db, testBlob("a", 1, 1))
	s, err := db.BeginSnapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.WriteTo(io.Discard); err != nil {
		t.Fatalf("WriteTo after Close: %v", err)
	}
	s.Release()
	openAt(t, path, Options{Timeout: 1e9}) // the lock was released
}
