package tests

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// usedBytes is the allocator's used bytes on node i.
func (c *cluster) usedBytes(t *testing.T, i int) int64 {
	t.Helper()
	r := c.nodes[i].do(t, http.MethodGet, "/cluster", nil)
	var s struct {
		Volume struct {
			Used int64 `json:"used_bytes"`
		} `json:"volume"`
	}
	if r.status != http.StatusOK || json.Unmarshal(r.body, &s) != nil {
		t.Fatalf("GET /cluster: %v", r)
	}
	return s.Volume.Used
}

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
	before := c.usedBytes(t, l)
	body := payload(seedOf("cut"), 1<<20)
	conn := c.nodes[fi].dialRaw(t)
	writeAll(t, conn, putHead("cut/blob", fmt.Sprintf("Content-Length: %d", len(body))))
	writeAll(t, conn, body[:300<<10])
	waitFor(t, 20*time.Second, func() bool { return c.usedBytes(t, l) > before },
		func() string { return "the upload's reservation never appeared on the leader" })
	c.kill(fi)
	waitFor(t, 30*time.Second, func() bool { return c.usedBytes(t, l) == before },
		func() string {
			return fmt.Sprintf("used bytes on the leader %d, %d before the upload: the reservation did not expire", c.usedBytes(t, l), before)
		})
	c.start(fi)
	c.leader()
	for i, n := range c.nodes {
		if r := n.do(t, http.MethodGet, blobPath("cut/blob"), nil); r.status != http.StatusNotFound {
			t.Fatalf("%s: the cut upload is visible: %v", c.ids[i], r)
		}
		waitFor(t, 20*time.Second, func() bool { return c.usedBytes(t, i) == before },
			func() string { return fmt.Sprintf("%s: used bytes %d, want %d", c.ids[i], c.usedBytes(t, i), before) })
	}
}
