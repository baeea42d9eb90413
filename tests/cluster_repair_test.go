package tests

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// groupBlobs are the bodies a cluster repair test writes: inline (<= 16
// KiB, in the Raft entry) and streamed (reserved, then copied to a
// majority before the Commit) sizes.
func groupBody(name string, i int) []byte {
	sizes := []int64{900, 16 << 10, 40 << 10, 300 << 10, 1<<20 + 3}
	return payload(seedOf(fmt.Sprintf("%s/%d", name, i)), sizes[i%len(sizes)])
}

// readEverywhere requires every running node to serve every blob in want
// byte for byte, linearizably.
func readEverywhere(t *testing.T, c *cluster, want map[string][]byte) {
	t.Helper()
	for i, n := range c.nodes {
		if !n.running() {
			continue
		}
		for key, body := range want {
			r := n.do(t, http.MethodGet, blobPath(key), nil)
			if r.status != http.StatusOK || !bytes.Equal(r.body, body) {
				t.Fatalf("%s: GET %q: %d, %d bytes (want 200, %d bytes, the same)", c.ids[i], key, r.status, len(r.body), len(body))
			}
		}
	}
}

// waitRepaired waits until every running node reports no repair backlog
// and has applied what the leader has.
func waitRepaired(t *testing.T, c *cluster) {
	t.Helper()
	waitFor(t, time.Minute, func() bool {
		for _, n := range c.nodes {
			if !n.running() {
				continue
			}
			var s struct {
				RepairBacklog int64 `json:"repair_backlog"`
			}
			if n.status(t, &s); s.RepairBacklog != 0 {
				return false
			}
		}
		return true
	}, func() string { return "repair backlog not empty on every node" })
}

