package volume

import (
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

// benchVolume formats and opens a 64 MiB volume in a real file.
func benchVolume(b *testing.B) *Volume {
	b.Helper()
	opts := FormatOptions{
		Geometry:  Geometry{SpageShift: 12, LpageShift: 20, VolumeSize: 64 << 20},
		StateSize: 1 << 20,
	}
	dev, err := CreateFileDevice(filepath.Join(b.TempDir(), "vol"), opts.Geometry.VolumeSize)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := Format(dev, opts); err != nil {
		b.Fatal(err)
	}
	v, err := Open(dev, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = v.Close() })
	return v
}

// runConcurrent runs op b.N times in total from n goroutines and fails
// the benchmark (on its own goroutine) if any op fails.
func runConcurrent(b *testing.B, n int, op func(worker int, i int64) error) {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, n)
	b.ResetTimer()
	for w := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= int64(b.N) {
					return
				}
				if err := op(w, i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
}

// BenchmarkJournalCommit: each op is one Commit of a ~100-byte txn (one
// 88-byte write) on a real file, from 1, 16 or 64 goroutines.
func BenchmarkJournalCommit(b *testing.B) {
	for _, committers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("committers=%d", committers), func(b *testing.B) {
			v := benchVolume(b)
			j := v.Journal()
			state := v.Superblock().Layout.StateOffset
			txns := make([]Txn, committers)
			payload := make([]byte, 88)
			before := j.Stats()
			runConcurrent(b, committers, func(w int, i int64) error {
				txn := &txns[w]
				txn.Reset()
				txn.Write(state+(i%8192)*128, payload)
				return j.Commit(context.Background(), txn)
			})
			st := j.Stats()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "commits/s")
			b.ReportMetric(float64(st.Fsyncs-before.Fsyncs)/float64(b.N), "fsyncs/commit")
			b.ReportMetric(float64(st.Commits-before.Commits)/float64(max(st.Groups-before.Groups, 1)), "txns/group")
		})
	}
}

// BenchmarkSyncData: each op writes 4 KiB to the heap and calls SyncData,
// from 1 or 16 goroutines.
func BenchmarkSyncData(b *testing.B) {
	for _, writers := range []int{1, 16} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			v := benchVolume(b)
			l := v.Superblock().Layout
			blocks := l.HeapSize / 4096
			bufs := make([][]byte, writers)
			for i := range bufs {
				bufs[i] = make([]byte, 4096)
			}
			b.SetBytes(4096)
			before := v.SyncStats()
			runConcurrent(b, writers, func(w int, i int64) error {
				if _, err := v.WriteAt(bufs[w], l.HeapOffset+(i%blocks)*4096); err != nil {
					return err
				}
				return v.SyncData(context.Background())
			})
			st := v.SyncStats()
			b.ReportMetric(float64(st.Syncs-before.Syncs)/float64(b.N), "fsyncs/op")
		})
	}
}
