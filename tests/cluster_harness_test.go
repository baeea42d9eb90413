package tests

import (
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/blobnode/blobnode/internal/netfault"
)

// Tests of the cluster helper itself; they start no blobnode process.

func TestAgreedLeader(t *testing.T) {
	ids := []string{"n1", "n2", "n3"}
	view := func(state, leader string) leaderView {
		var s clusterStatus
		s.State, s.Leader.ID = state, leader
		return leaderView{status: s}
	}
	for _, tc := range []struct {
		name  string
		views map[int]leaderView
		want  int
	}{
		{"all agree", map[int]leaderView{0: view("Follower", "n2"), 1: view("Leader", "n2"), 2: view("Follower", "n2")}, 1},
		{"majority side of a partition", map[int]leaderView{0: view("Leader", "n1"), 2: view("Follower", "n1")}, 0},
		{"three one-node groups", map[int]leaderView{0: view("Leader", "n1"), 1: view("Leader", "n2"), 2: view("Leader", "n3")}, -1},
		{"one node knows no leader", map[int]leaderView{0: view("Follower", "n2"), 1: view("Leader", "n2"), 2: view("Candidate", "")}, -1},
		{"the named leader stepped down", map[int]leaderView{0: view("Follower", "n2"), 1: view("Follower", "n2")}, -1},
		{"leader not asked", map[int]leaderView{0: view("Follower", "n2"), 2: view("Follower", "n2")}, -1},
		{"leader of another cluster", map[int]leaderView{0: view("Follower", "x9"), 1: view("Follower", "x9")}, -1},
		{"a node does not answer", map[int]leaderView{0: view("Leader", "n1"), 1: {err: errors.New("connection refused")}}, -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, why := agreedLeader(ids, tc.views)
			if got != tc.want {
				t.Fatalf("agreedLeader = %d (%s), want %d", got, why, tc.want)
			}
			if got < 0 && why == "" {
				t.Fatal("no leader and no reason")
			}
		})
	}
}

// TestClusterPlumbing checks what prepareCluster sets up, with echo
// listeners standing in for the nodes: the contract flags, the secret
// file, one IP per node, proxies that forward peer traffic from the node's
// own IP, and links that isolate and heal.
func TestClusterPlumbing(t *testing.T) {
	c := prepareCluster(t, 3, "-log-level", "debug")
	fi, err := os.Stat(c.secret)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() < 32 {
		t.Fatalf("secret file mode %v, %d bytes; want 0600 and at least 32", fi.Mode().Perm(), fi.Size())
	}
	for i, n := range c.nodes {
		ip := nodeIP(i).String()
		for _, a := range []string{n.httpAddr, n.raftAddr} {
			if host, _, _ := net.SplitHostPort(a); host != ip {
				t.Errorf("%s listens on %s, want IP %s", c.ids[i], a, ip)
			}
		}
		if !strings.HasPrefix(n.base, "http://"+ip+":") {
			t.Errorf("%s: clients reach it at %s, want its own address", c.ids[i], n.base)
		}
		flags := strings.Join(n.flags, " ")
		for _, want := range []string{
			"-node-id " + c.ids[i],
			"-peers n1=" + c.raftProxy[0] + ",n2=" + c.raftProxy[1] + ",n3=" + c.raftProxy[2],
			"-cluster-secret-file " + c.secret,
			"-advertise-addr " + c.apiProxy[i],
		} {
			if !strings.Contains(flags, want) {
				t.Errorf("%s flags %q lack %q", c.ids[i], flags, want)
			}
		}
		if !strings.HasSuffix(flags, "-log-level debug") {
			t.Errorf("%s flags %q: the caller's flags must come last", c.ids[i], flags)
		}
	}
	// Stand-ins for n2's listeners; n1 dials n2's proxies from its IP.
	raftAccepted := echoOn(t, c.nodes[1].raftAddr)
	echoOn(t, c.nodes[1].httpAddr)
	for _, proxy := range []string{c.raftProxy[1], c.apiProxy[1]} {
		requireEcho(t, dialAs(t, 0, proxy))
	}
	c.isolate(1)
	if !c.isolated(1) || c.isolated(0) {
		t.Fatal("isolated() disagrees with isolate(1)")
	}
	before := raftAccepted()
	dialAs(t, 0, c.raftProxy[1]).Write([]byte("into the void\n"))
	waitFor(t, 5*time.Second, func() bool { return c.net.Stats()[linkOf(c, 0, 1)].Blackholed == 1 },
		func() string { return "no blackholed connection n1->n2: " + c.linkStats() })
	if got := raftAccepted(); got != before {
		t.Fatalf("n2 accepted %d connections while isolated", got-before)
	}
	c.heal()
	requireEcho(t, dialAs(t, 0, c.raftProxy[1]))
}

func linkOf(c *cluster, from, to int) netfault.Link {
	return netfault.Link{From: c.ids[from], To: c.ids[to]}
}

// echoOn serves an echo on addr until the test ends; accepted counts the
// connections it took.
func echoOn(t *testing.T, addr string) (accepted func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex // guards conns
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); io.Copy(c, c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return func() int { mu.Lock(); defer mu.Unlock(); return len(conns) }
}

// dialAs connects to addr from node i's IP, as node i would.
func dialAs(t *testing.T, i int, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: nodeIP(i).AsSlice()}}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// requireEcho sends a line and requires it back.
func requireEcho(t *testing.T, conn net.Conn) {
	t.Helper()
	msg := []byte("ping\n")
	if _, err := conn.Write(msg); err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(conn, buf); err != nil || !slices.Equal(buf, msg) {
		t.Fatalf("echo %q, %v; want %q", buf, err, msg)
	}
}
