package netfault

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Bounds on waiting; loopback is far faster.
const (
	waitTimeout = 10 * time.Second
	pollEvery   = 5 * time.Millisecond
)

// echoServer echoes every connection and counts what it received. Its
// goroutines stop in t.Cleanup.
type echoServer struct {
	ln net.Listener
	wg sync.WaitGroup

	mu    sync.Mutex // guards the fields below
	conns []net.Conn
	got   []byte // every byte received, all connections
	ended int    // connections that ended (EOF or error)
}

func newEcho(t *testing.T, ip string) *echoServer {
	t.Helper()
	ln, err := net.Listen("tcp", ip+":0")
	if err != nil {
		t.Fatalf("listen on %s (all of 127.0.0.0/8 must be local): %v", ip, err)
	}
	e := &echoServer{ln: ln}
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			e.mu.Lock()
			e.conns = append(e.conns, c)
			e.mu.Unlock()
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					k, err := c.Read(buf)
					if k > 0 {
						e.mu.Lock()
						e.got = append(e.got, buf[:k]...)
						e.mu.Unlock()
						if _, werr := c.Write(buf[:k]); werr != nil {
							err = werr
						}
					}
					if err != nil {
						e.mu.Lock()
						e.ended++
						e.mu.Unlock()
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		e.mu.Lock()
		for _, c := range e.conns {
			c.Close()
		}
		e.mu.Unlock()
		e.wg.Wait()
	})
	return e
}

func (e *echoServer) addr() string { return e.ln.Addr().String() }

func (e *echoServer) snapshot() (accepted, ended int, got []byte) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.conns), e.ended, bytes.Clone(e.got)
}

// fixture is three nodes a, b, c, each with an echo server standing for
// its listener and a proxy in front of it.
type fixture struct {
	net   *Net
	ip    map[string]string      // node -> the IP it dials from
	echo  map[string]*echoServer // node -> its listener
	proxy map[string]string      // node -> its proxy's address
}

func newFixture(t *testing.T, mode Mode) *fixture {
	t.Helper()
	f := &fixture{
		ip:    map[string]string{"a": "127.0.0.41", "b": "127.0.0.42", "c": "127.0.0.43"},
		echo:  map[string]*echoServer{},
		proxy: map[string]string{},
	}
	nodes := map[string]netip.Addr{}
	for name, ip := range f.ip {
		nodes[name] = netip.MustParseAddr(ip)
	}
	n, err := New(Config{Nodes: nodes, Mode: mode, Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	f.net = n
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	proxyIP := map[string]string{"a": "127.0.0.51", "b": "127.0.0.52", "c": "127.0.0.53"}
	for name := range f.ip {
		f.echo[name] = newEcho(t, f.ip[name])
		addr, err := n.Listen(name, proxyIP[name]+":0", f.echo[name].addr())
		if err != nil {
			t.Fatal(err)
		}
		f.proxy[name] = addr
	}
	return f
}

// dial opens a connection from node from to node to's proxy.
func (f *fixture) dial(t *testing.T, from, to string) net.Conn {
	t.Helper()
	return dialFrom(t, f.ip[from], f.proxy[to])
}

func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: waitTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial %s from %s: %v", addr, ip, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// requireRefused dials addr from ip and requires the connection to be cut
// at once, which the dialler may already see as a failed connect.
func requireRefused(t *testing.T, ip, addr string) {
	t.Helper()
	d := net.Dialer{Timeout: waitTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.ECONNRESET) {
			return
		}
		t.Fatalf("dial %s from %s: %v", addr, ip, err)
	}
	defer c.Close()
	requireCut(t, c)
}

// roundTrip sends msg and requires it echoed back.
func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(waitTimeout))
	defer c.SetDeadline(time.Time{})
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatalf("write: %v", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read echo of %q: %v", msg, err)
	}
	if string(buf) != msg {
		t.Fatalf("echo %q, want %q", buf, msg)
	}
}

// requireCut requires c to end (EOF or reset) without any byte arriving.
func requireCut(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	var buf [64]byte
	k, err := c.Read(buf[:])
	if k > 0 {
		t.Fatalf("read %q from a cut connection", buf[:k])
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %v", waitTimeout)
	}
	if err == nil {
		t.Fatal("read returned no error and no byte")
	}
}

// waitFor polls cond until it holds; describe says what was seen instead.
func waitFor(t *testing.T, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", waitTimeout, describe())
		}
		timer := time.NewTimer(pollEvery)
		<-timer.C
	}
}

