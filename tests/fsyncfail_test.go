package tests

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blobnode/blobnode/internal/powercutfs"
	"github.com/blobnode/blobnode/volume"
)

// The fsync-failure tests run the node with a Raft snapshot every
// fsyncSnapThreshold entries, checked every 20 ms. A snapshot first syncs
// the state machine, the allocator journal's lazy transactions included
// (raftfsm FSM.Sync), which makes it the tests' barrier: once the newest
// snapshot is at the log's last index, the journal has nothing queued.
// The threshold also leaves room for a few entries after arming a failure
// that do not bring a snapshot (whose data sync would take the failure).
const fsyncSnapThreshold = 8

const (
	// pooledSize is streamed (over the 16 KiB inline bound) into a
	// reservation of the pool (at most 64 KiB): an upload of it proposes
	// nothing to Raft before its data sync.
	pooledSize = 40 << 10
	// poolLeft is how many pooled reservations of pooledSize must be
	// ready before arming, so that taking one starts no refill (the pool
	// refills below 8).
	poolLeft = 9
	// exitTimeout bounds how long a node whose volume failed may take to
	// stop by itself.
	exitTimeout = 10 * time.Second
)

// fsyncNode is a node on a powercutfs mount, and what it acknowledged.
type fsyncNode struct {
	t     *testing.T
	pm    *powerMount
	n     *node
	acked map[string][]byte // key -> body of every acknowledged PUT not since deleted
}

func newFsyncNode(t *testing.T) *fsyncNode {
	t.Helper()
	if err := powercutfs.Available(); err != nil {
		t.Skipf("failing an fsync needs FUSE: %v", err)
	}
	pm := newPowerMount(t)
	// A long reservation TTL: an upload renews nothing through Raft, and
	// pooled reservations stay fresh enough to be taken.
	n := newNodeIn(t, pm.dir, "-volume-size", "256MiB", "-reservation-ttl", "1h",
		"-snapshot-threshold", fmt.Sprint(fsyncSnapThreshold), "-snapshot-interval", "20ms")
	return &fsyncNode{t: t, pm: pm, n: n, acked: map[string][]byte{}}
}

func (f *fsyncNode) put(key string, size int64) {
	f.t.Helper()
	body := payload(seedOf(key), size)
	f.n.put(f.t, key, body)
	f.acked[key] = body
}

// fill stores blobs of inline and streamed sizes (pooled and not), one of
// them replaced, all acknowledged, and leaves at least poolLeft pooled
// reservations of pooledSize ready.
func (f *fsyncNode) fill() {
	f.t.Helper()
	for _, b := range []struct {
		key  string
		size int64
	}{
		{"acked/inline-1", 1}, {"acked/inline-4k", 4 << 10}, {"acked/inline-16k", 16 << 10},
		{"acked/pooled-1", pooledSize}, {"acked/pooled-2", pooledSize},
		{"acked/streamed-1", 100 << 10}, {"acked/streamed-2", 100 << 10},
		{"acked/replaced", 3 << 10}, {"acked/big", 3 << 20},
	} {
		f.put(b.key, b.size)
	}
	body := payload(seedOf("acked/replaced/2"), 70<<10) // streamed over an inline one
	f.n.put(f.t, "acked/replaced", body)
	f.acked["acked/replaced"] = body
	// The first pooledSize upload started a refill of the pool.
	var v volumeStatus
	waitFor(f.t, settleTimeout, func() bool { v = f.n.volume(f.t); return v.PooledBytes >= poolLeft*pooledSize },
		func() string {
			return fmt.Sprintf("%d bytes pooled, want %d reservations of %d ready", v.PooledBytes, poolLeft, pooledSize)
		})
}

