// Package netfault cuts the network links between the nodes of a test
// cluster running on one machine.
//
// Each node has its own loopback IP (127.0.0.11, 127.0.0.12, ...) and dials
// its peers from it. For each port of a node that peers reach (Raft, peer
// API), a Net runs a TCP proxy on another loopback address and forwards to
// the node; peers are given the proxies' addresses. The proxy knows each
// connection's source IP, hence which node dialled it, so a test can cut one
// directed link: Block(from, to) cuts the connections that node from opens
// to node to's proxies, whatever direction their bytes flow in.
//
// Blocking a link resets its forwarded connections at once; while it stays
// blocked, a new connection on it is either held open and never forwarded
// (Blackhole, the default: what a partition looks like to the dialler, whose
// requests time out) or reset as soon as it is accepted (Refuse). A blocked
// link carries no byte after Block returns. A connection from an IP that is
// no node's is refused and counted under Link{From: Unknown}: a node that
// does not dial from its own IP cannot be partitioned, and the test should
// see that rather than pass without a partition.
//
// Every address must be loopback: this is a tool for tests on one machine.
// Every goroutine a Net starts is stopped and waited for by Close.
package netfault

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Mode is how a blocked link treats a connection opened while it is blocked.
type Mode int

const (
	// Blackhole accepts the connection and never forwards a byte of it;
	// it is held (its bytes read and dropped) until the link is unblocked,
	// then reset.
	Blackhole Mode = iota
	// Refuse resets the connection as soon as it is accepted.
	Refuse
)

