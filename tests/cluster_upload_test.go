package tests

import (
	"bufio"
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestClusterSlowUploadOnFollower: an upload coordinated on a follower that
// trickles in for longer than the reservation TTL keeps its reservation
// (the follower renews it through Raft) while other blobs are written and
// deleted through the leader, and commits intact; the others are intact.
func TestClusterSlowUploadOnFollower(t *testing.T) {
	c := newCluster(t, 3, "-reservation-ttl", "2s")
	l := c.leader()
	f := c.nodes[(l+1)%3]
	body := payload(seedOf("slow"), 640<<10)

	conn := f.dialRaw(t)
	writeAll(t, conn, putHead("slow/blob", fmt.Sprintf("Content-Length: %d", len(body))))
	others := map[string][]byte{}
	const piece = 32 << 10
	for off, i := 0, 0; off < len(body); off, i = off+piece, i+1 {
		writeAll(t, conn, body[off:off+piece])
		// Meanwhile the leader allocates and frees pages: if the slow
		// upload's reservation expired, its pages would be handed out.
		key := fmt.Sprintf("slow/other/%d", i)
		o := payload(seedOf(key), 100<<10)
		c.nodes[l].put(t, key, o)
		if i%2 == 1 {
			c.nodes[l].do(t, http.MethodDelete, blobPath(fmt.Sprintf("slow/other/%d", i-1)), nil)
			delete(others, fmt.Sprintf("slow/other/%d", i-1))
		}
		others[key] = o
		time.Sleep(250 * time.Millisecond) // the upload's pace: 20 pieces over 5 s, 2.5 TTLs
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("slow upload on a follower: %s; want 201", resp.Status)
	}
	others["slow/blob"] = body
	readEverywhere(t, c, others)
}

// TestClusterCoordinatorKilledMidUpload: the node coordinating an upload
// dies part-way; its reservation expires by the time in the log, the
// space comes back on every node, and nothing becomes visible.
func TestClusterCoordinatorKilledMidUpload(t *testing.T) {
	c := newCluster(t, 3, "-reservation-ttl", "2s")
	l := c.leader()
	fi := (l + 1) % 3
	before := c.nodes[l].volume(t).UsedBytes
	body := payload(seedOf("cut"), 1<<20)
	conn := c.nodes[fi].dialRaw(t)
	writeAll(t, conn, putHead("cut/blob", fmt.Sprintf("Content-Length: %d", len(body))))
	writeAll(t, conn, body[:300<<10])
	waitFor(t, 20*time.Second, func() bool { return c.nodes[l].volume(t).UsedBytes > before },
		func() string { return "the upload's reservation never appeared on the leader" })
	c.kill(fi)
	waitFor(t, 30*time.Second, func() bool { return c.nodes[l].volume(t).UsedBytes == before },
		func() string {
			return fmt.Sprintf("used bytes on the leader %d, %d before the upload: the reservation did not expire", c.nodes[l].volume(t).UsedBytes, before)
		})
	c.start(fi)
	c.leader()
	for i, n := range c.nodes {
		if r := n.do(t, http.MethodGet, blobPath("cut/blob"), nil); r.status != http.StatusNotFound {
			t.Fatalf("%s: the cut upload is visible: %v", c.ids[i], r)
		}
		waitFor(t, 20*time.Second, func() bool { return c.nodes[i].volume(t).UsedBytes == before },
			func() string {
				return fmt.Sprintf("%s: used bytes %d, want %d", c.ids[i], c.nodes[i].volume(t).UsedBytes, before)
			})
	}
}

// TestClusterStreamsToPeersDuringUpload: an upload of known size reaches
// the peers chunk by chunk while its body is still arriving, not after
// the coordinator has it all: with the client paused halfway, both peers
// have already received the chunks sent so far.
func TestClusterStreamsToPeersDuringUpload(t *testing.T) {
	c := newCluster(t, 3)
	coord := c.leader()
	body := payload(seedOf("stream"), 4<<20)
	before := make([]float64, 3)
	for i := range c.nodes {
		before[i] = c.nodes[i].metricValue(t, "blobnode_replica_bytes_received_total")
	}
	conn := c.nodes[coord].dialRaw(t)
	writeAll(t, conn, putHead("stream/blob", fmt.Sprintf("Content-Length: %d", len(body))))
	half := len(body) / 2
	writeAll(t, conn, body[:half])
	// The coordinator has read at most half of the body; each peer must
	// already hold most of it (the last chunks may be queued).
	for i := range c.nodes {
		if i == coord {
			continue
		}
		waitFor(t, 30*time.Second, func() bool {
			return c.nodes[i].metricValue(t, "blobnode_replica_bytes_received_total")-before[i] >= float64(half-1<<20)
		}, func() string {
			return fmt.Sprintf("%s received %v bytes of the first %d while the upload was paused", c.ids[i],
				c.nodes[i].metricValue(t, "blobnode_replica_bytes_received_total")-before[i], half)
		})
	}
	writeAll(t, conn, body[half:])
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("upload: %s; want 201", resp.Status)
	}
	readEverywhere(t, c, map[string][]byte{"stream/blob": body})

	// A peer cut off (its link a black hole: sends stall once the
	// buffers fill) does not hold the upload up: the other peer makes
	// the majority, and the replica set says so.
	f := (coord + 1) % 3
	c.isolate(f)
	big := payload(seedOf("stream/partitioned"), 12<<20)
	start := time.Now()
	c.nodes[coord].put(t, "stream/partitioned", big)
	took := time.Since(start)
	r := c.nodes[coord].do(t, http.MethodHead, blobPath("stream/partitioned"), nil)
	if got, want := r.header.Get("Blobnode-Replicas"), c.ids[coord]+","+c.ids[(coord+2)%3]; got != want {
		t.Fatalf("replicas of an upload with %s cut off: %q; want %q", c.ids[f], got, want)
	}
	t.Logf("12 MiB upload with one peer cut off: %v", took)
	c.heal()
}

