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

// BenchmarkRequestTable measures the state machine's request bookkeeping
// in its steady state: a table of requestWindow records, then one Update
// per op holding a batch of entries, each pruning the record that fell out
// of the window, looking its own id up and recording it (the shape of
// FSM.applyEntry). Ids either random (every record on a random page) or
// ascending (one proposer's counter). pages/op is bbolt's count of pages
// the transaction wrote.
func BenchmarkRequestTable(b *testing.B) {
	const requestWindow, batch = 1 << 16, 8
	for _, bc := range []struct {
		name string
		id   func(rng *rand.Rand, i uint64) uint64
	}{
		{"random", func(rng *rand.Rand, i uint64) uint64 { return rng.Uint64() | 1 }},
		{"ascending", func(rng *rand.Rand, i uint64) uint64 { return 1<<40 + i }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			db := openTest(b, Options{NoSync: true, InitialMmapSize: 1 << 30})
			rng := rand.New(rand.NewPCG(1, 2))
			index := uint64(0)
			apply := func(tx *Tx) error {
				index++
				if index > requestWindow {
					if _, err := tx.PruneRequests(index - requestWindow); err != nil {
						return err
					}
				}
				id := bc.id(rng, index)
				if _, ok, err := tx.GetRequest(id); err != nil || ok {
					return fmt.Errorf("request %d: found %v, %v", id, ok, err)
				}
				return tx.PutRequest(Request{ID: id, Index: index, Version: index})
			}
			for index < requestWindow {
				mustUpdate(b, db, func(tx *Tx) error {
					for range 1000 {
						if err := apply(tx); err != nil {
							return err
						}
					}
					return tx.SetAppliedIndex(index)
				})
			}
			bolt := db.cur.bdb
			before := bolt.Stats().TxStats
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				mustUpdate(b, db, func(tx *Tx) error {
					for range batch {
						if err := apply(tx); err != nil {
							return err
						}
					}
					return tx.SetAppliedIndex(index)
				})
			}
			b.StopTimer()
			after := bolt.Stats().TxStats
			b.ReportMetric(float64(after.GetWrite()-before.GetWrite())/float64(b.N), "pages/op")
		})
	}
}
