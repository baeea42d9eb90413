package raftfsm

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// PeerTLS secures Raft traffic between nodes.
//
// Every node serves Certificate and verifies the certificate of each peer it
// dials against RootCAs, including that it names the address dialled (an
// IP SAN for an IP address, a DNS SAN for a host name): each node's
// certificate must therefore name the Raft address it advertises. With
// Mutual, a node also refuses any incoming connection whose client does
// not present a certificate signed by RootCAs, and presents its own
// Certificate when dialling; without it the transport is encrypted and the
// server authenticated, but anyone who can reach the port may speak Raft.
type PeerTLS struct {
	Certificate tls.Certificate
	RootCAs     *x509.CertPool
	Mutual      bool
}

// PeerAuth says how Raft connections between nodes are secured: TLS, a
// cluster secret, both, or (zero value) neither.
type PeerAuth struct {
	TLS *PeerTLS
	// Secret, when set, authenticates both ends of every connection with a
	// challenge-response handshake before any Raft byte (see
	// secretHandshake): a peer that does not hold it is refused, on a
	// private network without TLS too.
	Secret []byte
}

// Bounds of the peer stream layer.
const (
	// peerHandshakeTimeout bounds an incoming handshake (TLS, secret), so
	// a peer (or a stranger) that connects and stays silent holds no
	// resources.
	peerHandshakeTimeout = 10 * time.Second
	// maxPeerHandshakes bounds the handshakes in progress at once.
	maxPeerHandshakes = 64
)

// ErrPeerAuth is the handshake's refusal of a peer that does not prove it
// holds the cluster secret.
var ErrPeerAuth = errors.New("raftfsm: peer does not hold the cluster secret")

func (p *PeerTLS) serverConfig() *tls.Config {
	c := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{p.Certificate},
	}
	if p.Mutual {
		c.ClientAuth = tls.RequireAndVerifyClientCert
		c.ClientCAs = p.RootCAs
	}
	return c
}

func (p *PeerTLS) clientConfig() *tls.Config {
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		RootCAs:    p.RootCAs,
	}
	if p.Mutual {
		c.Certificates = []tls.Certificate{p.Certificate}
	}
	return c
}

// PeerStreamLayer is a raft.StreamLayer over TCP, with TLS and a cluster
// secret handshake as PeerAuth says. Accept returns only connections whose
// handshakes completed (for mutual TLS, with a verified client
// certificate; with a secret, a peer that proved it holds it); failed
// handshakes are logged and dropped without reaching Raft. Handshakes run
// concurrently, each on a goroutine owned by the layer and bounded by
// peerHandshakeTimeout and maxPeerHandshakes; Close stops them all and
// returns once they are gone.
type PeerStreamLayer struct {
	ln     net.Listener
	adv    net.Addr
	server *tls.Config // nil: no TLS
	client *tls.Config
	secret []byte // nil: no secret handshake
	// local is the address connections are dialled from: the listener's
	// IP when it is a specific one, so that a peer (or a test's link
	// cutter) sees this node's address as the source; nil lets the
	// kernel choose.
	local *net.TCPAddr
	log   *slog.Logger

	statusMu sync.Mutex
	status   func() PeerStatus // answers probes; nil: no state yet

	ready  chan net.Conn // handshaken connections, handed to Accept
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and every handshake
	once   sync.Once
	err    error // of ln.Close, set once by Close
}