// TestClusterAnnouncesCommits: a follower learns that an entry committed
// only from an AppendEntries that carries entries, which an idle leader
// sends every -raft-commit-timeout; here 20 s. A streamed upload's peers,
// and its coordinator when a follower, write only once they have applied
// its Reserve, and a linearizable read at a follower waits until it has
// applied the write it must see. Without the leader announcing those
// commits, each step below would wait up to 20 s (uniformly, each time);
// each must take well under 2 s.
func TestClusterAnnouncesCommits(t *testing.T) {
	c := newCluster(t, 3, "-raft-commit-timeout", "20s")
	l := c.leader()
	within := func(what string, fn func()) {
		t.Helper()
		start := time.Now()
		fn()
		if took := time.Since(start); took > 2*time.Second {
			t.Fatalf("%s took %v with a 20 s commit timeout: a commit was not announced", what, took)
		}
	}
	for _, i := range []int{l, (l + 1) % 3, l, (l + 2) % 3} {
		for _, size := range []int64{1 << 20, 1 << 10} { // streamed, then inline
			key := fmt.Sprintf("announce/%s/%d/%d", c.ids[i], size, time.Now().UnixNano())
			body := payload(seedOf(key), size)
			within(fmt.Sprintf("%d-byte PUT at %s (leader %s)", size, c.ids[i], c.ids[l]), func() { c.nodes[i].put(t, key, body) })
			for j := range c.nodes {
				var r reply
				within(fmt.Sprintf("GET at %s of what %s just wrote", c.ids[j], c.ids[i]), func() {
					r = c.nodes[j].do(t, http.MethodGet, blobPath(key), nil)
				})
				if r.status != http.StatusOK || !bytes.Equal(r.body, body) {
					t.Fatalf("GET %q at %s: %d, %d bytes", key, c.ids[j], r.status, len(r.body))
				}
				if size > 16<<10 {
					if got := strings.Split(r.header.Get("Blobnode-Replicas"), ","); len(got) != 3 {
						t.Fatalf("%q: Blobnode-Replicas %v; want all three nodes", key, got)
					}
				}
			}
		}
	}
}
