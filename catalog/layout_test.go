package catalog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	bbolt "go.etcd.io/bbolt"
)

// makeLayout1 writes at path the file a layout-1 build leaves: a catalog
// holding blobs, a reservation, a setting and a local mark, without the
// buckets layout 2 added, at layout version 1.
func makeLayout1(t *testing.T, path string) state {
	t.Helper()
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	putBlobs(t, db, testBlob("a", 1, 1), testBlob("b", 2, 3*testChunk))
	mustUpdate(t, db, func(tx *Tx) error {
		if err := tx.PutReservation(testReservation(5, 4096, 10)); err != nil {
			return err
		}
		if err := tx.PutMeta("geometry", []byte("g1")); err != nil {
			return err
		}
		if err := tx.MarkLocal("a", 1); err != nil {
			return err
		}
		return tx.SetAppliedIndex(42)
	})
	want := readState(t, db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	bdb, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bbolt.Tx) error {
		for _, name := range layout2Buckets() {
			if err := tx.DeleteBucket([]byte(name)); err != nil {
				return err
			}
		}
		return tx.Bucket([]byte(bucketMeta)).Put([]byte(metaLayout), binary.BigEndian.AppendUint64(nil, layoutV1))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}
	return want
}

func fileLayout(t *testing.T, path string) uint64 {
	t.Helper()
	bdb, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	var v uint64
	if err := bdb.View(func(tx *bbolt.Tx) error { v = layoutOf(tx); return nil }); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestOpenMigratesLayout1: a catalog written by a layout-1 build opens,
// keeps every record, is at layout 2 on disk, passes Check, and records
// requests and members.
func TestOpenMigratesLayout1(t *testing.T) {
	for _, noSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoSync=%v", noSync), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "catalog.db")
			want := makeLayout1(t, path)
			if got := fileLayout(t, path); got != layoutV1 {
				t.Fatalf("test file has layout %d", got)
			}
			db, err := Open(path, Options{NoSync: noSync})
			if err != nil {
				t.Fatalf("Open(layout 1): %v", err)
			}
			if got := readState(t, db); !reflect.DeepEqual(got, want) {
				t.Fatalf("state after migration:\n got %+v\nwant %+v", got, want)
			}
			if err := db.Check(); err != nil {
				t.Fatalf("Check after migration: %v", err)
			}
			mustUpdate(t, db, func(tx *Tx) error {
				if err := tx.PutRequest(Request{ID: 1, Index: 42}); err != nil {
					return err
				}
				return tx.PutMember(Member{ID: "n1", APIAddr: "a:1"})
			})
			if err := db.Close(); err != nil {
				t.Fatal(err)
			}
			// The upgrade was durable and is not repeated.
			if got := fileLayout(t, path); got != layoutVersion {
				t.Fatalf("layout on disk after Open: %d; want %d", got, layoutVersion)
			}
			db = openAt(t, path, Options{})
			if got := requestIDs(t, db); len(got) != 1 {
				t.Fatalf("requests after reopen: %v", got)
			}
		})
	}
}

// frameBolt frames a raw bbolt file the way Snapshot.WriteTo does.
func frameBolt(t *testing.T, path string) []byte {
	t.Helper()
	bdb, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer bdb.Close()
	var body bytes.Buffer
	if err := bdb.View(func(tx *bbolt.Tx) error { _, err := tx.WriteTo(&body); return err }); err != nil {
		t.Fatal(err)
	}
	out := append([]byte(snapshotMagic), binary.BigEndian.AppendUint64(nil, uint64(body.Len()))...)
	out = append(out, body.Bytes()...)
	crc := newCRC()
	crc.Write(body.Bytes())
	return binary.BigEndian.AppendUint32(out, crc.Sum32())
}

