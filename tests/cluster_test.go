package tests

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/blobnode/blobnode/internal/history"
	"github.com/blobnode/blobnode/internal/netfault"
)

// Loopback IPs of a cluster: node i listens on nodeIPBase+i and dials its
// peers from it; its proxies listen on proxyIPBase+i. All of 127.0.0.0/8
// is local on Linux. Clusters of one test binary share the IPs, not ports.
const (
	nodeIPBase  = 11 // 127.0.0.11, .12, ...
	proxyIPBase = 21 // 127.0.0.21, .22, ...
	maxCluster  = 9
	// leaderTimeout bounds an election (and agreement on its result).
	leaderTimeout = 30 * time.Second
)

// cluster is a group of blobnode processes on one machine, each on its own
// loopback IP, whose peer traffic (Raft and the peer API) crosses a
// netfault proxy per node so a test can cut links. The test's own clients
// reach each node directly (node.base), so a partitioned node still answers
// them. Methods must be called from the test goroutine.
type cluster struct {
	t      testing.TB
	nodes  []*node
	ids    []string // node i's -node-id: n1, n2, ...
	net    *netfault.Net
	secret string // path of the cluster secret file
	// raftProxy and apiProxy are node i's addresses as its peers know
	// them: -peers lists raftProxy, -advertise-addr is apiProxy.
	raftProxy, apiProxy []string
}

// clusterStatus is the part of GET /cluster the cluster tests read.
type clusterStatus struct {
	State  string `json:"state"` // Raft state: Leader, Follower, Candidate, ...
	Leader struct {
		ID      string `json:"id"`
		Address string `json:"address"`
	} `json:"leader"`
	AppliedIndex uint64          `json:"applied_index"`
	CommitIndex  uint64          `json:"commit_index"`
	Nodes        json.RawMessage `json:"nodes"`
}

// newCluster starts size blobnode processes as one group with the contract
// flags (-node-id, -peers through the proxies, -cluster-secret-file,
// -advertise-addr) and flags, waits until every node is ready and all agree
// on one leader, and stops everything in t.Cleanup.
func newCluster(t testing.TB, size int, flags ...string) *cluster {
	t.Helper()
	c := prepareCluster(t, size, flags...)
	for i := range c.nodes {
		c.launch(i)
	}
	for i := range c.nodes {
		c.nodes[i].waitReady()
	}
	c.leader()
	return c
}

// prepareCluster is newCluster without starting any node.
func prepareCluster(t testing.TB, size int, flags ...string) *cluster {
	t.Helper()
	if size < 1 || size > maxCluster {
		t.Fatalf("newCluster: size %d, want 1..%d", size, maxCluster)
	}
	c := &cluster{t: t}
	nodes := map[string]netip.Addr{}
	for i := range size {
		id := fmt.Sprintf("n%d", i+1)
		c.ids = append(c.ids, id)
		nodes[id] = nodeIP(i)
	}
	nf, err := netfault.New(netfault.Config{Nodes: nodes, Mode: netfault.Blackhole, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	c.net = nf
	// Registered first, so it runs last: after every node has stopped.
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("proxy stats: %s", c.linkStats())
		}
		if err := nf.Close(); err != nil {
			t.Errorf("close proxies: %v", err)
		}
	})

	dir := t.TempDir()
	c.secret = filepath.Join(dir, "cluster-secret")
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(c.secret, []byte(hex.EncodeToString(b[:])+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	// Each node's listeners first, then its proxies in front of them.
	for i, id := range c.ids {
		ip := nodeIP(i).String()
		n := prepareNodeOn(t, ip, filepath.Join(dir, id))
		if err := os.Mkdir(n.dir, 0o700); err != nil {
			t.Fatal(err)
		}
		n.logPath = filepath.Join(dir, id+".log")
		proxyIP := netip.AddrFrom4([4]byte{127, 0, 0, byte(proxyIPBase + i)}).String()
		raftProxy, err := nf.Listen(id, net.JoinHostPort(proxyIP, "0"), n.raftAddr)
		if err != nil {
			t.Fatal(err)
		}
		apiProxy, err := nf.Listen(id, net.JoinHostPort(proxyIP, "0"), n.httpAddr)
		if err != nil {
			t.Fatal(err)
		}
		c.nodes = append(c.nodes, n)
		c.raftProxy = append(c.raftProxy, raftProxy)
		c.apiProxy = append(c.apiProxy, apiProxy)
	}
	var peers []string
	for i, id := range c.ids {
		peers = append(peers, id+"="+c.raftProxy[i])
	}
	for i, n := range c.nodes {
		n.flags = append([]string{
			// Small volumes: three of the default 1 GiB are slow to
			// fallocate on a busy disk. flags may override it.
			"-volume-size", "256MiB",
			"-node-id", c.ids[i],
			"-peers", strings.Join(peers, ","),
			"-cluster-secret-file", c.secret,
			"-advertise-addr", c.apiProxy[i],
		}, flags...)
	}
	return c
}

func nodeIP(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 0, byte(nodeIPBase + i)}) }