func (m Mode) String() string {
	switch m {
	case Blackhole:
		return "blackhole"
	case Refuse:
		return "refuse"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Unknown is the From of a connection whose source IP is no node's.
const Unknown = "?"

// ErrUnknownNode is returned for a node name the Net was not configured with.
var ErrUnknownNode = errors.New("netfault: unknown node")

// ErrNotLoopback is returned for an address outside 127.0.0.0/8 and ::1.
var ErrNotLoopback = errors.New("netfault: not a loopback address")

// Link is one direction of the network between two nodes: the connections
// From opens to To.
type Link struct{ From, To string }

func (l Link) String() string { return l.From + "->" + l.To }

// LinkStats counts what a link's proxies did.
type LinkStats struct {
	Forwarded  int   // connections forwarded to the node
	Blackholed int   // connections held, never forwarded
	Refused    int   // connections reset at accept: Refuse mode, unknown source, or the node not listening
	Killed     int   // forwarded connections reset by Block, Isolate or Close
	Bytes      int64 // bytes forwarded, both directions
}

// Config describes the nodes of a Net.
type Config struct {
	// Nodes maps each node's name to the IP it dials from. Names are
	// non-empty and not Unknown; IPs are loopback and distinct.
	Nodes map[string]netip.Addr
	// Mode is how links blocked from now on treat new connections
	// (SetMode changes it).
	Mode Mode
	// DialTimeout bounds the proxy's dial of a node (default 5s).
	DialTimeout time.Duration
	// Logf, if set, is told of each connection refused for coming from
	// an unknown source (a failed dial of a node that is down is only
	// counted: it is routine in a test that kills nodes). It may be called
	// from any goroutine until Close returns.
	Logf func(format string, args ...any)
}

// Net is a set of link-cutting proxies between the nodes of one cluster.
// Its methods are safe for concurrent use.
type Net struct {
	byIP        map[netip.Addr]string
	names       []string // sorted
	dialTimeout time.Duration
	logf        func(format string, args ...any)

	ctx    context.Context // cancelled by Close: stops dials
	cancel context.CancelFunc
	wg     sync.WaitGroup // every goroutine of the Net

	mu        sync.Mutex // guards the fields below
	closed    bool
	mode      Mode
	blocked   map[Link]Mode
	listeners []net.Listener
	conns     map[*pipe]struct{} // forwarded and blackholed connections
	stats     map[Link]*LinkStats
}

// pipe is one accepted connection: forwarded (upstream set) or blackholed.
type pipe struct {
	link     Link
	client   net.Conn
	upstream net.Conn // nil: blackholed
}

// New returns a Net for cfg's nodes, with no proxy yet and every link open.
func New(cfg Config) (*Net, error) {
	n := &Net{
		byIP:        make(map[netip.Addr]string, len(cfg.Nodes)),
		dialTimeout: cfg.DialTimeout,
		logf:        cfg.Logf,
		mode:        cfg.Mode,
		blocked:     make(map[Link]Mode),
		conns:       make(map[*pipe]struct{}),
		stats:       make(map[Link]*LinkStats),
	}
	if n.dialTimeout <= 0 {
		n.dialTimeout = 5 * time.Second
	}
	if n.logf == nil {
		n.logf = func(string, ...any) {}
	}
	if cfg.Mode != Blackhole && cfg.Mode != Refuse {
		return nil, fmt.Errorf("netfault: bad mode %v", cfg.Mode)
	}
	for name, ip := range cfg.Nodes {
		ip = ip.Unmap()
		switch {
		case name == "" || name == Unknown:
			return nil, fmt.Errorf("netfault: bad node name %q", name)
		case !ip.IsLoopback():
			return nil, fmt.Errorf("node %s ip %v: %w", name, ip, ErrNotLoopback)
		}
		if other, dup := n.byIP[ip]; dup {
			return nil, fmt.Errorf("netfault: nodes %s and %s share ip %v", other, name, ip)
		}
		n.byIP[ip] = name
		n.names = append(n.names, name)
	}
	slices.Sort(n.names)
	n.ctx, n.cancel = context.WithCancel(context.Background())
	return n, nil
}

// Listen starts a proxy on listenAddr (a loopback host, port 0 for any)
// that forwards connections to target, node to's listener, and returns the
// address it listens on.
func (n *Net) Listen(to, listenAddr, target string) (string, error) {
	if !n.known(to) {
		return "", fmt.Errorf("listen for %q: %w", to, ErrUnknownNode)
	}
	for _, a := range []string{listenAddr, target} {
		if err := checkLoopback(a); err != nil {
			return "", err
		}
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return "", net.ErrClosed
	}
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return "", fmt.Errorf("netfault: proxy for %s: %w", to, err)
	}
	n.listeners = append(n.listeners, ln)
	n.wg.Add(1)
	go n.accept(ln, to, target)
	return ln.Addr().String(), nil
}

func checkLoopback(hostport string) error {
	ap, err := netip.ParseAddrPort(hostport)
	if err != nil {
		return fmt.Errorf("netfault: address %q: %w", hostport, err)
	}
	if !ap.Addr().Unmap().IsLoopback() {
		return fmt.Errorf("address %s: %w", hostport, ErrNotLoopback)
	}
	return nil
}

func (n *Net) known(name string) bool {
	_, ok := slices.BinarySearch(n.names, name)
	return ok
}

// Block cuts the link from -> to: its forwarded connections are reset now,
// and new ones are treated by the current Mode until Unblock or Heal. A
// link already blocked keeps its connections and takes the current Mode.
func (n *Net) Block(from, to string) error {
	if err := n.check(from, to); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.blockLocked(Link{from, to})
	return nil
}

// Unblock restores the link from -> to; the connections it holds
// blackholed are reset (their bytes are gone; the dialler reconnects).
func (n *Net) Unblock(from, to string) error {
	if err := n.check(from, to); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.unblockLocked(Link{from, to})
	return nil
}

// Isolate blocks every link from and to node.
func (n *Net) Isolate(node string) error {
	if !n.known(node) {
		return fmt.Errorf("isolate %q: %w", node, ErrUnknownNode)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, other := range n.names {
		if other != node {
			n.blockLocked(Link{node, other})
			n.blockLocked(Link{other, node})
		}
	}
	return nil
}

// Heal unblocks every link.
func (n *Net) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for l := range n.blocked {
		n.unblockLocked(l)
	}
}

// SetMode sets how links blocked from now on treat new connections.
func (n *Net) SetMode(m Mode) {
	n.mu.Lock()
	n.mode = m
	n.mu.Unlock()
}

// Blocked reports whether the link from -> to is blocked.
func (n *Net) Blocked(from, to string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	_, ok := n.blocked[Link{from, to}]
	return ok
}

// Stats returns a copy of every link's counters (links that saw no
// connection are absent).
func (n *Net) Stats() map[Link]LinkStats {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[Link]LinkStats, len(n.stats))
	for l, s := range n.stats {
		out[l] = *s
	}
	return out
}

// Close stops every proxy, resets every connection and waits until every
// goroutine of the Net has returned. Close is idempotent.
func (n *Net) Close() error {
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		n.wg.Wait()
		return nil
	}
	n.closed = true
	n.cancel()
	var errs []error
	for _, ln := range n.listeners {
		if err := ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	for p := range n.conns {
		if p.upstream != nil {
			n.statsLocked(p.link).Killed++
		}
		p.reset()
	}
	n.mu.Unlock()
	n.wg.Wait()
	return errors.Join(errs...)
}

func (n *Net) check(from, to string) error {
	for _, name := range []string{from, to} {
		if !n.known(name) {
			return fmt.Errorf("link %s->%s: %q: %w", from, to, name, ErrUnknownNode)
		}
	}
	if from == to {
		return fmt.Errorf("netfault: link %s->%s: a node has no link to itself", from, to)
	}
	return nil
}

