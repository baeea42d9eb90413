package space

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/blobnode/blobnode/volume"
)

// BenchmarkAllocFree measures Allocate+Free pairs in steady state (a heap
// holding a few thousand blobs of mixed sizes), excluding fsync: changes
// are sealed into a journal transaction every 1024 pairs, on a MemDevice.
func BenchmarkAllocFree(b *testing.B) {
	for _, bc := range []struct {
		name string
		size func(r *rand.Rand) int64
	}{
		{"4KiB", func(*rand.Rand) int64 { return 4 << 10 }},
		{"mixed-1KiB-1MiB", func(r *rand.Rand) int64 { return logUniform(r, 1<<10, 1<<20) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			g := volume.Geometry{SpageShift: 12, LpageShift: 24, VolumeSize: 1 << 30}
			_, _, a := testVolume(b, g, 1)
			r := rand.New(rand.NewPCG(1, 1))
			var live [][]Extent
			for range 2000 {
				exts, err := a.Allocate(bc.size(r))
				if err != nil {
					b.Fatal(err)
				}
				live = append(live, exts)
			}
			mustCommit(b, a)
			sizes := make([]int64, 4096)
			for i := range sizes {
				sizes[i] = bc.size(r)
			}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; b.Loop(); i++ {
				exts, err := a.Allocate(sizes[i&4095])
				if err != nil {
					b.Fatal(err)
				}
				j := r.IntN(len(live))
				if err := a.Free(live[j]); err != nil {
					b.Fatal(err)
				}
				live[j] = exts
				if i&1023 == 1023 {
					a.mu.Lock()
					a.sealLocked()
					a.mu.Unlock()
				}
			}
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pairs/s")
			b.StopTimer()
			mustCommit(b, a)
		})
	}
}

// BenchmarkSpaceEfficiency allocates log-uniform sizes from 1 KiB to 64 MiB
// and reports allocated/requested for blobs of 64 KiB and more, and the
// largest waste of any blob in spages.
func BenchmarkSpaceEfficiency(b *testing.B) {
	g := volume.Geometry{SpageShift: 12, LpageShift: 24, VolumeSize: 64 << 30}
	for b.Loop() {
		r := rand.New(rand.NewPCG(3, 3))
		l := layout{spageShift: g.SpageShift, lpageShift: g.LpageShift, classes: int(g.LpageShift-g.SpageShift) + 1}
		var req, alloc int64
		var worst int64
		for range 100000 {
			size := logUniform(r, 1<<10, 64<<20)
			var got int64
			for _, c := range l.plan(nil, size) {
				got += l.pageSize(c)
			}
			worst = max(worst, got-size)
			if size >= 64<<10 {
				req += size
				alloc += got
			}
		}
		b.ReportMetric(float64(alloc)/float64(req), "alloc/req")
		b.ReportMetric(float64(worst)/float64(l.pageSize(0)), "max-waste-spages")
	}
}

// BenchmarkOpen opens a cleanly closed volume holding n live allocations:
// the time must not grow with n.
func BenchmarkOpen(b *testing.B) {
	for _, n := range []int{10_000, 100_000} {
		b.Run(byCount(n), func(b *testing.B) {
			g := volume.Geometry{SpageShift: 12, LpageShift: 24, VolumeSize: 1 << 30}
			path := filepath.Join(b.TempDir(), "vol")
			dev, err := volume.CreateFileDevice(path, g.VolumeSize)
			if err != nil {
				b.Fatal(err)
			}
			vol, err := FormatVolume(dev, volume.FormatOptions{Geometry: g})
			if err != nil {
				b.Fatal(err)
			}
			a, err := Open(vol)
			if err != nil {
				b.Fatal(err)
			}
			for range n {
				if _, err := a.Allocate(4 << 10); err != nil {
					b.Fatal(err)
				}
			}
			mustCommit(b, a)
			if err := vol.Close(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				dev, err := volume.OpenFileDevice(path)
				if err != nil {
					b.Fatal(err)
				}
				vol, err := volume.Open(dev, &g)
				if err != nil {
					b.Fatal(err)
				}
				a, err := Open(vol)
				if err != nil {
					b.Fatal(err)
				}
				if st := a.Stats(); st.UsedBytes != int64(n)*4<<10 {
					b.Fatalf("reopened with %d used bytes", st.UsedBytes)
				}
				b.StopTimer()
				if err := vol.Close(); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/open")
		})
	}
}

func byCount(n int) string { return fmt.Sprintf("live=%dk", n/1000) }
