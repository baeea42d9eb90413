package catalog

import (
	"crypto/sha256"
	"fmt"
	"testing"
)

func digestOf(t *testing.T, db *DB) Digest {
	t.Helper()
	var d Digest
	if err := db.View(func(tx *Tx) error {
		var err error
		d, err = tx.Digest()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDigest: two catalogs with the same blobs, written in different
// orders, digest alike; any change to a digested field changes it; fields
// outside the digest (content type, creation time) do not.
func TestDigest(t *testing.T) {
	a, b := openTest(t, Options{}), openTest(t, Options{})
	if d := digestOf(t, a); d.SHA256 != sha256.Sum256(nil) || d.Blobs != 0 {
		t.Fatalf("empty catalog: %x, %d blobs", d.SHA256, d.Blobs)
	}
	blobs := []Blob{testBlob("x", 3, 10), testBlob("a/b", 5, 300<<10), testBlob("m", 7, 0)}
	put := func(db *DB, index uint64, bs ...Blob) {
		t.Helper()
		if err := db.Update(func(tx *Tx) error {
			for _, bl := range bs {
				if err := tx.PutBlob(bl); err != nil {
					return err
				}
			}
			return tx.SetAppliedIndex(index)
		}); err != nil {
			t.Fatal(err)
		}
	}
	put(a, 8, blobs...)
	put(b, 8, blobs[2], blobs[0], blobs[1])
	da, db := digestOf(t, a), digestOf(t, b)
	if da != db || da.Blobs != 3 || da.AppliedIndex != 8 {
		t.Fatalf("same blobs: %+v vs %+v", da, db)
	}

	other := testBlob("x", 3, 10)
	other.ContentType, other.Created = "text/plain", 1
	put(b, 9, other)
	if d := digestOf(t, b); d.SHA256 != da.SHA256 || d.AppliedIndex != 9 {
		t.Fatalf("content type and creation time are not digested: %+v", d)
	}
	for name, change := range map[string]func(*Blob){
		"version":  func(b *Blob) { b.Version++ },
		"size":     func(b *Blob) { b.Size-- },
		"checksum": func(b *Blob) { b.Checksums[0]++ },
		"key":      func(b *Blob) { b.Key = "y" },
	} {
		c := openTest(t, Options{})
		bl := testBlob("x", 3, 10)
		change(&bl)
		put(c, 8, bl, blobs[1], blobs[2])
		if d := digestOf(t, c); d.SHA256 == da.SHA256 {
			t.Errorf("a changed %s leaves the digest alike", name)
		}
	}
}

// BenchmarkDigest100k measures /cluster's digest cost on 100,000 blobs.
func BenchmarkDigest100k(b *testing.B) {
	db := openTest(b, Options{})
	for i := 0; i < 100_000; i += 10_000 {
		if err := db.Update(func(tx *Tx) error {
			for j := i; j < i+10_000; j++ {
				if err := tx.PutBlob(testBlob(fmt.Sprintf("bench/%08d", j), uint64(j+1), 1000)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for range b.N {
		if err := db.View(func(tx *Tx) error { _, err := tx.Digest(); return err }); err != nil {
			b.Fatal(err)
		}
	}
}