// TestClusterRepair: writes through every node while one is killed, then
// restarted; while one is wiped, then restarted with no state; and with a
// chunk corrupted on one replica's disk. Afterwards every acknowledged
// blob reads back from every node, the repairers bring every node to hold
// verified copies, and the corruption is counted.
func TestClusterRepair(t *testing.T) {
	// Small log segments, so the leader truncates its log past a follower
	// that was down and must send it a snapshot.
	c := newCluster(t, 3, "-snapshot-threshold", "24", "-snapshot-interval", "100ms", "-trailing-logs", "8",
		"-raft-log-segment-size", "64KiB")
	want := map[string][]byte{}
	write := func(round string, via int, n int) {
		t.Helper()
		for i := range n {
			key := fmt.Sprintf("repair/%s/%d", round, i)
			body := groupBody(round, i)
			nd := c.nodes[(via+i)%len(c.nodes)]
			for !nd.running() {
				via++
				nd = c.nodes[(via+i)%len(c.nodes)]
			}
			nd.put(t, key, body)
			want[key] = body
		}
	}
	write("all-up", 0, 10)
	readEverywhere(t, c, want)
	waitRepaired(t, c) // every node has marked the ten verified

	// A follower killed: the others take the writes; back up, it finds
	// the leader's log truncated past its own end, installs a snapshot
	// (a catalog without a byte of the blobs written meanwhile, inline
	// ones included) and repairs the bytes it missed.
	f := (c.leader() + 1) % 3
	killedAt := c.nodes[c.leader()].raftState(t).Applied
	c.kill(f)
	write("one-down", (f+1)%3, 40)
	// Back only once the leader has snapshotted past the follower's end.
	waitFor(t, time.Minute, func() bool {
		return c.nodes[c.leader()].raftState(t).Snapshot > killedAt+8 // -trailing-logs
	}, func() string { return "the leader did not compact its log past the killed follower" })
	c.start(f)
	waitRepaired(t, c)
	readEverywhere(t, c, want)
	if got := c.nodes[f].metricValue(t, "blobnode_raft_snapshot_installs_total"); got < 1 {
		t.Fatalf("%s came back behind the leader's truncated log but installed %v snapshots", c.ids[f], got)
	}
	// A streamed blob written while f was down records the two nodes
	// that held it, and every node reports the same set.
	for i := range 40 {
		key := fmt.Sprintf("repair/one-down/%d", i)
		if len(want[key]) <= 16<<10 {
			continue // inline: every replica writes it from the log
		}
		for j, n := range c.nodes {
			r := n.do(t, http.MethodHead, blobPath(key), nil)
			got := r.header.Get("Blobnode-Replicas")
			ids := strings.Split(got, ",")
			if r.status != http.StatusOK || len(ids) != 2 || slices.Contains(ids, c.ids[f]) {
				t.Fatalf("%s: HEAD %q: %d, Blobnode-Replicas %q; want the two nodes up when it was written (not %s)", c.ids[j], key, r.status, got, c.ids[f])
			}
		}
	}

	// A node wiped: it rejoins with no state at all and repairs everything.
	w := (c.leader() + 2) % 3
	c.stop(w)
	c.wipe(w)
	write("one-wiped", (w+1)%3, 5)
	c.start(w)
	c.leader()
	waitRepaired(t, c)
	readEverywhere(t, c, want)

	// A chunk corrupted on one replica's disk: that node serves the right
	// bytes anyway (read repair from another) and counts the corruption.
	victim := (c.leader() + 1) % 3
	key := "repair/one-down/3" // 300 KiB: streamed
	c.stop(victim)
	vol := filepath.Join(c.nodes[victim].dir, "volume.blob")
	off := findInFile(t, vol, want[key][1000:1064])
	fh, err := os.OpenFile(vol, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt([]byte{want[key][1000] ^ 0xff}, off); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	c.start(victim)
	c.leader()
	r := c.nodes[victim].do(t, http.MethodGet, blobPath(key)+"?consistency=stale", nil)
	if r.status != http.StatusOK || !bytes.Equal(r.body, want[key]) {
		t.Fatalf("GET of the corrupted blob from its node: %d, %d bytes", r.status, len(r.body))
	}
	if got := c.nodes[victim].metric(t, "blobnode_chunks_corrupt_total"); got == "0" || got == "" {
		t.Fatalf("blobnode_chunks_corrupt_total = %q after serving a corrupt chunk", got)
	}
	if got := c.nodes[victim].metric(t, "blobnode_chunks_repaired_total"); got == "0" || got == "" {
		t.Fatalf("blobnode_chunks_repaired_total = %q after a read repair", got)
	}
	readEverywhere(t, c, want)
}

// TestClusterScrub: a chunk corrupted on one replica's disk after it was
// verified is found and repaired by the scrubber, with no read asking for
// it.
func TestClusterScrub(t *testing.T) {
	c := newCluster(t, 3, "-scrub-rate", "64MiB")
	want := map[string][]byte{}
	for i := range 4 {
		key := fmt.Sprintf("scrub/%d", i)
		want[key] = payload(seedOf(key), 300<<10) // streamed
		c.nodes[c.leader()].put(t, key, want[key])
	}
	waitRepaired(t, c)
	victim := (c.leader() + 1) % 3
	c.stop(victim)
	vol := filepath.Join(c.nodes[victim].dir, "volume.blob")
	off := findInFile(t, vol, want["scrub/2"][5000:5064])
	fh, err := os.OpenFile(vol, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fh.WriteAt([]byte{want["scrub/2"][5000] ^ 0x55}, off); err != nil {
		t.Fatal(err)
	}
	fh.Close()
	c.start(victim)
	n := c.nodes[victim]
	waitFor(t, time.Minute, func() bool {
		return n.metric(t, "blobnode_chunks_repaired_total") == "1"
	}, func() string {
		return "the scrubber did not repair the corrupt chunk: repaired " + n.metric(t, "blobnode_chunks_repaired_total") +
			", scrubbed bytes " + n.metric(t, "blobnode_scrubbed_bytes_total")
	})
	if got := n.metric(t, "blobnode_chunks_corrupt_total"); got != "1" {
		t.Fatalf("blobnode_chunks_corrupt_total = %s, want 1", got)
	}
	readEverywhere(t, c, want)
}