// settle waits until the allocator journal has nothing left to write and
// nothing will be proposed: the newest Raft snapshot is at the log's last
// index, all of it applied (see fsyncSnapThreshold). Fewer entries than
// the threshold bring no snapshot, so settle adds small inline blobs
// until they do.
func (f *fsyncNode) settle() {
	f.t.Helper()
	deadline := time.Now().Add(settleTimeout)
	for i := 0; ; i++ {
		s := f.n.raftState(f.t)
		if s.Snapshot == s.Last && s.Applied == s.Last {
			return
		}
		if time.Now().After(deadline) {
			f.t.Fatalf("after %v: Raft log at %d, applied %d, newest snapshot at %d; want all three equal", settleTimeout, s.Last, s.Applied, s.Snapshot)
		}
		if s.Applied == s.Last && s.Last-s.Snapshot < fsyncSnapThreshold {
			for j := range fsyncSnapThreshold - (s.Last - s.Snapshot) {
				f.put(fmt.Sprintf("acked/filler-%d-%d", i, j), 1<<10)
			}
		}
		waitTick(nil)
	}
}

// layout reads the volume's layout from the durable superblock.
func (f *fsyncNode) layout() volume.Layout {
	f.t.Helper()
	b := make([]byte, volume.SuperblockSize)
	file, err := os.Open(filepath.Join(f.pm.backing, "tree", "volume.blob"))
	if err != nil {
		f.t.Fatal(err)
	}
	defer file.Close()
	if _, err := io.ReadFull(file, b); err != nil {
		f.t.Fatal(err)
	}
	sb, err := volume.DecodeSuperblock(b)
	if err != nil {
		f.t.Fatal(err)
	}
	return sb.Layout
}

// dropped sorts the changes a failed fsync of the volume dropped by the
// volume's regions.
type dropped struct {
	journal, state, heap, other []powercutfs.Change
}

func classify(l volume.Layout, changes []powercutfs.Change) dropped {
	var d dropped
	in := func(c powercutfs.Change, off, size int64) bool {
		return c.Data != nil && c.Off >= off && c.Off+int64(len(c.Data)) <= off+size
	}
	for _, c := range changes {
		switch {
		case in(c, l.JournalOffset, l.JournalSize):
			d.journal = append(d.journal, c)
		case in(c, l.StateOffset, l.StateSize):
			d.state = append(d.state, c)
		case in(c, l.HeapOffset, l.HeapSize):
			d.heap = append(d.heap, c)
		default: // superblock, data mark, size changes, a write across regions
			d.other = append(d.other, c)
		}
	}
	return d
}

func (d dropped) String() string {
	sum := func(cs []powercutfs.Change) (n int) {
		for _, c := range cs {
			n += len(c.Data)
		}
		return n
	}
	return fmt.Sprintf("%d journal writes (%d bytes), %d state-region writes (%d bytes), %d heap writes (%d bytes), %d others",
		len(d.journal), sum(d.journal), len(d.state), sum(d.state), len(d.heap), sum(d.heap), len(d.other))
}

// heapHolds reports whether the dropped heap writes, in the order they
// were made, contain body's bytes back to back.
func (d dropped) heapHolds(body []byte) bool {
	var all []byte
	for _, c := range d.heap {
		all = append(all, c.Data...)
	}
	return bytes.Contains(all, body)
}

// waitStopped waits for the node to stop by itself after its volume
// failed, and checks the exit status and the Error line: exactly one,
// the "blobnode stopped" line naming the volume file and the EIO of its
// fsync. It returns how long the exit took from since.
func (f *fsyncNode) waitStopped(since time.Time) time.Duration {
	f.t.Helper()
	n := f.n
	select {
	case <-n.exited:
	case <-time.After(exitTimeout):
		f.t.Fatalf("blobnode still running %v after its volume's fsync failed", exitTimeout)
	}
	took := time.Since(since)
	n.client.CloseIdleConnections()
	var ee *exec.ExitError
	if !errors.As(n.waitErr, &ee) || ee.ExitCode() != 1 {
		f.t.Fatalf("blobnode exit: %v, want status 1", n.waitErr)
	}
	// The cause, as the poisoned volume wraps it into every later error.
	cause := "volume: sync " + filepath.Join(f.pm.dir, "volume.blob") + ": input/output error"
	var errLines, stopped []string
	for line := range strings.SplitSeq(lastRun(f.t, n.logPath), "\n") {
		if !strings.Contains(line, "level=ERROR") {
			continue
		}
		errLines = append(errLines, line)
		if strings.Contains(line, `msg="blobnode stopped"`) {
			stopped = append(stopped, line)
		}
		// One cause only: nothing else failed (the Raft log, the catalog).
		if !strings.Contains(line, cause) {
			f.t.Errorf("an Error line without the volume's failed fsync as its cause %q:\n%s", cause, line)
		}
	}
	if len(stopped) != 1 || !strings.Contains(stopped[0], "stopping: "+volume.ErrPoisoned.Error()) ||
		!strings.Contains(stopped[0], cause) {
		f.t.Fatalf("want one Error line \"blobnode stopped\" with %q and %q; the run logged:\n%s",
			volume.ErrPoisoned, cause, strings.Join(errLines, "\n"))
	}
	f.t.Logf("blobnode exited with status 1 %v after arming the failure: %s", took.Round(time.Millisecond), stopped[0])
	if len(errLines) > 1 {
		f.t.Logf("and %d other Error lines, all of the same cause", len(errLines)-1)
	}
	return took
}

