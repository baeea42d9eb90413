package catalog

import (
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestBlobPutGetDelete(t *testing.T) {
	db := openTest(t, Options{})
	long := strings.Repeat("k", MaxKeyLen)
	blobs := []Blob{testBlob("a", 1, 10), testBlob("dir/ü/x", 2, 0), testBlob(long, 3, testChunk*3)}
	putBlobs(t, db, blobs...)

	mustView(t, db, func(tx *Tx) error {
		for _, want := range blobs {
			got, ok, err := tx.GetBlob(want.Key)
			if err != nil || !ok {
				return fmt.Errorf("GetBlob(%q) = %v, %v", want.Key, ok, err)
			}
			if !reflect.DeepEqual(got, want) {
				return fmt.Errorf("GetBlob(%q):\n got %+v\nwant %+v", want.Key, got, want)
			}
		}
		if _, ok, err := tx.GetBlob("missing"); ok || err != nil {
			return fmt.Errorf("GetBlob(missing) = %v, %v", ok, err)
		}
		if n, err := tx.CountBlobs(); n != 3 || err != nil {
			return fmt.Errorf("CountBlobs = %d, %v", n, err)
		}
		return nil
	})

	// Replace, delete, delete again (no-op), delete missing.
	mustUpdate(t, db, func(tx *Tx) error {
		if err := tx.PutBlob(testBlob("a", 9, 20)); err != nil {
			return err
		}
		if err := tx.DeleteBlob("dir/ü/x"); err != nil {
			return err
		}
		if err := tx.DeleteBlob("dir/ü/x"); err != nil {
			return err
		}
		return tx.DeleteBlob("never")
	})
	mustView(t, db, func(tx *Tx) error {
		if b, _, _ := tx.GetBlob("a"); b.Version != 9 {
			return fmt.Errorf("replaced version = %d", b.Version)
		}
		if _, ok, _ := tx.GetBlob("dir/ü/x"); ok {
			return errors.New("deleted blob still there")
		}
		if n, err := tx.CountBlobs(); n != 2 || err != nil {
			return fmt.Errorf("CountBlobs = %d, %v", n, err)
		}
		return nil
	})
}

func TestInvalidKeys(t *testing.T) {
	db := openTest(t, Options{})
	tooLong := strings.Repeat("x", MaxKeyLen+1)
	for _, key := range []string{"", tooLong} {
		err := db.Update(func(tx *Tx) error { return tx.PutBlob(testBlob(key, 1, 1)) })
		if !errors.Is(err, ErrInvalidKey) {
			t.Errorf("PutBlob(%d-byte key): %v", len(key), err)
		}
		err = db.View(func(tx *Tx) error { _, _, err := tx.GetBlob(key); return err })
		if !errors.Is(err, ErrInvalidKey) {
			t.Errorf("GetBlob(%d-byte key): %v", len(key), err)
		}
		err = db.Update(func(tx *Tx) error { return tx.PutMeta(key, nil) })
		if !errors.Is(err, ErrInvalidKey) {
			t.Errorf("PutMeta(%d-byte name): %v", len(key), err)
		}
	}
	err := db.Update(func(tx *Tx) error { return tx.PutBlob(Blob{Key: "k", Size: -1}) })
	if !errors.Is(err, ErrInvalidRecord) {
		t.Errorf("PutBlob(invalid record): %v", err)
	}
}

func TestListBlobs(t *testing.T) {
	db := openTest(t, Options{})
	keys := []string{
		"a", "a/", "a/b", "a/b/c", "a/c", "ab", "b", "b/1", "b/2", "b/10",
		"photos/2024/ü.jpg", "photos/2024/z.jpg", "photos/2025/a.jpg", "é", "日本/語", "日本語",
		"\x00\x01", "a\xff",
	}
	var blobs []Blob
	for i, k := range keys {
		blobs = append(blobs, testBlob(k, uint64(i+1), int64(i)))
	}
	putBlobs(t, db, blobs...)
	sorted := slices.Clone(keys)
	slices.Sort(sorted)

	// want computes the expected page straight from the sorted key list.
	want := func(prefix, startAfter string, limit int) ([]string, bool) {
		var out []string
		for _, k := range sorted {
			if strings.HasPrefix(k, prefix) && k > startAfter {
				out = append(out, k)
			}
		}
		if len(out) > limit {
			return out[:limit], true
		}
		return out, false
	}

	tests := []struct {
		prefix, startAfter string
		limit              int
	}{
		{"", "", 1000},
		{"", "", 1},
		{"", "", len(keys)},
		{"", "", len(keys) - 1},
		{"", "", len(keys) + 1},
		{"a", "", 100},
		{"a", "", 2},
		{"a/", "", 100},
		{"a/b", "", 100},      // a prefix that is itself a key
		{"a/b", "a/b", 100},   // startAfter the prefix key
		{"a/b", "a/b/c", 100}, // startAfter the last match
		{"a", "a/b", 100},
		{"a", "a/bb", 100}, // startAfter not a key
		{"a", "0", 100},    // startAfter before the prefix
		{"a", "b", 100},    // startAfter after the prefix range
		{"b/", "b/1", 1},
		{"b/", "b/1", 2},
		{"photos/2024/", "", 10},
		{"photos/", "photos/2024/ü.jpg", 10},
		{"日本", "", 10},
		{"é", "", 10},
		{"zzz", "", 10}, // after every key
		{"\x00", "", 10},
		{"a\xff", "", 10},
		{"", "日本語", 10}, // startAfter the last key
	}
	for _, tc := range tests {
		name := fmt.Sprintf("prefix=%q/after=%q/limit=%d", tc.prefix, tc.startAfter, tc.limit)
		t.Run(name, func(t *testing.T) {
			wantKeys, wantMore := want(tc.prefix, tc.startAfter, tc.limit)
			mustView(t, db, func(tx *Tx) error {
				got, more, err := tx.ListBlobs(tc.prefix, tc.startAfter, tc.limit)
				if err != nil {
					return err
				}
				if !slices.Equal(blobKeys(got), wantKeys) || more != wantMore {
					return fmt.Errorf("got %q more=%v, want %q more=%v", blobKeys(got), more, wantKeys, wantMore)
				}
				for _, b := range got {
					if i := slices.Index(keys, b.Key); !reflect.DeepEqual(b, blobs[i]) {
						return fmt.Errorf("record of %q differs", b.Key)
					}
				}
				return nil
			})
		})
	}

	t.Run("paginate to the end", func(t *testing.T) {
		for _, prefix := range []string{"", "a", "b/", "photos/", "none"} {
			for limit := 1; limit <= len(keys)+1; limit++ {
				var all []string
				after := ""
				for pages := 0; ; pages++ {
					if pages > len(keys)+1 {
						t.Fatalf("prefix %q limit %d: pagination does not end", prefix, limit)
					}
					var page []Blob
					var more bool
					mustView(t, db, func(tx *Tx) (err error) {
						page, more, err = tx.ListBlobs(prefix, after, limit)
						return err
					})
					all = append(all, blobKeys(page)...)
					if !more {
						break
					}
					if len(page) != limit {
						t.Fatalf("prefix %q limit %d: short page %d with more", prefix, limit, len(page))
					}
					after = page[len(page)-1].Key
				}
				wantAll, _ := want(prefix, "", len(keys)+1)
				if !slices.Equal(all, wantAll) {
					t.Fatalf("prefix %q limit %d: got %q want %q", prefix, limit, all, wantAll)
				}
			}
		}
	})

	t.Run("bad limit", func(t *testing.T) {
		for _, limit := range []int{0, -1} {
			err := db.View(func(tx *Tx) error { _, _, err := tx.ListBlobs("", "", limit); return err })
			if !errors.Is(err, ErrInvalidArgument) {
				t.Errorf("limit %d: %v", limit, err)
			}
		}
	})
}

func TestReservations(t *testing.T) {
	db := openTest(t, Options{})
	// Deadlines out of ID order, with ties and a negative one.
	rs := []Reservation{
		testReservation(1, 4096, 500),
		testReservation(2, 8192, 100),
		testReservation(3, 0, 300),
		testReservation(4, 1, 100),
		testReservation(5, 4096, -50),
		testReservation(6, 4096, 1<<62),
	}
	mustUpdate(t, db, func(tx *Tx) error {
		for _, r := range rs {
			if err := tx.PutReservation(r); err != nil {
				return err
			}
		}
		return nil
	})
	mustView(t, db, func(tx *Tx) error {
		for _, want := range rs {
			got, ok, err := tx.GetReservation(want.ID)
			if err != nil || !ok || !reflect.DeepEqual(got, want) {
				return fmt.Errorf("GetReservation(%d) = %+v, %v, %v", want.ID, got, ok, err)
			}
		}
		if _, ok, err := tx.GetReservation(99); ok || err != nil {
			return fmt.Errorf("GetReservation(99) = %v, %v", ok, err)
		}
		return nil
	})

	ids := func(rs []Reservation) []uint64 {
		out := make([]uint64, len(rs))
		for i, r := range rs {
			out[i] = r.ID
		}
		return out
	}
	expired := func(now int64, limit int) []uint64 {
		t.Helper()
		var got []Reservation
		mustView(t, db, func(tx *Tx) (err error) {
			got, err = tx.ExpiredReservations(now, limit)
			return err
		})
		return ids(got)
	}
	tests := []struct {
		now   int64
		limit int
		want  []uint64
	}{
		{-100, 10, nil},
		{-50, 10, []uint64{5}},
		{99, 10, []uint64{5}},
		{100, 10, []uint64{5, 2, 4}},
		{100, 2, []uint64{5, 2}},
		{499, 10, []uint64{5, 2, 4, 3}},
		{500, 10, []uint64{5, 2, 4, 3, 1}},
		{1 << 62, 100, []uint64{5, 2, 4, 3, 1, 6}},
		{1 << 62, 1, []uint64{5}},
	}
	for _, tc := range tests {
		if got := expired(tc.now, tc.limit); !slices.Equal(got, tc.want) {
			t.Errorf("ExpiredReservations(%d, %d) = %v, want %v", tc.now, tc.limit, got, tc.want)
		}
	}

	// Moving a deadline and deleting keep the index in step.
	mustUpdate(t, db, func(tx *Tx) error {
		if err := tx.PutReservation(testReservation(2, 8192, 1000)); err != nil {
			return err
		}
		if err := tx.DeleteReservation(4); err != nil {
			return err
		}
		return tx.DeleteReservation(4) // missing: no-op
	})
	if got, want := expired(500, 10), []uint64{5, 3, 1}; !slices.Equal(got, want) {
		t.Errorf("after move and delete: %v, want %v", got, want)
	}
	if got, want := expired(1000, 10), []uint64{5, 3, 1, 2}; !slices.Equal(got, want) {
		t.Errorf("after move and delete: %v, want %v", got, want)
	}

	var owned []Extent
	mustView(t, db, func(tx *Tx) error {
		return tx.ForEachOwnedExtent(func(e Extent) error { owned = append(owned, e); return nil })
	})
	if len(owned) != 4 { // reservations 1, 2, 5, 6 have extents; 3 is empty
		t.Errorf("owned extents %v", owned)
	}

	err := db.Update(func(tx *Tx) error { return tx.PutReservation(testReservation(0, 1, 1)) })
	if !errors.Is(err, ErrInvalidRecord) {
		t.Errorf("PutReservation(ID 0): %v", err)
	}
	err = db.View(func(tx *Tx) error { _, err := tx.ExpiredReservations(0, 0); return err })
	if !errors.Is(err, ErrInvalidArgument) {
		t.Errorf("ExpiredReservations limit 0: %v", err)
	}
}

func TestForEachOwnedExtent(t *testing.T) {
	db := openTest(t, Options{})
	b1 := testBlob("x", 1, 10)
	b2 := Blob{Key: "y", Version: 2, Size: 5000, ChunkSize: testChunk, Checksums: []uint32{1},
		Extents: []Extent{{1 << 20, 4096}, {2 << 20, 1024}}}
	r := testReservation(9, 100, 5)
	mustUpdate(t, db, func(tx *Tx) error {
		if err := tx.PutBlob(b1); err != nil {
			return err
		}
		if err := tx.PutBlob(b2); err != nil {
			return err
		}
		return tx.PutReservation(r)
	})
	var got []Extent
	mustView(t, db, func(tx *Tx) error {
		return tx.ForEachOwnedExtent(func(e Extent) error { got = append(got, e); return nil })
	})
	want := append(append(slices.Clone(b1.Extents), b2.Extents...), r.Extents...)
	if !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	stop := errors.New("stop")
	err := db.View(func(tx *Tx) error {
		return tx.ForEachOwnedExtent(func(Extent) error { return stop })
	})
	if !errors.Is(err, stop) {
		t.Fatalf("callback error not returned: %v", err)
	}
}

func TestAppliedIndexSameTransaction(t *testing.T) {
	db := openTest(t, Options{})
	mustView(t, db, func(tx *Tx) error {
		if i, err := tx.AppliedIndex(); i != 0 || err != nil {
			return fmt.Errorf("new catalog applied index = %d, %v", i, err)
		}
		return nil
	})
	mustUpdate(t, db, func(tx *Tx) error {
		if err := tx.PutBlob(testBlob("a", 5, 1)); err != nil {
			return err
		}
		return tx.SetAppliedIndex(5)
	})

	// A failing batch rolls back its changes and its applied index.
	boom := errors.New("apply failed")
	err := db.Update(func(tx *Tx) error {
		if err := tx.PutBlob(testBlob("b", 6, 1)); err != nil {
			return err
		}
		if err := tx.DeleteBlob("a"); err != nil {
			return err
		}
		if err := tx.PutReservation(testReservation(7, 1, 1)); err != nil {
			return err
		}
		if err := tx.SetAppliedIndex(7); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update: %v", err)
	}
	// So does a panicking one.
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("no panic")
			}
		}()
		_ = db.Update(func(tx *Tx) error {
			if err := tx.SetAppliedIndex(8); err != nil {
				return err
			}
			panic("apply panicked")
		})
	}()
	mustView(t, db, func(tx *Tx) error {
		if i, _ := tx.AppliedIndex(); i != 5 {
			return fmt.Errorf("applied index = %d after rollback, want 5", i)
		}
		if _, ok, _ := tx.GetBlob("a"); !ok {
			return errors.New("rolled-back delete took effect")
		}
		if _, ok, _ := tx.GetBlob("b"); ok {
			return errors.New("rolled-back put took effect")
		}
		if _, ok, _ := tx.GetReservation(7); ok {
			return errors.New("rolled-back reservation took effect")
		}
		if n, _ := tx.CountBlobs(); n != 1 {
			return fmt.Errorf("count %d after rollback", n)
		}
		return nil
	})

	err = db.Update(func(tx *Tx) error { return tx.SetAppliedIndex(4) })
	if !errors.Is(err, ErrIndexRegression) {
		t.Fatalf("SetAppliedIndex backwards: %v", err)
	}
	mustUpdate(t, db, func(tx *Tx) error { return tx.SetAppliedIndex(5) }) // equal is fine
}