// size is the number of nodes.
func (c *cluster) size() int { return len(c.nodes) }

// node returns node i (from 0), for its request helpers.
func (c *cluster) node(i int) *node { return c.nodes[i] }

// urls returns each node's API base URL as the test's clients reach it:
// directly, not through the proxies.
func (c *cluster) urls() []string {
	var u []string
	for _, n := range c.nodes {
		u = append(u, n.base)
	}
	return u
}

// launch starts node i without waiting for it to be ready.
func (c *cluster) launch(i int) { c.t.Helper(); c.nodes[i].launch() }

// start starts node i and waits until it is ready (knows a leader).
func (c *cluster) start(i int) { c.t.Helper(); c.nodes[i].start() }

// stop stops node i with SIGTERM and requires a clean exit.
func (c *cluster) stop(i int) { c.t.Helper(); c.nodes[i].stop() }

// kill stops node i with SIGKILL.
func (c *cluster) kill(i int) { c.t.Helper(); c.nodes[i].kill() }

// wipe removes the data directory of stopped node i: it restarts with no
// state at all (a replaced disk).
func (c *cluster) wipe(i int) {
	c.t.Helper()
	n := c.nodes[i]
	if n.running() {
		c.t.Fatalf("wipe %s: node is running", c.ids[i])
	}
	if err := os.RemoveAll(n.dir); err != nil {
		c.t.Fatal(err)
	}
	if err := os.Mkdir(n.dir, 0o700); err != nil {
		c.t.Fatal(err)
	}
}

// isolate cuts every link from and to node i (a partition of one node);
// blackholed, as a real partition looks.
func (c *cluster) isolate(i int) {
	c.t.Helper()
	if err := c.net.Isolate(c.ids[i]); err != nil {
		c.t.Fatal(err)
	}
}

// block cuts the connections node from opens to node to.
func (c *cluster) block(from, to int) {
	c.t.Helper()
	if err := c.net.Block(c.ids[from], c.ids[to]); err != nil {
		c.t.Fatal(err)
	}
}

// heal restores every link.
func (c *cluster) heal() { c.net.Heal() }

// isolated reports whether every link into node i is cut.
func (c *cluster) isolated(i int) bool {
	for j := range c.nodes {
		if j != i && !c.net.Blocked(c.ids[j], c.ids[i]) {
			return false
		}
	}
	return c.size() > 1
}

// status reads GET /cluster of node i; it never fails the test, so it can
// be polled.
func (c *cluster) status(ctx context.Context, i int) (clusterStatus, error) {
	var s clusterStatus
	n := c.nodes[i]
	if !n.running() {
		return s, errors.New("not running")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.base+"/cluster", nil)
	if err != nil {
		return s, err
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return s, err
	}
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET /cluster: %s: %.200s", resp.Status, body)
	}
	if err := json.Unmarshal(body, &s); err != nil {
		return s, fmt.Errorf("GET /cluster: %w: %.200s", err, body)
	}
	return s, nil
}

// leader waits until the running nodes that are not isolated agree on one
// leader among them, which says it is the leader, and returns its index.
func (c *cluster) leader() int {
	c.t.Helper()
	var among []int
	for i, n := range c.nodes {
		if n.running() && !c.isolated(i) {
			among = append(among, i)
		}
	}
	return c.waitLeader(among...)
}

