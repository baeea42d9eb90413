package raftfsm

import (
	"context"
	"sync"
	"testing"
	"time"
)

// TestReadIndexBatcherShares: readers arriving while a fetch is in flight all
// wait for the next one, which serves them together; none is served by
// the fetch that began before it arrived.
func TestReadIndexBatcherShares(t *testing.T) {
	started := make(chan uint64, 10)
	release := make(chan struct{})
	var mu sync.Mutex
	n := uint64(0)
	b := ReadIndexBatcher{Fetch: func(context.Context) (uint64, error) {
		mu.Lock()
		n++
		k := n
		mu.Unlock()
		started <- k
		<-release
		return 100 * k, nil
	}}
	first := make(chan uint64, 1)
	go func() { i, _ := b.Index(context.Background()); first <- i }()
	if k := <-started; k != 1 {
		t.Fatalf("fetch %d", k)
	}
	const readers = 8
	got := make(chan uint64, readers)
	for range readers {
		go func() { i, _ := b.Index(context.Background()); got <- i }()
	}
	waitFor(t, "every reader blocked behind fetch 1", 10*time.Second, func() bool { // all have arrived, blocked behind fetch 1
		b.mu.Lock()
		defer b.mu.Unlock()
		return b.waiting == readers
	})
	release <- struct{}{}
	if i := <-first; i != 100 {
		t.Fatalf("first reader got %d", i)
	}
	if k := <-started; k != 2 {
		t.Fatalf("second fetch numbered %d", k)
	}
	close(release)
	for range readers {
		if i := <-got; i != 200 {
			t.Fatalf("a reader that arrived during fetch 1 got %d; want fetch 2's 200", i)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if n != 2 {
		t.Fatalf("%d fetches for %d readers; want 2 (the readers share one)", n, readers+1)
	}
}