func TestMeta(t *testing.T) {
	db := openTest(t, Options{})
	geometry := []byte{1, 2, 3, 4}
	mustUpdate(t, db, func(tx *Tx) error {
		if err := tx.PutMeta("geometry", geometry); err != nil {
			return err
		}
		geometry[0] = 99 // the catalog kept its own copy
		return tx.PutMeta("empty", nil)
	})
	mustView(t, db, func(tx *Tx) error {
		if v, err := tx.GetMeta("geometry"); err != nil || string(v) != "\x01\x02\x03\x04" {
			return fmt.Errorf("GetMeta(geometry) = %x, %v", v, err)
		}
		if v, err := tx.GetMeta("empty"); err != nil || len(v) != 0 {
			return fmt.Errorf("GetMeta(empty) = %x, %v", v, err)
		}
		if _, err := tx.GetMeta("unset"); !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("GetMeta(unset) = %v", err)
		}
		return nil
	})
	err := db.Update(func(tx *Tx) error { return tx.PutMeta("big", make([]byte, MaxMetaValueLen+1)) })
	if !errors.Is(err, ErrInvalidArgument) {
		t.Fatalf("oversized PutMeta: %v", err)
	}
}

func TestLocalMarks(t *testing.T) {
	db := openTest(t, Options{})
	putBlobs(t, db, testBlob("a", 1, 1), testBlob("b", 2, 1), testBlob("c", 3, 1))

	mustUpdate(t, db, func(tx *Tx) error {
		for _, kv := range []struct {
			k string
			v uint64
		}{{"a", 1}, {"b", 2}, {"c", 3}} {
			if err := tx.MarkLocal(kv.k, kv.v); err != nil {
				return err
			}
		}
		return nil
	})
	for _, tc := range []struct {
		key     string
		version uint64
	}{{"a", 2}, {"missing", 1}} {
		err := db.Update(func(tx *Tx) error { return tx.MarkLocal(tc.key, tc.version) })
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("MarkLocal(%q, %d): %v", tc.key, tc.version, err)
		}
	}

	mustUpdate(t, db, func(tx *Tx) error {
		if err := tx.PutBlob(testBlob("a", 1, 1)); err != nil { // same version: mark stays
			return err
		}
		if err := tx.PutBlob(testBlob("b", 20, 1)); err != nil { // new version: mark goes
			return err
		}
		if err := tx.DeleteBlob("c"); err != nil { // deleted: mark goes
			return err
		}
		return tx.ClearLocal("never-marked")
	})
	mustView(t, db, func(tx *Tx) error {
		for _, tc := range []struct {
			key     string
			version uint64
			ok      bool
		}{{"a", 1, true}, {"b", 0, false}, {"c", 0, false}} {
			v, ok, err := tx.LocalVersion(tc.key)
			if err != nil || ok != tc.ok || v != tc.version {
				return fmt.Errorf("LocalVersion(%q) = %d, %v, %v", tc.key, v, ok, err)
			}
		}
		return nil
	})
	mustUpdate(t, db, func(tx *Tx) error { return tx.ClearLocal("a") })
	mustView(t, db, func(tx *Tx) error {
		if _, ok, _ := tx.LocalVersion("a"); ok {
			return errors.New("ClearLocal left the mark")
		}
		return nil
	})
}

func TestTxUnusableAfterFn(t *testing.T) {
	db := openTest(t, Options{})
	var leaked *Tx
	mustUpdate(t, db, func(tx *Tx) error { leaked = tx; return nil })
	if err := leaked.PutBlob(testBlob("a", 1, 1)); !errors.Is(err, ErrTxClosed) {
		t.Errorf("PutBlob after Update: %v", err)
	}
	mustView(t, db, func(tx *Tx) error { leaked = tx; return nil })
	if _, _, err := leaked.GetBlob("a"); !errors.Is(err, ErrTxClosed) {
		t.Errorf("GetBlob after View: %v", err)
	}
	if _, err := leaked.AppliedIndex(); !errors.Is(err, ErrTxClosed) {
		t.Errorf("AppliedIndex after View: %v", err)
	}
}

func TestWriteInViewFails(t *testing.T) {
	db := openTest(t, Options{})
	if err := db.View(func(tx *Tx) error { return tx.PutBlob(testBlob("a", 1, 1)) }); err == nil {
		t.Fatal("PutBlob in View succeeded")
	}
}
