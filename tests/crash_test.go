package tests

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// crashBody is name's body: mostly 1-64 KiB (those up to 16 KiB travel
// inline in their Raft entry, the others stream into pooled reservations),
// and one in eight 64-192 KiB. Streamed blobs often reuse the pages of
// deleted inline ones: the case the volume's data mark protects on replay.
func crashBody(name string) []byte {
	seed := seedOf(name)
	if seed%8 == 0 {
		return payload(seed, int64(64<<10+1+seed%(128<<10)))
	}
	return payload(seed, int64(1<<10+seed%(63<<10+1)))
}

// blobState is one possible state of a key: absent, or a body.
type blobState struct {
	exists bool
	size   int64
	sum    [32]byte
}

func (s blobState) String() string {
	if !s.exists {
		return "absent"
	}
	return fmt.Sprintf("%d bytes %x", s.size, s.sum[:4])
}

// crashOp is one request a crash-test worker sent.
type crashOp struct {
	key   string
	after blobState // the key's state if the request took effect
	acked bool      // 201 / 204 seen
}

// TestCrashKill9 loads a node with concurrent PUTs (and some replacements
// and DELETEs), kills it with SIGKILL mid-load, restarts it and checks that
// every acknowledged write is intact, that nothing unacknowledged is
// visible with wrong content, that the space of cut uploads is reclaimed,
// and that fsck finds the stopped node clean. Four kill/restart cycles on
// one data directory; in one of them the node is killed again before it
// was ever stopped cleanly after the previous crash.
func TestCrashKill9(t *testing.T) {
	t.Run("log-replay", func(t *testing.T) { crashKill9(t, false) })
	// Snapshots and log compaction every few hundred entries: recovery
	// restores the newest snapshot and replays the log after it.
	t.Run("snapshots", func(t *testing.T) {
		crashKill9(t, true, "-snapshot-threshold", "200", "-snapshot-interval", "200ms", "-trailing-logs", "50")
	})
}

func crashKill9(t *testing.T, wantSnapshots bool, extraArgs ...string) {
	const (
		cycles     = 4
		doubleKill = 1 // after this cycle's check the node keeps running into the next kill
	)
	load := crashLoad{workers: 16, loadTime: 3 * time.Second, minAcked: 50, maxPerWork: 5000}
	// 2 GiB: four cycles of this load must not fill the volume.
	n := newNode(t, append([]string{"-reservation-ttl", "1h", "-volume-size", "2GiB"}, extraArgs...)...)
	// known holds, for every key any client ever wrote, the states it may
	// be in: one after a check, more while a request on it was cut.
	known := map[string][]blobState{}

	for cycle := range cycles {
		if !n.running() {
			n.start()
		}
		load.run(t, n, cycle, known, n.kill)
		n.start()
		if wantSnapshots {
			// The node recovered from a snapshot, not from the log alone.
			if idx := n.lastSnapshotIndex(t); idx == 0 {
				t.Fatalf("cycle %d: no Raft snapshot was taken under load", cycle)
			}
		}
		checkCrashState(t, n, known, cycle)
		if cycle != doubleKill {
			n.stop()
			n.requireFsckClean()
		}
		if t.Failed() {
			t.FailNow()
		}
	}
}

// crashLoad is the client side of one cycle of a crash test: workers send
// PUTs (crashBody: inline and streamed sizes), replacements and DELETEs
// under crash/c<cycle>/, until the node is stopped under them.
type crashLoad struct {
	workers    int
	loadTime   time.Duration // load at least this long before the stop
	minAcked   int           // and until this many writes were acknowledged
	maxPerWork int           // requests per worker, at most
	// ready, if set, must also hold before the stop (it runs on the test
	// goroutine, between polls).
	ready func() bool
}