// NewPeerStreamLayer listens on bindAddr (TCP) and advertises adv to peers
// (nil: the listener's address).
func NewPeerStreamLayer(bindAddr string, adv net.Addr, auth PeerAuth, log *slog.Logger) (*PeerStreamLayer, error) {
	if p := auth.TLS; p != nil && (p.RootCAs == nil || len(p.Certificate.Certificate) == 0) {
		return nil, errors.New("raftfsm: peer TLS needs a certificate, its key and a CA pool")
	}
	if auth.Secret != nil && len(auth.Secret) < MinSecretLen {
		return nil, fmt.Errorf("raftfsm: a cluster secret of %d bytes; at least %d", len(auth.Secret), MinSecretLen)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ln, err := net.Listen("tcp", bindAddr)
	if err != nil {
		return nil, fmt.Errorf("raftfsm: listen %s: %w", bindAddr, err)
	}
	if adv == nil {
		adv = ln.Addr()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &PeerStreamLayer{
		ln: ln, adv: adv, secret: auth.Secret, log: log,
		ready: make(chan net.Conn), ctx: ctx, cancel: cancel,
	}
	if auth.TLS != nil {
		s.server, s.client = auth.TLS.serverConfig(), auth.TLS.clientConfig()
	}
	if a, ok := ln.Addr().(*net.TCPAddr); ok && !a.IP.IsUnspecified() {
		s.local = &net.TCPAddr{IP: a.IP}
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// acceptLoop accepts TCP connections and hands each to a handshake
// goroutine, until Close.
func (s *PeerStreamLayer) acceptLoop() {
	defer s.wg.Done()
	slots := make(chan struct{}, maxPeerHandshakes)
	var delay time.Duration
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient failure (out of descriptors): back off as
			// net/http does rather than spin.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			s.log.Warn("raft accept failed", "err", err, "retry_in", delay)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(delay):
			}
			continue
		}
		delay = 0
		select {
		case slots <- struct{}{}:
		case <-s.ctx.Done():
			conn.Close()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer func() { <-slots }()
			s.handshake(conn)
		}()
	}
}

// handshake completes the server side of TLS and of the secret handshake
// on conn and hands it to Accept, or closes it.
func (s *PeerStreamLayer) handshake(conn net.Conn) {
	ctx, cancel := context.WithTimeout(s.ctx, peerHandshakeTimeout)
	defer cancel()
	remote := conn.RemoteAddr().String()
	if s.server != nil {
		tc := tls.Server(conn, s.server)
		if err := tc.HandshakeContext(ctx); err != nil {
			s.refused(remote, "TLS", err)
			tc.Close()
			return
		}
		conn = tc
	}
	if s.secret != nil {
		purpose, err := secretHandshake(ctx, conn, s.secret, purposeNone)
		if err != nil {
			s.refused(remote, "secret", err)
			conn.Close()
			return
		}
		if purpose == purposeStatus {
			s.answerProbe(ctx, conn)
			return
		}
	}
	select {
	case s.ready <- conn:
	case <-s.ctx.Done():
		conn.Close()
	}
}

func (s *PeerStreamLayer) refused(remote, what string, err error) {
	if s.ctx.Err() == nil {
		s.log.Warn("raft connection refused", "remote", remote, "handshake", what, "err", err)
	}
}

// Accept implements net.Listener: the next connection whose handshakes
// succeeded. After Close it returns net.ErrClosed.
func (s *PeerStreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.ready:
		return c, nil
	case <-s.ctx.Done():
		return nil, fmt.Errorf("raftfsm: peer stream layer: %w", net.ErrClosed)
	}
}

// Close implements net.Listener: it stops accepting, ends the handshakes in
// progress and waits for the layer's goroutines. Connections already
// returned by Accept or Dial are their owners' to close. Idempotent.
func (s *PeerStreamLayer) Close() error {
	s.once.Do(func() {
		s.cancel()
		s.err = s.ln.Close()
		s.wg.Wait()
	})
	return s.err
}

// Addr implements net.Listener: the advertised address.
func (s *PeerStreamLayer) Addr() net.Addr { return s.adv }

// Dial implements raft.StreamLayer: a connection to address whose
// handshakes completed within timeout: TLS, including verification of the
// server's certificate against the CA pool and address, then the secret
// handshake.
func (s *PeerStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	var conn net.Conn
	var err error
	if s.client != nil {
		host, _, herr := net.SplitHostPort(string(address))
		if herr != nil {
			return nil, fmt.Errorf("raftfsm: dial %s: %w", address, herr)
		}
		cfg := s.client.Clone()
		cfg.ServerName = host
		conn, err = (&tls.Dialer{NetDialer: s.dialer(), Config: cfg}).DialContext(ctx, "tcp", string(address))
	} else {
		conn, err = s.dialer().DialContext(ctx, "tcp", string(address))
	}
	if err != nil {
		return nil, fmt.Errorf("raftfsm: dial %s: %w", address, err)
	}
	if s.secret != nil {
		if _, err := secretHandshake(ctx, conn, s.secret, purposeRaft); err != nil {
			conn.Close()
			return nil, fmt.Errorf("raftfsm: dial %s: %w", address, err)
		}
	}
	return conn, nil
}