func (f *fixture) waitStat(t *testing.T, l Link, what string, get func(LinkStats) int, want int) {
	t.Helper()
	var s LinkStats
	waitFor(t, func() bool { s = f.net.Stats()[l]; return get(s) >= want },
		func() string { return l.String() + " " + what + ": stats " + statsString(s) })
}

func statsString(s LinkStats) string { return fmt.Sprintf("%+v", s) }

func TestForwardsAndHalfCloses(t *testing.T) {
	f := newFixture(t, Blackhole)
	c := f.dial(t, "a", "b")
	roundTrip(t, c, "hello")
	roundTrip(t, c, "again")
	// A half-close reaches the node, and the echo still comes back.
	if _, err := c.Write([]byte("bye")); err != nil {
		t.Fatal(err)
	}
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(waitTimeout))
	rest, err := io.ReadAll(c)
	if err != nil || string(rest) != "bye" {
		t.Fatalf("after half-close: %q, %v; want \"bye\", EOF", rest, err)
	}
	s := f.net.Stats()[Link{"a", "b"}]
	if s.Forwarded != 1 || s.Bytes != 2*int64(len("helloagainbye")) {
		t.Fatalf("stats %s, want 1 forwarded and %d bytes", statsString(s), 2*len("helloagainbye"))
	}
}

// TestBlock checks, for both modes, that Block resets the link's
// connections at once, that the blocked link carries no byte and opens no
// connection to the node, that other links (the reverse one included) are
// untouched, and that Unblock restores it.
func TestBlock(t *testing.T) {
	for _, mode := range []Mode{Blackhole, Refuse} {
		t.Run(mode.String(), func(t *testing.T) {
			f := newFixture(t, mode)
			ab := f.dial(t, "a", "b")
			cb := f.dial(t, "c", "b")
			ba := f.dial(t, "b", "a")
			roundTrip(t, ab, "before")
			roundTrip(t, cb, "other")
			roundTrip(t, ba, "reverse")

			if err := f.net.Block("a", "b"); err != nil {
				t.Fatal(err)
			}
			if !f.net.Blocked("a", "b") || f.net.Blocked("b", "a") {
				t.Fatal("Blocked disagrees with Block(a, b)")
			}
			acceptedBefore, _, gotBefore := f.echo["b"].snapshot()
			// The existing connection is dead: nothing written now reaches b.
			ab.Write([]byte("after")) // may fail or be buffered; neither may deliver
			requireCut(t, ab)
			// Wait until b has seen the forwarded connection end, so every
			// byte that could have reached it has.
			waitFor(t, func() bool { _, ended, _ := f.echo["b"].snapshot(); return ended >= 1 },
				func() string { return "b never saw the cut connection end" })
			if _, _, got := f.echo["b"].snapshot(); !bytes.Equal(got, gotBefore) {
				t.Fatalf("b received %q after Block, want nothing more than %q", got, gotBefore)
			}

			// A new connection on the blocked link never reaches b.
			var nb net.Conn
			switch mode {
			case Blackhole:
				nb = f.dial(t, "a", "b")
				nb.Write([]byte("blocked"))
				f.waitStat(t, Link{"a", "b"}, "blackholed", func(s LinkStats) int { return s.Blackholed }, 1)
			case Refuse:
				requireRefused(t, f.ip["a"], f.proxy["b"])
				f.waitStat(t, Link{"a", "b"}, "refused", func(s LinkStats) int { return s.Refused }, 1)
			}
			if accepted, _, got := f.echo["b"].snapshot(); accepted != acceptedBefore || !bytes.Equal(got, gotBefore) {
				t.Fatalf("b accepted %d connections (want %d) and received %q (want %q) over a blocked link",
					accepted, acceptedBefore, got, gotBefore)
			}
			// Other links, the reverse one included, still work.
			roundTrip(t, cb, "still")
			roundTrip(t, ba, "still")

			if err := f.net.Unblock("a", "b"); err != nil {
				t.Fatal(err)
			}
			if mode == Blackhole {
				requireCut(t, nb) // the held connection is reset, not forwarded
			}
			roundTrip(t, f.dial(t, "a", "b"), "healed")
			s := f.net.Stats()[Link{"a", "b"}]
			if s.Killed != 1 || s.Forwarded != 2 {
				t.Fatalf("a->b stats %s, want 1 killed, 2 forwarded", statsString(s))
			}
		})
	}
}