// TestRestoreLayout1Snapshot: a snapshot sent by a layout-1 node restores:
// its records arrive, the new buckets are there and empty (the sender never
// recorded requests or members; the receiver's own are replaced, like every
// replicated record), and the result is layout 2. A snapshot of an unknown
// layout is refused and leaves the catalog alone.
func TestRestoreLayout1Snapshot(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "layout1.db")
	want := makeLayout1(t, src)
	stream := frameBolt(t, src)

	db := openAt(t, filepath.Join(dir, "catalog.db"), Options{NoSync: true})
	putBlobs(t, db, testBlob("a", 1, 1), testBlob("z", 9, 1))
	mustUpdate(t, db, func(tx *Tx) error {
		if err := tx.MarkLocal("a", 1); err != nil {
			return err
		}
		if err := tx.PutRequest(Request{ID: 7, Index: 1}); err != nil {
			return err
		}
		if err := tx.PutMember(Member{ID: "n9"}); err != nil {
			return err
		}
		return tx.SetAppliedIndex(3)
	})
	if err := db.Restore(bytes.NewReader(stream)); err != nil {
		t.Fatalf("Restore(layout-1 snapshot): %v", err)
	}
	if got := readState(t, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("restored state:\n got %+v\nwant %+v", got, want)
	}
	if got := requestIDs(t, db); len(got) != 0 {
		t.Fatalf("requests after restoring a layout-1 snapshot: %v", got)
	}
	mustView(t, db, func(tx *Tx) error {
		if ms, err := tx.Members(); err != nil || len(ms) != 0 {
			return fmt.Errorf("members after restore: %v, %v", ms, err)
		}
		return nil
	})
	if err := db.Check(); err != nil {
		t.Fatalf("Check: %v", err)
	}
	// The received catalog is layout 2, so a snapshot of it is too.
	again := openTest(t, Options{})
	if err := again.Restore(bytes.NewReader(snapshotBytes(t, db))); err != nil {
		t.Fatalf("second restore: %v", err)
	}

	setLayout(t, src, layoutVersion+1)
	err := db.Restore(bytes.NewReader(frameBolt(t, src)))
	if !errors.Is(err, ErrUnknownLayout) {
		t.Fatalf("Restore(layout %d snapshot): %v; want ErrUnknownLayout", layoutVersion+1, err)
	}
	if got := readState(t, db); !reflect.DeepEqual(got, want) {
		t.Fatalf("a refused restore changed the catalog")
	}
}

// TestCheckFindsRequestDamage: Check reports each kind of damage to the
// request and member buckets.
func TestCheckFindsRequestDamage(t *testing.T) {
	path := filepath.Join(t.TempDir(), "catalog.db")
	db, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, db, func(tx *Tx) error {
		for _, r := range []Request{{ID: 1, Index: 2}, {ID: 2, Index: 3}, {ID: 3, Index: 4}} {
			if err := tx.PutRequest(r); err != nil {
				return err
			}
		}
		if err := tx.PutMember(Member{ID: "n1"}); err != nil {
			return err
		}
		return tx.SetAppliedIndex(5)
	})
	if err := db.Check(); err != nil {
		t.Fatalf("Check of a sound catalog: %v", err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	future, err := encodeRequest(Request{Index: 9})
	if err != nil {
		t.Fatal(err)
	}
	bdb, err := bbolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = bdb.Update(func(tx *bbolt.Tx) error {
		reqs, idx := tx.Bucket([]byte(bucketRequests)), tx.Bucket([]byte(bucketRequestIndex))
		members := tx.Bucket([]byte(bucketMembers))
		for _, err := range []error{
			reqs.Put(requestKey(1), []byte{requestFormatV1}),        // undecodable
			idx.Delete(requestIndexKey(3, 2)),                       // request 2 loses its entry
			idx.Put(requestIndexKey(1, 77), nil),                    // an entry without a request
			idx.Put(requestIndexKey(6, 3), nil),                     // a second entry for request 3
			reqs.Put(requestKey(4), future),                         // above the applied index
			idx.Put(requestIndexKey(9, 4), nil),                     // (its entry is fine)
			members.Put([]byte("n2"), []byte{memberFormatV1, 5, 0}), // undecodable
		} {
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := bdb.Close(); err != nil {
		t.Fatal(err)
	}
	db = openAt(t, path, Options{})
	var errs []error
	mustView(t, db, func(tx *Tx) error { errs = tx.Check(); return nil })
	wantAll := []string{
		"request 1: catalog: corrupt",
		"request 2 has no index entry",
		"(1, 77) has no request",
		"(6, 3), request is at index 4",
		"request 4 recorded at index 9, above the applied index 5",
		`member "n2"`,
	}
	joined := errors.Join(errs...)
	for _, w := range wantAll {
		if !strings.Contains(joined.Error(), w) {
			t.Errorf("Check did not report %q; got:\n%v", w, joined)
		}
	}
	for _, e := range errs {
		if !errors.Is(e, ErrCorrupt) {
			t.Errorf("problem does not wrap ErrCorrupt: %v", e)
		}
	}
	// And the counts differ: five index entries for four requests.
	if len(errs) != len(wantAll)+1 {
		t.Errorf("Check found %d problems, want %d: %v", len(errs), len(wantAll)+1, joined)
	}
	// Pruning over damage reports it instead of deleting blindly.
	err = db.Update(func(tx *Tx) error { _, err := tx.PruneRequests(1); return err })
	if !errors.Is(err, ErrCorrupt) {
		t.Errorf("PruneRequests over a dangling entry: %v", err)
	}
	// openAt's cleanup would fail on the damage: repair it.
	mustUpdate(t, db, func(tx *Tx) error {
		b := tx.tx
		for _, err := range []error{
			b.DeleteBucket([]byte(bucketRequests)), b.DeleteBucket([]byte(bucketRequestIndex)), b.DeleteBucket([]byte(bucketMembers)),
		} {
			if err != nil {
				return err
			}
		}
		for _, name := range layout2Buckets() {
			if _, err := b.CreateBucket([]byte(name)); err != nil {
				return err
			}
		}
		return nil
	})
}