// lastRun is the log of the node's last start.
func lastRun(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	return s[max(strings.LastIndex(s, "=== start"), 0):]
}

// recover restarts the node after the failure (an unclean start, which
// recovers from the Raft log) and checks it, stops it cleanly and checks
// fsck; then cuts the power, so that what the failed fsync dropped (which
// reads through the mount still see, as from a page cache) is gone, and
// checks everything again on what is durable. absent are keys that must
// not exist; maybe are keys whose write was not acknowledged: absent, or
// whole with body maybe[key].
func (f *fsyncNode) recover(absent []string, maybe map[string][]byte) {
	f.t.Helper()
	n := f.n
	n.start()
	if run := lastRun(f.t, n.logPath); !strings.Contains(run, "the last stop was not clean") {
		f.t.Fatal("the restart after the failure was not an unclean start")
	}
	f.check("after the restart", absent, maybe)
	n.stop()
	n.requireFsckClean()

	rep := f.pm.cut(powercutfs.DropAll, 1)
	f.t.Logf("after the clean stop: %v", rep)
	n.requireFsckClean()
	n.start()
	f.t.Logf("the start after the power cut was clean: %v", !strings.Contains(lastRun(f.t, n.logPath), "the last stop was not clean"))
	f.check("after a power cut that followed", absent, maybe)
	n.stop()
}

func (f *fsyncNode) check(when string, absent []string, maybe map[string][]byte) {
	f.t.Helper()
	n := f.n
	var used int64
	for _, key := range slices.Sorted(mapsKeys(f.acked)) {
		body := f.acked[key]
		n.requireBlob(f.t, key, int64(len(body)), sha256Of(body))
		used += allocSize(int64(len(body)))
	}
	for _, key := range absent {
		n.requireAbsent(f.t, key)
	}
	for key, body := range maybe {
		status, size, sum, err := n.getHash(f.t.Context(), key)
		switch {
		case err != nil:
			f.t.Fatal(err)
		case status == http.StatusOK && size == int64(len(body)) && sum == sha256Of(body):
			f.t.Logf("%s: the unacknowledged %q took effect", when, key)
			used += allocSize(size)
		case status != http.StatusNotFound:
			f.t.Fatalf("%s: GET %q: status %d, %d bytes: neither absent nor the body its PUT sent", when, key, status, size)
		}
	}
	// The space of the failed upload is free again: used bytes are the
	// blobs' allocations (nothing is pooled before a PUT).
	var v volumeStatus
	waitFor(f.t, settleTimeout, func() bool { v = n.volume(f.t); return v.UsedBytes == used && v.PooledBytes == 0 },
		func() string {
			return fmt.Sprintf("%s: volume.used_bytes %d (pooled %d), the blobs occupy %d", when, v.UsedBytes, v.PooledBytes, used)
		})
	f.t.Logf("%s: %d acknowledged blobs read back intact; %v absent", when, len(f.acked), absent)
}