// run loads n, then, with at least half the workers' requests in flight
// (and ready holding),
// calls stop, which must end the node abruptly (SIGKILL, a power cut). It
// waits for the workers and folds what they saw into known: an
// acknowledged write fixes its key's state, an unacknowledged one adds a
// possible state. Each worker stops at its first unacknowledged request,
// so each leaves at most one key in doubt; an unexpected answer before the
// stop fails the test. The load is bounded by maxPerWork and by loadTime
// plus 20 s.
func (l crashLoad) run(t *testing.T, n *node, cycle int, known map[string][]blobState, stop func()) {
	t.Helper()
	var (
		ackCount atomic.Int64
		inflight atomic.Int64
		stopped  atomic.Bool
		wg       sync.WaitGroup
		ops      = make([][]crashOp, l.workers)
		bad      = make([]string, l.workers) // an unexpected answer before the stop
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	client := n.client
	for w := range l.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(cycle), uint64(w)))
			var live []string // keys of this worker whose last write was acknowledged
			for i := 0; i < l.maxPerWork && ctx.Err() == nil; i++ {
				op := crashOp{key: fmt.Sprintf("crash/c%d/w%02d/%05d", cycle, w, i)}
				method, want := http.MethodPut, http.StatusCreated
				var body []byte
				switch {
				case i%8 == 5 && len(live) > 0: // replace
					op.key = live[rng.IntN(len(live))]
					body = crashBody(fmt.Sprintf("%s#%d", op.key, i))
				case i%8 == 7 && len(live) > 0: // delete
					j := rng.IntN(len(live))
					op.key = live[j]
					live = slices.Delete(live, j, j+1)
					method, want = http.MethodDelete, http.StatusNoContent
				default:
					body = crashBody(op.key)
				}
				if body != nil {
					op.after = blobState{exists: true, size: int64(len(body)), sum: sha256Of(body)}
				}
				ops[w] = append(ops[w], op)
				rctx, rcancel := context.WithTimeout(ctx, 30*time.Second)
				req, _ := http.NewRequestWithContext(rctx, method, n.base+blobPath(op.key), bytes.NewReader(body))
				inflight.Add(1)
				resp, err := client.Do(req)
				var status int
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					status = resp.StatusCode
				}
				inflight.Add(-1)
				rcancel()
				if status != want {
					// Unacknowledged: the worker stops, so each worker
					// leaves at most one key in doubt.
					if !stopped.Load() {
						bad[w] = fmt.Sprintf("%s %q: status %d, err %v", method, op.key, status, err)
					}
					return
				}
				ops[w][len(ops[w])-1].acked = true
				ackCount.Add(1)
				if method == http.MethodPut && !slices.Contains(live, op.key) {
					live = append(live, op.key)
				}
			}
		}()
	}

	// Load for loadTime (and until some writes were acknowledged), then
	// stop the node while requests are in flight.
	start := time.Now()
	deadline := start.Add(l.loadTime + 20*time.Second)
	for (time.Since(start) < l.loadTime || ackCount.Load() < int64(l.minAcked) || (l.ready != nil && !l.ready())) &&
		time.Now().Before(deadline) {
		waitTick(nil)
	}
	for inflight.Load() < int64(l.workers/2) && time.Now().Before(deadline) {
		waitTick(nil)
	}
	stopped.Store(true)
	inflightAtStop := inflight.Load()
	stop()
	cancel()
	waited := make(chan struct{})
	go func() { wg.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(time.Minute):
		t.Fatal("workers still running a minute after the node was stopped")
	}
	for _, b := range bad {
		if b != "" {
			t.Errorf("cycle %d: before the stop: %s", cycle, b)
		}
	}
	sent, doubt := 0, 0
	for _, wops := range ops {
		for _, op := range wops {
			sent++
			if op.acked {
				known[op.key] = []blobState{op.after}
			} else {
				before, ok := known[op.key]
				if !ok {
					before = []blobState{{}} // a new key: absent
				}
				known[op.key] = append(before, op.after)
				doubt++
			}
		}
	}
	t.Logf("cycle %d: %d of %d writes acknowledged in %v; %d in flight at the stop, %d keys in doubt",
		cycle, ackCount.Load(), sent, time.Since(start).Round(time.Millisecond), inflightAtStop, doubt)
	if ackCount.Load() < int64(l.minAcked) {
		t.Fatalf("cycle %d: only %d writes acknowledged before the stop", cycle, ackCount.Load())
	}
	if t.Failed() {
		t.FailNow()
	}
}

