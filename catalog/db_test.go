package catalog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bbolt "go.etcd.io/bbolt"
)

func TestReopenKeepsEverything(t *testing.T) {
	for _, noSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoSync=%v", noSync), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "catalog.db")
			db, err := Open(path, Options{NoSync: noSync})
			if err != nil {
				t.Fatal(err)
			}
			b := testBlob("dir/key", 42, 3*testChunk)
			r := testReservation(43, 4096, 1234)
			mustUpdate(t, db, func(tx *Tx) error {
				if err := tx.PutBlob(b); err != nil {
					return err
				}
				if err := tx.PutReservation(r); err != nil {
					return err
				}
				if err := tx.PutMeta("geometry", []byte("g")); err != nil {
					return err
				}
				if err := tx.MarkLocal(b.Key, b.Version); err != nil {
					return err
				}
				return tx.SetAppliedIndex(43)
			})
			if err := db.Sync(); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			if err := db.Close(); err != nil {
				t.Fatalf("second Close: %v", err)
			}
			if err := db.View(func(*Tx) error { return nil }); !errors.Is(err, ErrClosed) {
				t.Fatalf("View after Close: %v", err)
			}
			if _, err := db.BeginSnapshot(); !errors.Is(err, ErrClosed) {
				t.Fatalf("BeginSnapshot after Close: %v", err)
			}

			db = openAt(t, path, Options{NoSync: noSync})
			mustView(t, db, func(tx *Tx) error {
				got, ok, err := tx.GetBlob(b.Key)
				if err != nil || !ok || !reflect.DeepEqual(got, b) {
					return fmt.Errorf("blob after reopen: %+v %v %v", got, ok, err)
				}
				gr, ok, err := tx.GetReservation(r.ID)
				if err != nil || !ok || !reflect.DeepEqual(gr, r) {
					return fmt.Errorf("reservation after reopen: %+v %v %v", gr, ok, err)
				}
				if v, err := tx.GetMeta("geometry"); err != nil || string(v) != "g" {
					return fmt.Errorf("meta after reopen: %q %v", v, err)
				}
				if v, ok, err := tx.LocalVersion(b.Key); err != nil || !ok || v != b.Version {
					return fmt.Errorf("local after reopen: %d %v %v", v, ok, err)
				}
				if i, err := tx.AppliedIndex(); err != nil || i != 43 {
					return fmt.Errorf("applied index after reopen: %d %v", i, err)
				}
				if n, err := tx.CountBlobs(); err != nil || n != 1 {
					return fmt.Errorf("count after reopen: %d %v", n, err)
				}
				return nil
			})
		})
	}
}

func TestOpenRefusesUnknownLayout(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	setLayout(t, path, layoutVersion+1)
	_, err = Open(path, Options{})
	if !errors.Is(err, ErrUnknownLayout) {
		t.Fatalf("Open with layout %d: %v", layoutVersion+1, err)
	}
	t.Logf("error reads: %v", err)
}

