package catalog

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// BenchmarkPutBlob measures PutBlob in Updates of 100 puts each (the shape of
// a batch of applied Raft entries). Bytes are encoded record bytes.
func BenchmarkPutBlob(b *testing.B) {
	const batch = 100
	for _, bc := range []struct {
		name   string
		size   int64
		noSync bool
	}{
		{"1MiB/NoSync", 1 << 20, true},
		{"64MiB/NoSync", 64 << 20, true},
		{"1MiB/Sync", 1 << 20, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			db := openTest(b, Options{NoSync: bc.noSync, InitialMmapSize: 1 << 30})
			proto := testBlob("x", 1, bc.size)
			enc, err := EncodeBlob(proto)
			if err != nil {
				b.Fatal(err)
			}
			keys := make([]string, b.N)
			for i := range keys {
				keys[i] = fmt.Sprintf("bucket-%02d/object-%09d", i%64, i)
			}
			b.SetBytes(int64(len(enc)))
			b.ReportAllocs()
			b.ResetTimer()
			for start := 0; start < b.N; start += batch {
				err := db.Update(func(tx *Tx) error {
					for i := start; i < min(start+batch, b.N); i++ {
						blob := proto
						blob.Key, blob.Version = keys[i], uint64(i+1)
						if err := tx.PutBlob(blob); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "puts/s")
		})
	}
}

// BenchmarkListBlobs lists pages of 100 keys from a random position in a
// catalog of 100,000 blobs.
func BenchmarkListBlobs(b *testing.B) {
	const n, page = 100_000, 100
	db := openTest(b, Options{NoSync: true, InitialMmapSize: 1 << 30})
	for start := 0; start < n; start += 1000 {
		mustUpdate(b, db, func(tx *Tx) error {
			for i := start; i < start+1000; i++ {
				if err := tx.PutBlob(testBlob(fmt.Sprintf("dir-%02d/obj-%07d", i%100, i), uint64(i+1), 1<<20)); err != nil {
					return err
				}
			}
			return nil
		})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	b.ReportAllocs()
	b.ResetTimer()
	listed := 0
	for b.Loop() {
		d := rng.IntN(100)
		after := fmt.Sprintf("dir-%02d/obj-%07d", d, rng.IntN(n))
		err := db.View(func(tx *Tx) error {
			blobs, _, err := tx.ListBlobs(fmt.Sprintf("dir-%02d/", d), after, page)
			listed += len(blobs)
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(listed)/b.Elapsed().Seconds(), "blobs/s")
}