// checkCrashState verifies a restarted node against what the clients saw,
// and narrows every key in doubt to the state found.
func checkCrashState(t *testing.T, n *node, known map[string][]blobState, cycle int) {
	t.Helper()
	listed := n.listAll(t, "crash/", 1000)
	inList := make(map[string]int64, len(listed)) // key -> listed size
	var used int64
	for i, b := range listed {
		inList[b.Key] = b.Size
		used += allocSize(b.Size)
		if i > 0 && listed[i-1].Key >= b.Key {
			t.Errorf("cycle %d: listing out of order: %q then %q", cycle, listed[i-1].Key, b.Key)
		}
		if _, ok := known[b.Key]; !ok {
			t.Errorf("cycle %d: listing has %q, which no client ever wrote", cycle, b.Key)
		}
	}

	// Read every key any client ever wrote, 8 at a time.
	keys := make([]string, 0, len(known))
	for k := range known {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	type found struct {
		state  blobState
		status int
		err    error
	}
	got := make([]found, len(keys))
	var next atomic.Int64
	var wg sync.WaitGroup
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(keys) {
					return
				}
				status, size, sum, err := n.getHash(ctx, keys[i])
				got[i] = found{blobState{exists: status == http.StatusOK, size: size, sum: sum}, status, err}
				if status != http.StatusOK {
					got[i].state = blobState{}
				}
			}
		}()
	}
	wg.Wait()

	var exist, resolved, tookEffect, errs int
	for i, k := range keys {
		f, possible := got[i], known[k]
		listedSize, listed := inList[k]
		switch {
		case f.err != nil:
			t.Errorf("cycle %d: %v", cycle, f.err)
		case f.status != http.StatusOK && f.status != http.StatusNotFound:
			t.Errorf("cycle %d: GET %q: status %d", cycle, k, f.status)
		case !slices.Contains(possible, f.state):
			t.Errorf("cycle %d: %q is %v after the restart; the clients allow only %v", cycle, k, f.state, possible)
		case f.state.exists != listed:
			t.Errorf("cycle %d: %q: GET %d, but listed=%v", cycle, k, f.status, listed)
		case listed && listedSize != f.state.size:
			t.Errorf("cycle %d: %q listed with %d bytes, GET has %d", cycle, k, listedSize, f.state.size)
		default:
			if len(possible) > 1 {
				resolved++
				if f.state == possible[len(possible)-1] {
					tookEffect++
				}
			}
			known[k] = []blobState{f.state}
			if f.state.exists {
				exist++
			}
			continue
		}
		if errs++; errs > 20 {
			t.Fatalf("cycle %d: too many errors", cycle)
		}
	}
	if len(listed) != exist && !t.Failed() {
		t.Errorf("cycle %d: listing has %d blobs, %d exist", cycle, len(listed), exist)
	}
	t.Logf("cycle %d after restart: %d keys checked, %d blobs exist; of %d keys in doubt, %d show the cut write",
		cycle, len(keys), exist, resolved, tookEffect)

	// The space of every cut upload is free again: used bytes are exactly
	// the visible blobs' allocations. No PUT ran since the restart, so no
	// reservation is pooled either.
	var v volumeStatus
	waitFor(t, settleTimeout, func() bool { v = n.volume(t); return v.UsedBytes == used && v.PooledBytes == 0 },
		func() string {
			return fmt.Sprintf("cycle %d: volume.used_bytes %d (pooled %d), the %d visible blobs occupy %d: %d bytes not reclaimed",
				cycle, v.UsedBytes, v.PooledBytes, len(listed), used, v.UsedBytes-used)
		})
}