// TestVolumeFsyncErrorStopsNode is issue #11 item 1 with the real binary
// and a real failing fsync: the volume file's next fdatasync returns EIO
// and drops its unsynced writes, as Linux does when writeback fails. The
// volume must poison itself: nothing more is acknowledged, the node stops
// by itself with status 1 and one Error line naming the file and the EIO,
// and the restart (unclean, from the Raft log) loses nothing that was
// acknowledged, shows nothing that was refused, and leaves a consistent
// directory, also once a power cut has removed the dropped writes from
// what reads see.
//
// In "data-sync" the failure is taken by the data sync of a streamed PUT,
// which must not be acknowledged. In "journal" it is taken by the
// allocator journal's group commit of a DELETE and an inline PUT that
// were acknowledged before it (their state reaches the journal lazily,
// within 50 ms); with the heap write of the inline blob dropped, the
// restart must write it again from the Raft log.
func TestVolumeFsyncErrorStopsNode(t *testing.T) {
	t.Run("data-sync", func(t *testing.T) {
		f := newFsyncNode(t)
		f.fill()
		f.settle()
		layout := f.layout()

		// Nothing is queued for the journal and the upload proposes
		// nothing before its data sync: that sync is the first of the
		// volume after arming.
		fault := f.pm.fs.FailNextFsync("volume.blob")
		const key = "failed/pooled"
		body := payload(seedOf(key), pooledSize)
		armed := time.Now()
		r := f.n.do(t, http.MethodPut, blobPath(key), body)
		if r.status != http.StatusInternalServerError {
			t.Fatalf("PUT %q whose data sync failed: %v, want 500", key, r)
		}
		t.Logf("PUT %q: %v", key, r)
		select {
		case <-fault.Fired():
		default:
			t.Fatal("the PUT failed, but not by the armed fsync failure")
		}
		f.waitStopped(armed)
		d := classify(layout, fault.Dropped())
		t.Logf("the failed fdatasync (datasync %v) of %s dropped %v", fault.Datasync(), fault.Path(), d)
		switch {
		case fault.Path() != "volume.blob":
			t.Fatalf("the failure hit %q, want volume.blob", fault.Path())
		case len(d.journal) > 0:
			t.Fatalf("a journal group commit took the failure, not the PUT's data sync: it dropped %v", d)
		case !d.heapHolds(body) || len(d.other) > 0:
			t.Fatalf("the failed sync dropped %v, which is not the PUT's body (and in-place journal writes): not the PUT's data sync", d)
		}
		f.recover([]string{key}, nil)
	})

	t.Run("journal", func(t *testing.T) {
		f := newFsyncNode(t)
		f.fill()
		f.settle()
		layout := f.layout()

		// No data sync can run: no streamed PUT, and fewer entries than
		// bring a snapshot. The first sync of the volume is the group
		// commit of the DELETE's allocator transaction (and of the inline
		// PUT's, if it is applied within the journal's 50 ms).
		fault := f.pm.fs.FailNextFsync("volume.blob")
		const deleted = "acked/pooled-1"
		armed := time.Now()
		if r := f.n.do(t, http.MethodDelete, blobPath(deleted), nil); r.status != http.StatusNoContent {
			t.Fatalf("DELETE %q after arming: %v, want 204 (acknowledged before the group commit)", deleted, r)
		}
		delete(f.acked, deleted)
		const key = "after/inline"
		body := payload(seedOf(key), 8<<10)
		maybe := map[string][]byte{}
		r, err := f.n.try(http.MethodPut, blobPath(key), body)
		t.Logf("PUT %q after arming: %v %v", key, r, err)
		if err == nil && r.status == http.StatusCreated {
			f.acked[key] = body
		} else {
			maybe[key] = body
		}
		f.waitStopped(armed)
		select {
		case <-fault.Fired():
		default:
			t.Fatal("the node stopped, but the armed fsync failure never fired")
		}
		d := classify(layout, fault.Dropped())
		t.Logf("the failed fdatasync (datasync %v) of %s dropped %v; the inline blob's bytes among them: %v",
			fault.Datasync(), fault.Path(), d, d.heapHolds(body))
		if fault.Path() != "volume.blob" || len(d.journal) == 0 {
			t.Fatalf("the failure hit %q and dropped %v: not a journal group commit of the volume", fault.Path(), d)
		}
		f.recover([]string{deleted}, maybe)
	})
}

// try is do without a testing.TB: a transport error is returned.
func (n *node) try(method, path string, body []byte) (reply, error) {
	req, err := http.NewRequest(method, n.base+path, bytes.NewReader(body))
	if err != nil {
		return reply{}, err
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return reply{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: b}, err
}
