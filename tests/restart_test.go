package tests

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// reviewFillPastSnapshot stores count blobs and waits until a Raft snapshot
// covers them and the log before it was compacted.
func reviewFillPastSnapshot(t *testing.T, n *node, count int) map[string][]byte {
	t.Helper()
	blobs := map[string][]byte{}
	for i := range count {
		key := fmt.Sprintf("review/%03d", i)
		body := payload(seedOf(key), 5000+int64(i))
		n.put(t, key, body)
		blobs[key] = body
	}
	// Small blobs share pooled reservations, so a blob takes a little over
	// one entry: a snapshot past count/2 covers at least half of them.
	waitFor(t, 20*time.Second, func() bool { return n.lastSnapshotIndex(t) > uint64(count/2) },
		func() string {
			return fmt.Sprintf("no snapshot past index %d (have %d)", count/2, n.lastSnapshotIndex(t))
		})
	return blobs
}

func reviewRequireAll(t *testing.T, n *node, blobs map[string][]byte) {
	t.Helper()
	missing := 0
	for key, body := range blobs {
		r := n.do(t, http.MethodGet, blobPath(key), nil)
		if r.status != http.StatusOK || string(r.body) != string(body) {
			missing++
			if missing <= 3 {
				t.Errorf("GET %q: %v, want 200 with the %d bytes stored", key, r, len(body))
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged blobs lost", missing, len(blobs))
	}
}

var reviewSnapFlags = []string{"-snapshot-threshold", "20", "-snapshot-interval", "100ms", "-trailing-logs", "2"}

// After an unclean stop openStorage renames catalog.db to catalog.db.unclean
// (durably: removeDurably syncs the directory) and only later creates the
// new catalog. If the process dies in between (kill, power cut, or any
// error from space.Open), the next start finds no catalog.db, takes the
// "clean" path (unclean = catErr == nil && ...), and lets Raft skip the
// snapshot: every blob covered by the snapshot is gone.
func TestCrashBetweenCatalogRenameAndOpen(t *testing.T) {
	n := newNode(t, reviewSnapFlags...)
	blobs := reviewFillPastSnapshot(t, n, 60)
	n.kill()
	// What the next start does before it dies at the worst moment.
	cat := filepath.Join(n.dir, "catalog.db")
	if err := os.Rename(cat, cat+".unclean"); err != nil {
		t.Fatal(err)
	}
	n.start()
	reviewRequireAll(t, n, blobs)
}

// A second blobnode started by mistake on a running node's data directory
// must refuse at once (the directory lock), before it touches anything:
// without the lock it renamed the live catalog away, created an empty one
// and rebuilt the shared volume's allocator, and the running node's next
// clean stop then made that empty catalog the truth.
func TestSecondInstanceOnSameDataDir(t *testing.T) {
	n := newNode(t, reviewSnapFlags...)
	blobs := reviewFillPastSnapshot(t, n, 60)

	addrs := freeAddrs(t, 2)
	cmd := exec.Command(blobnodeBin, "-data-dir", n.dir, "-http-addr", addrs[0], "-raft-addr", addrs[1])
	cmd.Env = nodeEnv()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	gone := make(chan struct{})
	go func() { exited <- cmd.Wait(); close(gone) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-gone
	})
	unclean := filepath.Join(n.dir, "catalog.db.unclean")
	// The second instance either exits or blocks; either way give it a
	// bounded time to do what it does before the lock.
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(unclean); err == nil {
			break
		}
		select {
		case <-gone:
			deadline = time.Now()
		default:
			waitTick(nil)
		}
	}
	if _, err := os.Stat(unclean); err == nil {
		t.Errorf("second instance renamed the running node's catalog to %s", unclean)
	}
	select {
	case err := <-exited:
		if err == nil {
			t.Errorf("second instance on a locked data directory exited 0")
		}
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		<-gone
		t.Errorf("second instance did not refuse the locked data directory; killed")
	}
	n.stop()
	n.start()
	reviewRequireAll(t, n, blobs)
}