func (s *PeerStreamLayer) dialer() *net.Dialer {
	d := &net.Dialer{}
	if s.local != nil {
		d.LocalAddr = s.local
	}
	return d
}

// PeerStatus is what a node tells a peer that probes it before the group
// exists: whether it holds Raft state, and how far its log goes.
type PeerStatus struct {
	NodeID    string `json:"node_id"`
	HasState  bool   `json:"has_state"`
	Term      uint64 `json:"term"`
	LastIndex uint64 `json:"last_index"`
	APIAddr   string `json:"api_addr"` // host:port of its HTTP API
	Applied   uint64 `json:"applied"`  // its state machine's applied index
}

// maxStatusLen bounds a probe's answer.
const maxStatusLen = 4096

// SetStatus installs what the layer answers to probes (Probe).
func (s *PeerStreamLayer) SetStatus(fn func() PeerStatus) {
	s.statusMu.Lock()
	defer s.statusMu.Unlock()
	s.status = fn
}

func (s *PeerStreamLayer) answerProbe(ctx context.Context, conn net.Conn) {
	defer conn.Close()
	s.statusMu.Lock()
	fn := s.status
	s.statusMu.Unlock()
	var st PeerStatus
	if fn != nil {
		st = fn()
	}
	b, err := json.Marshal(st)
	if err != nil || len(b) > maxStatusLen {
		return
	}
	if dl, ok := ctx.Deadline(); ok {
		conn.SetDeadline(dl)
	}
	conn.Write(binary.BigEndian.AppendUint16(nil, uint16(len(b))))
	conn.Write(b)
}

// Probe asks the node at address, over its Raft port and authenticated by
// the secret, for its PeerStatus. It needs a secret.
func (s *PeerStreamLayer) Probe(ctx context.Context, address string) (PeerStatus, error) {
	var st PeerStatus
	if s.secret == nil {
		return st, errors.New("raftfsm: probing peers needs a cluster secret")
	}
	conn, err := s.dialer().DialContext(ctx, "tcp", address)
	if err != nil {
		return st, fmt.Errorf("raftfsm: probe %s: %w", address, err)
	}
	defer conn.Close()
	if s.client != nil {
		host, _, _ := net.SplitHostPort(address)
		cfg := s.client.Clone()
		cfg.ServerName = host
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return st, fmt.Errorf("raftfsm: probe %s: %w", address, err)
		}
		conn = tc
	}
	if _, err := secretHandshake(ctx, conn, s.secret, purposeStatus); err != nil {
		return st, fmt.Errorf("raftfsm: probe %s: %w", address, err)
	}
	var n [2]byte
	if _, err := io.ReadFull(conn, n[:]); err != nil {
		return st, fmt.Errorf("raftfsm: probe %s: %w", address, err)
	}
	b := make([]byte, binary.BigEndian.Uint16(n[:]))
	if len(b) > maxStatusLen {
		return st, fmt.Errorf("raftfsm: probe %s: answer of %d bytes", address, len(b))
	}
	if _, err := io.ReadFull(conn, b); err != nil {
		return st, fmt.Errorf("raftfsm: probe %s: %w", address, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("raftfsm: probe %s: %w", address, err)
	}
	return st, nil
}

// MinSecretLen is the shortest cluster secret accepted, in bytes.
const MinSecretLen = 16