// REQUIRES: n.mu held.
func (n *Net) blockLocked(l Link) {
	n.blocked[l] = n.mode
	for p := range n.conns {
		if p.link == l && p.upstream != nil {
			p.reset()
			delete(n.conns, p)
			n.statsLocked(l).Killed++
		}
	}
}

// REQUIRES: n.mu held.
func (n *Net) unblockLocked(l Link) {
	delete(n.blocked, l)
	for p := range n.conns {
		if p.link == l && p.upstream == nil {
			p.reset()
			delete(n.conns, p)
		}
	}
}

// REQUIRES: n.mu held.
func (n *Net) statsLocked(l Link) *LinkStats {
	s := n.stats[l]
	if s == nil {
		s = &LinkStats{}
		n.stats[l] = s
	}
	return s
}

func (n *Net) accept(ln net.Listener, to, target string) {
	defer n.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				n.logf("netfault: proxy for %s stops accepting: %v", to, err)
			}
			return
		}
		n.wg.Add(1)
		go n.serve(c, to, target)
	}
}

// source names the node that opened c, or Unknown.
func (n *Net) source(c net.Conn) string {
	ta, ok := c.RemoteAddr().(*net.TCPAddr)
	if !ok {
		return Unknown
	}
	if name, ok := n.byIP[ta.AddrPort().Addr().Unmap()]; ok {
		return name
	}
	return Unknown
}

func (n *Net) serve(c net.Conn, to, target string) {
	defer n.wg.Done()
	l := Link{n.source(c), to}
	n.mu.Lock()
	if n.closed {
		n.mu.Unlock()
		resetConn(c)
		return
	}
	if l.From == Unknown {
		n.statsLocked(l).Refused++
		n.mu.Unlock()
		n.logf("netfault: refused a connection from %v to %s: that IP is no node's (does the node dial from its own address?)", c.RemoteAddr(), to)
		resetConn(c)
		return
	}
	if m, blocked := n.blocked[l]; blocked {
		if m == Refuse {
			n.statsLocked(l).Refused++
			n.mu.Unlock()
			resetConn(c)
			return
		}
		p := &pipe{link: l, client: c}
		n.conns[p] = struct{}{}
		n.statsLocked(l).Blackholed++
		n.mu.Unlock()
		// Read and drop until the dialler gives up or the link heals.
		_, _ = io.Copy(io.Discard, c)
		n.drop(p)
		return
	}
	n.mu.Unlock()

	ctx, cancel := context.WithTimeout(n.ctx, n.dialTimeout)
	up, err := (&net.Dialer{}).DialContext(ctx, "tcp", target)
	cancel()
	if err != nil {
		n.mu.Lock()
		n.statsLocked(l).Refused++
		n.mu.Unlock()
		resetConn(c)
		return
	}
	p := &pipe{link: l, client: c, upstream: up}
	n.mu.Lock()
	if _, blocked := n.blocked[l]; blocked || n.closed {
		// Blocked while dialling: as if it had been forwarded, then cut.
		n.statsLocked(l).Killed++
		n.mu.Unlock()
		p.reset()
		return
	}
	n.conns[p] = struct{}{}
	n.statsLocked(l).Forwarded++
	n.mu.Unlock()

	done := make(chan struct{})
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		defer close(done)
		n.copy(p, up, c)
	}()
	n.copy(p, c, up)
	<-done
	n.drop(p)
}

// copy forwards src to dst until src ends, then half-closes dst; on an
// error it resets the whole pipe, so the other direction ends too.
func (n *Net) copy(p *pipe, dst, src net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		k, rerr := src.Read(buf)
		if k > 0 {
			if _, werr := dst.Write(buf[:k]); werr != nil {
				p.reset()
				return
			}
			n.mu.Lock()
			n.statsLocked(p.link).Bytes += int64(k)
			n.mu.Unlock()
		}
		if errors.Is(rerr, io.EOF) {
			if tc, ok := dst.(*net.TCPConn); ok {
				if tc.CloseWrite() == nil {
					return
				}
			}
			p.reset()
			return
		}
		if rerr != nil {
			p.reset()
			return
		}
	}
}

// drop forgets p and closes it (it may already have been reset).
func (n *Net) drop(p *pipe) {
	n.mu.Lock()
	delete(n.conns, p)
	n.mu.Unlock()
	p.client.Close()
	if p.upstream != nil {
		p.upstream.Close()
	}
}

// reset closes both ends with an RST, so neither side mistakes the cut for
// an orderly close. Safe to call more than once and concurrently.
func (p *pipe) reset() {
	resetConn(p.client)
	if p.upstream != nil {
		resetConn(p.upstream)
	}
}

func resetConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
