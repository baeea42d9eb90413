package raftfsm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
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

// Bounds of the TLS stream layer.
const (
	// peerHandshakeTimeout bounds an incoming TLS handshake, so a peer
	// (or a stranger) that connects and stays silent holds no resources.
	peerHandshakeTimeout = 10 * time.Second
	// maxPeerHandshakes bounds the handshakes in progress at once.
	maxPeerHandshakes = 64
)

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

// TLSStreamLayer is a raft.StreamLayer over TLS. Accept returns only
// connections whose handshake completed (for Mutual, with a verified client
// certificate); failed handshakes are logged and dropped without reaching
// Raft. Handshakes run concurrently, each on a goroutine owned by the layer
// and bounded by peerHandshakeTimeout and maxPeerHandshakes; Close stops
// them all and returns once they are gone.
type TLSStreamLayer struct {
	ln     net.Listener
	adv    net.Addr
	server *tls.Config
	client *tls.Config
	log    *slog.Logger

	ready  chan net.Conn // handshaken connections, handed to Accept
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // the accept loop and every handshake
	once   sync.Once
	err    error // of ln.Close, set once by Close
}

// NewTLSStreamLayer listens on bindAddr (TCP) and advertises adv to peers
// (nil: the listener's address).
func NewTLSStreamLayer(bindAddr string, adv net.Addr, p *PeerTLS, log *slog.Logger) (*TLSStreamLayer, error) {
	if p == nil || p.RootCAs == nil || len(p.Certificate.Certificate) == 0 {
		return nil, errors.New("raftfsm: peer TLS needs a certificate, its key and a CA pool")
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
	s := &TLSStreamLayer{
		ln: ln, adv: adv, server: p.serverConfig(), client: p.clientConfig(), log: log,
		ready: make(chan net.Conn), ctx: ctx, cancel: cancel,
	}
	s.wg.Add(1)
	go s.acceptLoop()
	return s, nil
}

// acceptLoop accepts TCP connections and hands each to a handshake
// goroutine, until Close.
func (s *TLSStreamLayer) acceptLoop() {
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
			s.log.Warn("raft TLS accept failed", "err", err, "retry_in", delay)
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

// handshake completes the server side of TLS on conn and hands it to
// Accept, or closes it.
func (s *TLSStreamLayer) handshake(conn net.Conn) {
	tc := tls.Server(conn, s.server)
	ctx, cancel := context.WithTimeout(s.ctx, peerHandshakeTimeout)
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		if s.ctx.Err() == nil {
			s.log.Warn("raft TLS handshake refused", "remote", conn.RemoteAddr().String(), "err", err)
		}
		tc.Close()
		return
	}
	select {
	case s.ready <- tc:
	case <-s.ctx.Done():
		tc.Close()
	}
}

// Accept implements net.Listener: the next connection whose TLS handshake
// succeeded. After Close it returns net.ErrClosed.
func (s *TLSStreamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.ready:
		return c, nil
	case <-s.ctx.Done():
		return nil, fmt.Errorf("raftfsm: TLS stream layer: %w", net.ErrClosed)
	}
}

// Close implements net.Listener: it stops accepting, ends the handshakes in
// progress and waits for the layer's goroutines. Connections already
// returned by Accept or Dial are their owners' to close. Idempotent.
func (s *TLSStreamLayer) Close() error {
	s.once.Do(func() {
		s.cancel()
		s.err = s.ln.Close()
		s.wg.Wait()
	})
	return s.err
}

// Addr implements net.Listener: the advertised address.
func (s *TLSStreamLayer) Addr() net.Addr { return s.adv }

// Dial implements raft.StreamLayer: a TLS connection to address whose
// handshake, including verification of the server's certificate against
// the CA pool and address, completed within timeout.
func (s *TLSStreamLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	host, _, err := net.SplitHostPort(string(address))
	if err != nil {
		return nil, fmt.Errorf("raftfsm: dial %s: %w", address, err)
	}
	cfg := s.client.Clone()
	cfg.ServerName = host
	d := &tls.Dialer{NetDialer: &net.Dialer{}, Config: cfg}
	ctx, cancel := context.WithTimeout(s.ctx, timeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "tcp", string(address))
	if err != nil {
		return nil, fmt.Errorf("raftfsm: dial %s: %w", address, err)
	}
	return conn, nil
}

var _ raft.StreamLayer = (*TLSStreamLayer)(nil)