// The secret handshake proves to each end that the other holds the
// cluster secret, without sending it, and binds the proof to fresh nonces
// so a recorded handshake cannot be replayed:
//
//	dialer   -> listener: "BNPEER1\n", Nc (32 random bytes)
//	listener -> dialer:   Ns (32 random bytes), HMAC-SHA256(key, "server" Nc Ns)
//	dialer   -> listener: HMAC-SHA256(key, "client" Nc Ns), purpose (1 byte)
//
// The purpose byte says what follows: 'R', Raft traffic; 'S', a probe,
// which the listener answers with its PeerStatus (a big-endian u16
// length, then JSON) and closes.
//
// key is derived from the secret for this use only (PeerKey). Each end
// checks the other's MAC in constant time and closes the connection on a
// mismatch; the labels keep a listener's answer from serving as a
// dialer's proof.
const (
	secretMagic = "BNPEER1\n"
	nonceLen    = 32

	purposeNone   = 0 // the listener's side: it learns the purpose
	purposeRaft   = 'R'
	purposeStatus = 'S'
)

// PeerKey derives the key of one use of the cluster secret (the Raft
// transport, the peer API), so that no two uses share a key.
func PeerKey(secret []byte, use string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("blobnode " + use))
	return m.Sum(nil)
}

func handshakeMAC(key []byte, role string, nc, ns []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(role))
	m.Write(nc)
	m.Write(ns)
	return m.Sum(nil)
}

// secretHandshake runs one end of the handshake on conn within ctx: the
// dialer's, sending purpose, or (purpose == purposeNone) the listener's,
// returning the purpose the dialer sent.
func secretHandshake(ctx context.Context, conn net.Conn, secret []byte, purpose byte) (byte, error) {
	dialer := purpose != purposeNone
	if dl, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(dl); err != nil {
			return 0, err
		}
		defer conn.SetDeadline(time.Time{})
	}
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	key := PeerKey(secret, "raft transport")
	nc, ns := make([]byte, nonceLen), make([]byte, nonceLen)
	mac := make([]byte, sha256.Size, sha256.Size+1)
	if dialer {
		rand.Read(nc)
		if _, err := conn.Write(append([]byte(secretMagic), nc...)); err != nil {
			return 0, fmt.Errorf("secret handshake: %w", err)
		}
		if _, err := io.ReadFull(conn, ns); err != nil {
			return 0, fmt.Errorf("secret handshake: %w", err)
		}
		if _, err := io.ReadFull(conn, mac); err != nil {
			return 0, fmt.Errorf("secret handshake: %w", err)
		}
		if !hmac.Equal(mac, handshakeMAC(key, "server", nc, ns)) {
			return 0, fmt.Errorf("secret handshake: the listener: %w", ErrPeerAuth)
		}
		if _, err := conn.Write(append(handshakeMAC(key, "client", nc, ns), purpose)); err != nil {
			return 0, fmt.Errorf("secret handshake: %w", err)
		}
		return purpose, nil
	}
	hello := make([]byte, len(secretMagic)+nonceLen)
	if _, err := io.ReadFull(conn, hello); err != nil {
		return 0, fmt.Errorf("secret handshake: %w", err)
	}
	if string(hello[:len(secretMagic)]) != secretMagic {
		return 0, fmt.Errorf("secret handshake: not a blobnode peer: %w", ErrPeerAuth)
	}
	copy(nc, hello[len(secretMagic):])
	rand.Read(ns)
	if _, err := conn.Write(append(ns, handshakeMAC(key, "server", nc, ns)...)); err != nil {
		return 0, fmt.Errorf("secret handshake: %w", err)
	}
	proof := mac[:sha256.Size+1]
	if _, err := io.ReadFull(conn, proof); err != nil {
		return 0, fmt.Errorf("secret handshake: %w", err)
	}
	if !hmac.Equal(proof[:sha256.Size], handshakeMAC(key, "client", nc, ns)) {
		return 0, fmt.Errorf("secret handshake: the dialer: %w", ErrPeerAuth)
	}
	switch p := proof[sha256.Size]; p {
	case purposeRaft, purposeStatus:
		return p, nil
	default:
		return 0, fmt.Errorf("secret handshake: unknown purpose %q", p)
	}
}

var _ raft.StreamLayer = (*PeerStreamLayer)(nil)