func setLayout(t *testing.T, path string, v uint64) {
	t.Helper()
	bdb, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bbolt.Tx) error {
		return tx.Bucket([]byte(bucketMeta)).Put([]byte(metaLayout), binary.BigEndian.AppendUint64(nil, v))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefusesForeignFiles(t *testing.T) {
	dir := t.TempDir()

	// A bbolt file that is not a catalog.
	foreign := filepath.Join(dir, "foreign.db")
	bdb, err := bbolt.Open(foreign, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucket([]byte("something-else"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(foreign, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Open(foreign bbolt file): %v", err)
	}

	// A catalog that lost a bucket.
	damaged := filepath.Join(dir, "damaged.db")
	db, err := Open(damaged, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	bdb, err = bbolt.Open(damaged, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Update(func(tx *bbolt.Tx) error { return tx.DeleteBucket([]byte(bucketResv)) }); err != nil {
		t.Fatal(err)
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(damaged, Options{}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("Open(catalog without reservations bucket): %v", err)
	}

	// Not a bbolt file at all.
	junk := filepath.Join(dir, "junk.db")
	if err := os.WriteFile(junk, make([]byte, 64<<10), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(junk, Options{}); err == nil {
		t.Errorf("Open(zero-filled file) succeeded")
	}
}

func TestOpenTimeoutWhileLocked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	openAt(t, path, Options{})
	start := time.Now()
	_, err := Open(path, Options{Timeout: 50 * time.Millisecond})
	if err == nil {
		t.Fatal("second Open of a locked file succeeded")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("Open took %v", time.Since(start))
	}
}

func TestOpenRemovesRestoreLeftovers(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "catalog.db")
	leftover := filepath.Join(dir, "catalog.db"+restoreTempInfix+"12345")
	unrelated := filepath.Join(dir, "other.db"+restoreTempInfix+"1")
	for _, p := range []string{leftover, unrelated} {
		if err := os.WriteFile(p, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	openAt(t, path, Options{})
	if _, err := os.Stat(leftover); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("leftover still there: %v", err)
	}
	if _, err := os.Stat(unrelated); err != nil {
		t.Errorf("unrelated file removed: %v", err)
	}
}

func TestCheckFindsDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	putBlobs(t, db, testBlob("a", 1, 1), testBlob("b", 2, 1))
	mustUpdate(t, db, func(tx *Tx) error { return tx.PutReservation(testReservation(5, 1, 10)) })
	if err := db.Check(); err != nil {
		t.Fatalf("Check of a sound catalog: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	// Damage it behind the catalog's back, in four ways.
	bdb, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bbolt.Tx) error {
		if err := tx.Bucket([]byte(bucketBlobs)).Put([]byte("c"), []byte{1, 2, 3}); err != nil {
			return err
		}
		if err := tx.Bucket([]byte(bucketDeadline)).Delete(deadlineKey(10, 5)); err != nil {
			return err
		}
		if err := tx.Bucket([]byte(bucketDeadline)).Put(deadlineKey(1, 77), nil); err != nil {
			return err
		}
		return tx.Bucket([]byte(bucketLocal)).Put([]byte("zz"), binary.BigEndian.AppendUint64(nil, 1))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}

	db, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Check()
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Check: %v", err)
	}
	for _, want := range []string{`blob "c"`, "blob counter", "reservation 5 has no deadline", "(1, 77) has no reservation", `local mark "zz"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Check did not report %q; got:\n%v", want, err)
		}
	}
	mustView(t, db, func(tx *Tx) error {
		if errs := tx.Check(); len(errs) != 5 {
			return fmt.Errorf("Tx.Check found %d problems, want 5: %v", len(errs), errs)
		}
		return nil
	})
	// Reads of the damaged parts report corruption, not panics.
	if err := db.View(func(tx *Tx) error { _, _, err := tx.GetBlob("c"); return err }); !errors.Is(err, ErrCorrupt) {
		t.Errorf("GetBlob of a damaged record: %v", err)
	}
	if err := db.View(func(tx *Tx) error { _, err := tx.ExpiredReservations(100, 10); return err }); !errors.Is(err, ErrCorrupt) {
		t.Errorf("ExpiredReservations over a dangling index entry: %v", err)
	}
	if err := db.Update(func(tx *Tx) error { return tx.DeleteReservation(5) }); !errors.Is(err, ErrCorrupt) {
		t.Errorf("DeleteReservation without index entry: %v", err)
	}
}

// A file without the local bucket (for example a bare snapshot image) opens
// with an empty one.
func TestOpenRecreatesLocalBucket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	putBlobs(t, db, testBlob("a", 1, 1))
	mustUpdate(t, db, func(tx *Tx) error { return tx.MarkLocal("a", 1) })
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	bdb, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Update(func(tx *bbolt.Tx) error { return tx.DeleteBucket([]byte(bucketLocal)) }); err != nil {
		t.Fatal(err)
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}
	db = openAt(t, path, Options{})
	mustView(t, db, func(tx *Tx) error {
		if _, ok, err := tx.LocalVersion("a"); ok || err != nil {
			return fmt.Errorf("LocalVersion = %v, %v", ok, err)
		}
		return nil
	})
	mustUpdate(t, db, func(tx *Tx) error { return tx.MarkLocal("a", 1) })
}

// TestOldLocalMarks: the marks of a catalog set aside are read back by key.
func TestOldLocalMarks(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old.db")
	db, err := Open(old, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for i, k := range []string{"a", "b"} {
		if err := db.Update(func(tx *Tx) error {
			if err := tx.PutBlob(Blob{Key: k, Version: uint64(i + 1), Size: 1, ChunkSize: 1, Extents: []Extent{{Offset: 4096 * int64(i+1), Length: 4096}}, Checksums: []uint32{1}}); err != nil {
				return err
			}
			return tx.MarkLocal(k, uint64(i+1))
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	m, err := OpenLocalMarks(old)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if v, ok := m.Version("b"); !ok || v != 2 {
		t.Fatalf("b: %d %v", v, ok)
	}
	if _, ok := m.Version("z"); ok {
		t.Fatal("z is marked")
	}
	if _, err := OpenLocalMarks(filepath.Join(dir, "missing.db")); err == nil {
		t.Fatal("marks of a missing file")
	}
}

// TestOldLocalMarksTorn: the catalog set aside after a crash was written
// without fsync and may hold pages bbolt cannot parse. Reading its marks
// then says so (Len) or finds nothing marked (Version); it never panics,
// which would stop every start of the node.
func TestOldLocalMarksTorn(t *testing.T) {
	old := filepath.Join(t.TempDir(), "old.db")
	db, err := Open(old, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var blobs []Blob
	for i := range 300 {
		blobs = append(blobs, testBlob(fmt.Sprintf("key/%04d", i), uint64(i+1), 1))
	}
	putBlobs(t, db, blobs...)
	mustUpdate(t, db, func(tx *Tx) error {
		for _, b := range blobs {
			if err := tx.MarkLocal(b.Key, b.Version); err != nil {
				return err
			}
		}
		return nil
	})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	img, err := os.ReadFile(old)
	if err != nil {
		t.Fatal(err)
	}
	spoilLeafPages(t, img)
	if err := os.WriteFile(old, img, 0o600); err != nil {
		t.Fatal(err)
	}
	m, err := OpenLocalMarks(old)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if n, err := m.Len(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Len of a torn file: %d, %v; want ErrCorrupt", n, err)
	}
	for _, b := range blobs {
		if v, ok := m.Version(b.Key); ok && v != b.Version {
			t.Fatalf("%s: marked %d in a torn file; it was %d", b.Key, v, b.Version)
		}
	}
}

// TestNoSyncCatalogFsyncsOnlyInSync: a NoSync catalog's only fsync is
// Sync's. bbolt otherwise fsyncs the file when a commit grows it; that
// fsync would consume (Linux reports a writeback error once) the error of
// an earlier commit's pages the kernel failed to write, the retried
// commit would succeed, and the loss would never fail the Sync that makes
// a stop clean.
func TestNoSyncCatalogFsyncsOnlyInSync(t *testing.T) {
	if o := (Options{NoSync: true}).bolt(); !o.NoSync || !o.NoGrowSync {
		t.Fatalf("NoSync catalog: bbolt NoSync %v, NoGrowSync %v; want both", o.NoSync, o.NoGrowSync)
	}
	if o := (Options{}).bolt(); o.NoSync || o.NoGrowSync {
		t.Fatalf("synced catalog: bbolt NoSync %v, NoGrowSync %v; want neither", o.NoSync, o.NoGrowSync)
	}
	// A NoSync catalog still grows and reopens with everything in it.
	path := filepath.Join(t.TempDir(), "catalog.db")
	db, err := Open(path, Options{NoSync: true, InitialMmapSize: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	value := make([]byte, 4096)
	for i := range 600 { // well past bbolt's first sizes
		if err := db.Update(func(tx *Tx) error { return tx.PutMeta(fmt.Sprintf("k%04d", i), value) }); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	db, err = Open(path, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Check(); err != nil {
		t.Fatalf("reopened NoSync catalog: %v", err)
	}
	if err := db.View(func(tx *Tx) error {
		if v, err := tx.GetMeta("k0599"); err != nil || len(v) != len(value) {
			return fmt.Errorf("k0599: %d bytes, %v", len(v), err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
