package raftfsm

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/internal/testpki"
)

// newTLSLayer starts a stream layer on a free loopback port, closed at
// cleanup.
func newTLSLayer(t *testing.T, p *PeerTLS) *PeerStreamLayer {
	t.Helper()
	s, err := NewPeerStreamLayer("127.0.0.1:0", nil, PeerAuth{TLS: p}, discardLogger())
	if err != nil {
		t.Fatalf("NewPeerStreamLayer: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// acceptOne returns the next accepted connection, failing after a bound.
func acceptOne(t *testing.T, s *PeerStreamLayer) net.Conn {
	t.Helper()
	type res struct {
		c   net.Conn
		err error
	}
	ch := make(chan res, 1)
	go func() { c, err := s.Accept(); ch <- res{c, err} }() // ends at the latest when s is closed in cleanup
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("Accept: %v", r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		return r.c
	case <-time.After(10 * time.Second):
		t.Fatal("Accept returned nothing")
		return nil
	}
}

// exchange sends ping from a to b and pong back, and fails unless both
// arrive intact.
func exchange(t *testing.T, a, b net.Conn) {
	t.Helper()
	for _, c := range []net.Conn{a, b} {
		if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 4)
		if _, err := io.ReadFull(b, buf); err != nil {
			done <- err
			return
		}
		if string(buf) != "ping" {
			done <- fmt.Errorf("server read %q", buf)
			return
		}
		_, err := b.Write([]byte("pong"))
		done <- err
	}()
	if _, err := a.Write([]byte("ping")); err != nil {
		t.Fatalf("client write: %v", err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(a, buf); err != nil || string(buf) != "pong" {
		t.Fatalf("client read %q, %v", buf, err)
	}
	if err := <-done; err != nil {
		t.Fatalf("server side: %v", err)
	}
}

// TestTLSStreamRoundTrip: two layers of one CA talk TLS 1.2+ both ways,
// with and without mutual authentication; the server learns the client's
// certificate only with Mutual. A dialer that does not trust the server's
// CA refuses it.
func TestTLSStreamRoundTrip(t *testing.T) {
	ca := testpki.NewCA(t, "cluster CA")
	for _, mutual := range []bool{false, true} {
		t.Run(fmt.Sprintf("mutual=%v", mutual), func(t *testing.T) {
			srv := newTLSLayer(t, &PeerTLS{Certificate: ca.Issue(t, "n1", testpki.Loopback()), RootCAs: ca.Pool(), Mutual: mutual})
			cli := newTLSLayer(t, &PeerTLS{Certificate: ca.Issue(t, "n2", testpki.Loopback()), RootCAs: ca.Pool(), Mutual: mutual})
			if srv.Addr().String() == "" || srv.Addr().(*net.TCPAddr).Port == 0 {
				t.Fatalf("Addr = %v", srv.Addr())
			}
			c, err := cli.Dial(raft.ServerAddress(srv.Addr().String()), 5*time.Second)
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			s := acceptOne(t, srv)
			exchange(t, c, s)
			st := s.(*tls.Conn).ConnectionState()
			if st.Version < tls.VersionTLS12 {
				t.Errorf("TLS version %x", st.Version)
			}
			if got := len(st.PeerCertificates); (got > 0) != mutual {
				t.Errorf("server saw %d client certificates; mutual=%v", got, mutual)
			}
			if got := c.(*tls.Conn).ConnectionState().PeerCertificates[0].Subject.CommonName; got != "n1" {
				t.Errorf("client saw server %q", got)
			}

			other := testpki.NewCA(t, "another CA")
			stranger := newTLSLayer(t, &PeerTLS{Certificate: other.Issue(t, "x", testpki.Loopback()), RootCAs: other.Pool(), Mutual: mutual})
			var unknownCA x509.UnknownAuthorityError
			if c, err := stranger.Dial(raft.ServerAddress(srv.Addr().String()), 5*time.Second); !errors.As(err, &unknownCA) {
				if c != nil {
					c.Close()
				}
				t.Errorf("dial a server of an untrusted CA: %v; want an unknown-authority error", err)
			}
		})
	}
}

// TestTLSStreamServerName: a server whose certificate does not name the
// dialled address is refused, even if its CA is trusted.
func TestTLSStreamServerName(t *testing.T) {
	ca := testpki.NewCA(t, "cluster CA")
	srv := newTLSLayer(t, &PeerTLS{Certificate: ca.Issue(t, "n1", net.IPv4(10, 9, 8, 7)), RootCAs: ca.Pool()})
	cli := newTLSLayer(t, &PeerTLS{Certificate: ca.Issue(t, "n2", testpki.Loopback()), RootCAs: ca.Pool()})
	c, err := cli.Dial(raft.ServerAddress(srv.Addr().String()), 5*time.Second)
	var hostErr x509.HostnameError
	if !errors.As(err, &hostErr) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("Dial a server whose certificate names 10.9.8.7: %v; want a hostname error", err)
	}
}

// TestTLSStreamMutualRefusesStrangers: with Mutual, a client without a
// certificate, one with a certificate of another CA, and one that does not
// speak TLS are all refused and never reach Accept; the next legitimate
// peer does.
func TestTLSStreamMutualRefusesStrangers(t *testing.T) {
	ca := testpki.NewCA(t, "cluster CA")
	other := testpki.NewCA(t, "another CA")
	srv := newTLSLayer(t, &PeerTLS{Certificate: ca.Issue(t, "n1", testpki.Loopback()), RootCAs: ca.Pool(), Mutual: true})
	addr := srv.Addr().String()

	for _, tc := range []struct {
		name  string
		certs []tls.Certificate
	}{
		{"no certificate", nil},
		{"certificate of another CA", []tls.Certificate{other.Issue(t, "intruder", testpki.Loopback())}},
	} {
		// A bare TLS client that trusts the server, so only the server's
		// verification of the client can fail.
		// GetClientCertificate sends the certificate even though its CA
		// is not among those the server asks for (crypto/tls would
		// otherwise send none), so the server's own check is what refuses.
		cfg := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12,
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				if len(tc.certs) == 0 {
					return &tls.Certificate{}, nil
				}
				return &tc.certs[0], nil
			}}
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
		if err == nil {
			// TLS 1.3: the client finishes first; the server's refusal
			// arrives as an alert on the first read.
			if err = conn.SetDeadline(time.Now().Add(10 * time.Second)); err == nil {
				_, _ = conn.Write([]byte("ping"))
				_, err = conn.Read(make([]byte, 1))
			}
			conn.Close()
		}
		if err == nil {
			t.Errorf("%s: the server accepted the connection", tc.name)
		} else {
			t.Logf("%s: refused: %v", tc.name, err)
		}
	}
	// Not TLS at all: the server hangs up.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := raw.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(raw); err != nil {
		t.Logf("plain TCP client: %v", err)
	}
	raw.Close()

	peer := newTLSLayer(t, &PeerTLS{Certificate: ca.Issue(t, "n2", testpki.Loopback()), RootCAs: ca.Pool(), Mutual: true})
	legitimatePeerGetsThrough(t, peer, srv)
}