// waitLeader waits until the nodes among agree on one leader among them,
// which says it is the leader, and returns its index.
func (c *cluster) waitLeader(among ...int) int {
	c.t.Helper()
	if len(among) == 0 {
		c.t.Fatal("waitLeader: no node to ask")
	}
	deadline := time.Now().Add(leaderTimeout)
	last := "no answer yet"
	for {
		views := make(map[int]leaderView, len(among))
		for _, i := range among {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			s, err := c.status(ctx, i)
			cancel()
			views[i] = leaderView{status: s, err: err}
		}
		leader, why := agreedLeader(c.ids, views)
		if leader >= 0 {
			return leader
		}
		last = why
		if time.Now().After(deadline) {
			c.t.Fatalf("no agreed leader among %v after %v: %s", c.idsOf(among), leaderTimeout, last)
		}
		waitTick(nil)
	}
}

func (c *cluster) idsOf(idx []int) []string {
	var out []string
	for _, i := range idx {
		out = append(out, c.ids[i])
	}
	return out
}

// leaderView is what one node said of the leader.
type leaderView struct {
	status clusterStatus
	err    error
}

// agreedLeader returns the index (in ids) of the leader every view names,
// if that leader is one of the views and says it is the leader; otherwise
// -1 and why not.
func agreedLeader(ids []string, views map[int]leaderView) (int, string) {
	order := make([]int, 0, len(views))
	for i := range views {
		order = append(order, i)
	}
	slices.Sort(order)
	var seen []string
	leaderID := ""
	agree := true
	for _, i := range order {
		v := views[i]
		if v.err != nil {
			return -1, fmt.Sprintf("%s: %v", ids[i], v.err)
		}
		seen = append(seen, fmt.Sprintf("%s is %s, leader %q", ids[i], v.status.State, v.status.Leader.ID))
		switch {
		case v.status.Leader.ID == "":
			agree = false
		case leaderID == "":
			leaderID = v.status.Leader.ID
		case v.status.Leader.ID != leaderID:
			agree = false
		}
	}
	why := strings.Join(seen, "; ")
	if !agree {
		return -1, why
	}
	li := slices.Index(ids, leaderID)
	if li < 0 {
		return -1, fmt.Sprintf("%s: leader %q is no node of this cluster", why, leaderID)
	}
	v, asked := views[li]
	if !asked {
		return -1, fmt.Sprintf("%s: leader %s is not among the nodes asked", why, leaderID)
	}
	if v.status.State != "Leader" {
		return -1, why
	}
	return li, ""
}

// linkStats describes the proxies' counters, one link a line.
func (c *cluster) linkStats() string {
	stats := c.net.Stats()
	links := make([]netfault.Link, 0, len(stats))
	for l := range stats {
		links = append(links, l)
	}
	slices.SortFunc(links, func(a, b netfault.Link) int { return strings.Compare(a.String(), b.String()) })
	var b strings.Builder
	for _, l := range links {
		fmt.Fprintf(&b, "\n  %s %+v", l, stats[l])
	}
	return b.String()
}

// requireLinearizable checks a recorded history. On failure porcupine's
// visualisation is kept in a directory that outlives the test
// ($BLOBNODE_HISTORY_DIR, or a new one under the system temp dir), and the
// test fails naming it.
func requireLinearizable(t testing.TB, rec *history.Recorder) *history.Result {
	t.Helper()
	dir, temp := os.Getenv("BLOBNODE_HISTORY_DIR"), false
	if dir != "" {
		dir = filepath.Join(dir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	} else {
		d, err := os.MkdirTemp("", "blobnode-history-")
		if err != nil {
			t.Fatal(err)
		}
		dir, temp = d, true
	}
	res, err := history.Check(rec.Ops(), history.Options{Timeout: 2 * time.Minute, VisualizeDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if err := res.Err(); err != nil {
		t.Fatalf("history check failed (report kept in %s): %v", dir, err)
	}
	if temp {
		os.Remove(dir) // empty: Check writes only on failure
	}
	t.Log(res.Summary)
	return res
}