func TestIsolateAndHeal(t *testing.T) {
	f := newFixture(t, Blackhole)
	conns := map[Link]net.Conn{}
	for _, from := range []string{"a", "b", "c"} {
		for _, to := range []string{"a", "b", "c"} {
			if from != to {
				l := Link{from, to}
				conns[l] = f.dial(t, from, to)
				roundTrip(t, conns[l], l.String())
			}
		}
	}
	if err := f.net.Isolate("b"); err != nil {
		t.Fatal(err)
	}
	for l, c := range conns {
		if l.From == "b" || l.To == "b" {
			requireCut(t, c)
			if !f.net.Blocked(l.From, l.To) {
				t.Errorf("%s not blocked by Isolate(b)", l)
			}
		} else {
			roundTrip(t, c, "unaffected")
		}
	}
	f.net.Heal()
	for l := range conns {
		if f.net.Blocked(l.From, l.To) {
			t.Errorf("%s still blocked after Heal", l)
		}
		roundTrip(t, f.dial(t, l.From, l.To), "healed "+l.String())
	}
}

func TestUnknownSourceRefused(t *testing.T) {
	f := newFixture(t, Blackhole)
	requireRefused(t, "127.0.0.1", f.proxy["a"])
	f.waitStat(t, Link{Unknown, "a"}, "refused", func(s LinkStats) int { return s.Refused }, 1)
	if accepted, _, _ := f.echo["a"].snapshot(); accepted != 0 {
		t.Fatalf("a accepted %d connections from an unknown source", accepted)
	}
}

func TestNodeDownRefused(t *testing.T) {
	f := newFixture(t, Blackhole)
	// A proxy in front of a port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.52:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()
	addr, err := f.net.Listen("b", "127.0.0.52:0", dead)
	if err != nil {
		t.Fatal(err)
	}
	requireRefused(t, f.ip["a"], addr)
	f.waitStat(t, Link{"a", "b"}, "refused", func(s LinkStats) int { return s.Refused }, 1)
}

// TestCloseStopsEverything closes a Net holding forwarded and blackholed
// connections; Close returns only when every goroutine has, and the
// connections are reset.
func TestCloseStopsEverything(t *testing.T) {
	f := newFixture(t, Blackhole)
	fwd := f.dial(t, "a", "b")
	roundTrip(t, fwd, "x")
	if err := f.net.Block("c", "b"); err != nil {
		t.Fatal(err)
	}
	held := f.dial(t, "c", "b")
	f.waitStat(t, Link{"c", "b"}, "blackholed", func(s LinkStats) int { return s.Blackholed }, 1)
	closed := make(chan error, 1)
	go func() { closed <- f.net.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatalf("Close still waiting after %v", waitTimeout)
	}
	requireCut(t, fwd)
	requireCut(t, held)
	if _, err := f.net.Listen("a", "127.0.0.51:0", f.echo["a"].addr()); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Listen after Close: %v, want net.ErrClosed", err)
	}
}

func TestBadArguments(t *testing.T) {
	ip := netip.MustParseAddr
	for _, tc := range []struct {
		name  string
		nodes map[string]netip.Addr
	}{
		{"not loopback", map[string]netip.Addr{"a": ip("10.0.0.1")}},
		{"shared ip", map[string]netip.Addr{"a": ip("127.0.0.41"), "b": ip("127.0.0.41")}},
		{"empty name", map[string]netip.Addr{"": ip("127.0.0.41")}},
		{"reserved name", map[string]netip.Addr{Unknown: ip("127.0.0.41")}},
	} {
		if _, err := New(Config{Nodes: tc.nodes}); err == nil {
			t.Errorf("%s: New succeeded", tc.name)
		}
	}
	f := newFixture(t, Blackhole)
	if err := f.net.Block("a", "z"); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("Block(a, z): %v, want ErrUnknownNode", err)
	}
	if err := f.net.Isolate("z"); !errors.Is(err, ErrUnknownNode) {
		t.Errorf("Isolate(z): %v, want ErrUnknownNode", err)
	}
	if err := f.net.Block("a", "a"); err == nil {
		t.Error("Block(a, a) succeeded")
	}
	if _, err := f.net.Listen("a", "192.0.2.1:0", f.echo["a"].addr()); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("Listen on a non-loopback address: %v, want ErrNotLoopback", err)
	}
}