// legitimatePeerGetsThrough dials srv from peer and checks that the next
// connection srv accepts is that one (no refused client got through) and
// carries bytes both ways.
func legitimatePeerGetsThrough(t *testing.T, peer, srv *PeerStreamLayer) {
	t.Helper()
	c, err := peer.Dial(raft.ServerAddress(srv.Addr().String()), 5*time.Second)
	if err != nil {
		t.Fatalf("legitimate peer: %v", err)
	}
	defer c.Close()
	s := acceptOne(t, srv)
	if s.RemoteAddr().String() != c.LocalAddr().String() {
		t.Fatalf("Accept returned %v; want the legitimate peer %v (a refused client got through)", s.RemoteAddr(), c.LocalAddr())
	}
	exchange(t, c, s)
}

// TestTLSStreamCloseEndsHandshakes: Close ends a handshake in progress
// (a client that connected and stays silent) at once rather than after the
// handshake timeout, Accept then fails with net.ErrClosed, and Dial fails.
func TestTLSStreamCloseEndsHandshakes(t *testing.T) {
	ca := testpki.NewCA(t, "cluster CA")
	srv := newTLSLayer(t, &PeerTLS{Certificate: ca.Issue(t, "n1", testpki.Loopback()), RootCAs: ca.Pool(), Mutual: true})
	silent, err := net.Dial("tcp", srv.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	accepted := make(chan error, 1)
	go func() { _, err := srv.Accept(); accepted <- err }()

	closed := make(chan error, 1)
	go func() { closed <- srv.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(peerHandshakeTimeout / 2):
		t.Fatal("Close waited for a silent client's handshake")
	}
	if err := <-accepted; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v; want net.ErrClosed", err)
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if c, err := srv.Dial(raft.ServerAddress(srv.Addr().String()), time.Second); err == nil {
		c.Close()
		t.Fatal("Dial after Close succeeded")
	}
}

// TestNodeOverMutualTLS: two nodes whose Raft traffic is mutual TLS form a
// group: the second joins, replicates a Reserve decided on the first, and
// holds the same extents.
func TestNodeOverMutualTLS(t *testing.T) {
	ca := testpki.NewCA(t, "cluster CA")
	peerTLS := func(name string) *PeerTLS {
		return &PeerTLS{Certificate: ca.Issue(t, name, testpki.Loopback()), RootCAs: ca.Pool(), Mutual: true}
	}
	s1, s2 := newStack(t, fileDev, 1), newStack(t, fileDev, 2)
	n1 := startNode(t, NodeConfig{ID: "n1", Dir: t.TempDir(), BindAddr: freeAddr(t), PeerAuth: PeerAuth{TLS: peerTLS("n1")}}, s1.fsm)
	addr2 := freeAddr(t)
	n2, err := StartNode(context.Background(), NodeConfig{ID: "n2", Dir: t.TempDir(), BindAddr: addr2, Logger: discardLogger(), PeerAuth: PeerAuth{TLS: peerTLS("n2")}}, s2.fsm)
	if err != nil {
		t.Fatalf("StartNode n2: %v", err)
	}
	t.Cleanup(func() { _ = n2.Close() })

	if err := n1.Raft().AddVoter("n2", raft.ServerAddress(addr2), 0, 10*time.Second).Error(); err != nil {
		t.Fatalf("AddVoter over TLS: %v", err)
	}
	if res := propose(t, n1, Command{Kind: KindInit, Geometry: testGeometry.String()}); res.Err != nil {
		t.Fatalf("Init: %v", res.Err)
	}
	res := propose(t, n1, Command{Kind: KindReserve, ReservationID: 7, Size: 100 << 10, Deadline: 1})
	if res.Err != nil {
		t.Fatalf("Reserve: %s", fmtResult(res))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s2.fsm.WaitApplied(ctx, n1.Raft().LastIndex()); err != nil {
		t.Fatalf("n2 did not apply the Reserve: %v", err)
	}
	if err := s2.fsm.View(func(tx *catalog.Tx) error {
		r, ok, err := tx.GetReservation(7)
		if err != nil || !ok || fmt.Sprint(r.Extents) != fmt.Sprint(res.Extents) {
			return fmt.Errorf("n2's reservation 7 = %+v, %v, %v; want extents %v", r, ok, err, res.Extents)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if addr, id := n2.Raft().LeaderWithID(); id != "n1" {
		t.Fatalf("n2 sees leader %q at %q; want n1", id, addr)
	}
}
