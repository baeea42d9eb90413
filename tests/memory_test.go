package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// vmRSS returns the resident set size of process pid, from /proc.
func vmRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "VmRSS:") {
			continue
		}
		fields := strings.Fields(line) // VmRSS: 12345 kB
		if len(fields) != 3 || fields[2] != "kB" {
			return 0, fmt.Errorf("unexpected line %q", line)
		}
		kb, err := strconv.ParseInt(fields[1], 10, 64)
		return kb << 10, err
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("/proc/%d/status has no VmRSS", pid)
}

// rssSampler records the peak RSS of a process until stopped.
type rssSampler struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex // guards peak, samples, err
	peak int64
	n    int
	err  error
}

func sampleRSS(pid int) *rssSampler {
	s := &rssSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			rss, err := vmRSS(pid)
			s.mu.Lock()
			if err != nil && s.err == nil {
				s.err = err
			}
			s.peak = max(s.peak, rss)
			s.n++
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

// finish stops sampling and returns the peak and the number of samples.
func (s *rssSampler) finish() (peak int64, samples int, err error) {
	close(s.stop)
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak, s.n, s.err
}

// TestLargeUploadMemory streams a 1 GiB blob in and out of a node and
// checks that the node's resident memory does not grow with the blob: the
// body is streamed to the volume, never buffered whole.
func TestLargeUploadMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("1 GiB upload; skipped with -short")
	}
	const (
		size    = 1 << 30
		maxRise = 64 << 20
	)
	n := newNode(t, "-volume-size", "2GiB")
	// Warm up the request path (buffer pools, connections) so the baseline
	// is a serving node's, not an idle one's.
	warm := payload(20, 1<<20)
	n.put(t, "warm", warm)
	n.requireBlob(t, "warm", int64(len(warm)), sha256Of(warm))

	base, err := vmRSS(n.pid())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	// Upload with a known length, streamed from the generator.
	up := sampleRSS(n.pid())
	h := sha256.New()
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, n.base+blobPath("large/1GiB"), io.TeeReader(newGen(21, size), h))
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = size
	resp, err := n.client.Do(req)
	upPeak, upSamples, upErr := up.finish()
	if err != nil {
		t.Fatalf("PUT 1 GiB: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || !bytes.Contains(b, []byte(`"size":1073741824`)) {
		t.Fatalf("PUT 1 GiB: %d %s", resp.StatusCode, b)
	}
	upTime := time.Since(start)
	var sum [32]byte
	copy(sum[:], h.Sum(nil))

	// Download, streamed into the hash.
	downBase, err := vmRSS(n.pid())
	if err != nil {
		t.Fatal(err)
	}
	down := sampleRSS(n.pid())
	start = time.Now()
	status, got, gotSum, err := n.getHash(ctx, "large/1GiB")
	downPeak, downSamples, downErr := down.finish()
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusOK || got != size || gotSum != sum {
		t.Fatalf("GET 1 GiB: status %d, %d bytes, sha256 %x; want 200, %d bytes, %x", status, got, gotSum[:6], size, sum[:6])
	}
	downTime := time.Since(start)
	for _, err := range []error{upErr, downErr} {
		if err != nil {
			t.Fatalf("sample RSS: %v", err)
		}
	}
	t.Logf("RSS before PUT %d MiB, peak during PUT %d MiB (%d samples, %v, %.0f MiB/s); before GET %d MiB, peak during GET %d MiB (%d samples, %v, %.0f MiB/s)",
		base>>20, upPeak>>20, upSamples, upTime.Round(time.Millisecond), float64(size>>20)/upTime.Seconds(),
		downBase>>20, downPeak>>20, downSamples, downTime.Round(time.Millisecond), float64(size>>20)/downTime.Seconds())
	if upSamples < 10 || downSamples < 10 {
		t.Fatalf("too few RSS samples (%d, %d) to see a peak", upSamples, downSamples)
	}
	if rise := upPeak - base; rise >= maxRise {
		t.Errorf("node RSS rose by %d MiB during a 1 GiB upload, want < %d MiB", rise>>20, maxRise>>20)
	}
	if rise := downPeak - downBase; rise >= maxRise {
		t.Errorf("node RSS rose by %d MiB during a 1 GiB download, want < %d MiB", rise>>20, maxRise>>20)
	}
	n.waitHeld(t, allocSize(size)+allocSize(int64(len(warm))), settleTimeout)
}