// TestKilledWhileFormatting kills the first start while it writes zeros
// over its new volume: no volume file may be left (a half-formatted one
// would be refused), and the next start formats afresh and serves.
func TestKilledWhileFormatting(t *testing.T) {
	dir := t.TempDir()
	addrs := freeAddrs(t, 2)
	cmd := exec.Command(blobnodeBin, "-data-dir", dir, "-http-addr", addrs[0], "-raft-addr", addrs[1],
		"-volume-size", "2GiB", "-zero-volume")
	cmd.Env = nodeEnv()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(stderr)
	for sc.Scan() && !strings.Contains(sc.Text(), "writing zeros over the new volume") {
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	go io.Copy(io.Discard, stderr) // until the pipe closes
	_ = cmd.Wait()
	if _, err := os.Stat(filepath.Join(dir, "volume.blob")); !os.IsNotExist(err) {
		t.Fatalf("a volume file exists after a start killed while formatting (stat: %v)", err)
	}
	n := newNodeIn(t, dir, "-volume-size", "64MiB")
	n.put(t, "format/after-kill", []byte("fresh volume"))
}

// TestInterruptedFormat: a first start that died while formatting leaves
// only its temporary file (the volume is renamed into place once durable);
// the next start removes it, formats afresh and serves.
func TestInterruptedFormat(t *testing.T) {
	dir := t.TempDir()
	leftover := filepath.Join(dir, "volume.blob.format")
	if err := os.WriteFile(leftover, []byte("half a format"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := newNodeIn(t, dir)
	n.put(t, "format/after", []byte("fresh volume"))
	if _, err := os.Stat(leftover); !os.IsNotExist(err) {
		t.Fatalf("the interrupted format's file is still there (stat: %v)", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "volume.blob")); err != nil {
		t.Fatalf("no volume after the format: %v", err)
	}
	n.stop()
	n.start()
	if r := n.do(t, http.MethodGet, blobPath("format/after"), nil); r.status != http.StatusOK || string(r.body) != "fresh volume" {
		t.Fatalf("GET after restart: %v", r)
	}
}

// TestIncompleteDataDir: a data directory missing its volume file, or its
// Raft state, is refused with a clear error instead of being silently
// formatted or re-bootstrapped over (which would lose or corrupt every
// blob); once the missing part is back, the node starts and serves.
func TestIncompleteDataDir(t *testing.T) {
	n := newNode(t)
	n.put(t, "incomplete/small", []byte("inline bytes"))
	big := payload(seedOf("incomplete/big"), 100<<10)
	n.put(t, "incomplete/big", big)
	n.stop()

	refused := func(want string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		addrs := freeAddrs(t, 2)
		out, err := exec.CommandContext(ctx, blobnodeBin, "-data-dir", n.dir, "-http-addr", addrs[0], "-raft-addr", addrs[1]).CombinedOutput()
		if err == nil || ctx.Err() != nil {
			t.Fatalf("started (or hung) on an incomplete data directory: %v\n%s", err, out)
		}
		if !strings.Contains(string(out), "incomplete data directory") || !strings.Contains(string(out), want) {
			t.Fatalf("error does not say what is missing (want %q):\n%s", want, out)
		}
	}
	move := func(from, to string) {
		t.Helper()
		if err := os.Rename(filepath.Join(n.dir, from), filepath.Join(n.dir, to)); err != nil {
			t.Fatal(err)
		}
	}

	move("volume.blob", "volume.blob.away")
	refused("no volume file")
	if _, err := os.Stat(filepath.Join(n.dir, "volume.blob")); !os.IsNotExist(err) {
		t.Fatalf("a new volume was formatted (stat: %v)", err)
	}
	move("volume.blob.away", "volume.blob")

	move("raft", "raft.away")
	refused("no Raft state")
	if err := os.RemoveAll(filepath.Join(n.dir, "raft")); err != nil {
		t.Fatal(err)
	}
	move("raft.away", "raft")

	n.start()
	for key, want := range map[string][]byte{"incomplete/small": []byte("inline bytes"), "incomplete/big": big} {
		if r := n.do(t, http.MethodGet, blobPath(key), nil); r.status != http.StatusOK || !bytes.Equal(r.body, want) {
			t.Fatalf("GET %q after the directory was made whole: %v", key, r)
		}
	}
}

// TestPristineVolumeBootstraps: a volume that never held a blob (a first
// start that died between formatting and bootstrapping Raft looks like
// this) may get a new group; only a volume with data needs its log.
func TestPristineVolumeBootstraps(t *testing.T) {
	n := newNode(t)
	n.stop()
	for _, name := range []string{"raft", "catalog.db", "clean-shutdown"} {
		if err := os.RemoveAll(filepath.Join(n.dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	n.start()
	n.put(t, "pristine/first", []byte("first blob"))
}

// TestCleanStopLeavesNothingToReplay: a clean stop snapshots at the applied
// index, so the next start has no log tail to read for configuration
// changes and to apply again; and neither start waits for an election
// timeout. The snapshot threshold is far above the
// entries written, so without the snapshot at stop there would be none.
func TestCleanStopLeavesNothingToReplay(t *testing.T) {
	n := newNode(t)
	blobs := map[string][]byte{}
	for i := range 40 {
		key := fmt.Sprintf("replay/%02d", i)
		blobs[key] = payload(seedOf(key), 3000)
		n.put(t, key, blobs[key])
	}
	before := n.raftState(t)
	if before.Snapshot != 0 {
		t.Fatalf("a snapshot at %d before the stop: the test needs none", before.Snapshot)
	}
	n.stop()
	n.start()
	// With the daemon's own Raft timeouts, a sole voter does not wait one out.
	if log, _ := os.ReadFile(n.logPath); bytes.Count(log, []byte("campaigning at once")) != 2 {
		t.Errorf("the log does not say, at each of the two starts, that the node campaigned at once:\n%s", tailFile(n.logPath, 20))
	}
	if after := n.raftState(t); after.Snapshot < before.Applied {
		t.Fatalf("after a clean stop at applied index %d the newest snapshot is at %d: the restart replayed %d entries",
			before.Applied, after.Snapshot, before.Applied-after.Snapshot)
	}
	reviewRequireAll(t, n, blobs)
}
