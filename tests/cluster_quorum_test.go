package tests

import (
	"context"
	"net/http"
	"testing"
	"time"
)

// TestClusterWriteWithoutQuorum: writes at a leader cut off from both
// followers answer 503 within the write bound (10 s) and say what is
// known: a PUT the leader appended before it stepped down is
// OutcomeUnknown (a majority might have stored it); once it knows no
// leader, a PUT or DELETE is Unavailable (nothing was done), and none of
// those appears after the partition heals.
func TestClusterWriteWithoutQuorum(t *testing.T) {
	c := newCluster(t, 3)
	l := c.leader()
	n := c.nodes[l]
	n.put(t, "quorum/existing", []byte("before the partition"))
	const bound = 10*time.Second + 3*time.Second // the write bound, and slack for a loaded machine
	write := func(method, key string, body []byte) (reply, time.Duration) {
		start := time.Now()
		r := n.do(t, method, blobPath(key), body)
		return r, time.Since(start)
	}

	c.isolate(l)
	// The leader still leads for up to its lease (500 ms): this PUT is
	// appended to its log, then leadership is lost.
	r, took := write(http.MethodPut, "quorum/appended", []byte("appended, never committed"))
	if r.status != http.StatusServiceUnavailable || r.code() != "OutcomeUnknown" || took > bound {
		t.Fatalf("PUT at the leader just cut off: %d %s after %v (%s); want 503 OutcomeUnknown within %v", r.status, r.code(), took, r.body, bound)
	}
	waitFor(t, 30*time.Second, func() bool {
		s, err := c.status(context.Background(), l)
		return err == nil && s.State != "Leader" && s.Leader.ID == ""
	}, func() string { return c.ids[l] + " still leads, or knows a leader, cut off from both followers" })
	r, took = write(http.MethodPut, "quorum/refused", []byte("never proposed"))
	if r.status != http.StatusServiceUnavailable || r.code() != "Unavailable" || took > bound {
		t.Fatalf("PUT at a node that knows no leader: %d %s after %v (%s); want 503 Unavailable within %v", r.status, r.code(), took, r.body, bound)
	}
	r, took = write(http.MethodDelete, "quorum/existing", nil)
	if r.status != http.StatusServiceUnavailable || r.code() != "Unavailable" || took > bound {
		t.Fatalf("DELETE at a node that knows no leader: %d %s after %v (%s); want 503 Unavailable within %v", r.status, r.code(), took, r.body, bound)
	}

	c.heal()
	c.leader()
	for i := range c.nodes {
		if r := c.nodes[i].do(t, http.MethodGet, blobPath("quorum/refused"), nil); r.status != http.StatusNotFound {
			t.Fatalf("GET of a PUT answered Unavailable, at %s after the heal: %d; want 404", c.ids[i], r.status)
		}
		if r := c.nodes[i].do(t, http.MethodGet, blobPath("quorum/existing"), nil); r.status != http.StatusOK {
			t.Fatalf("GET of a blob whose DELETE was answered Unavailable, at %s after the heal: %d; want 200", c.ids[i], r.status)
		}
	}
}
