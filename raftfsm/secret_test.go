package raftfsm

import (
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func newSecretLayer(t *testing.T, secret string) *PeerStreamLayer {
	t.Helper()
	s, err := NewPeerStreamLayer("127.0.0.1:0", nil, PeerAuth{Secret: []byte(secret)}, discardLogger())
	if err != nil {
		t.Fatalf("NewPeerStreamLayer: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

const (
	testSecret  = "correct horse battery staple"
	otherSecret = "incorrect mule battery staple"
)

// TestSecretStream: peers that share the secret connect and exchange
// bytes; a dialer with another secret is refused by the listener (and
// itself refuses the listener's proof), a stranger that does not speak
// the handshake and one that stays silent never reach Accept, and the
// next legitimate peer does.
func TestSecretStream(t *testing.T) {
	srv := newSecretLayer(t, testSecret)
	addr := raft.ServerAddress(srv.Addr().String())

	wrong := newSecretLayer(t, otherSecret)
	if c, err := wrong.Dial(addr, 5*time.Second); !errors.Is(err, ErrPeerAuth) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial with another secret: %v; want ErrPeerAuth", err)
	}

	// A dialer that knows the magic but not the secret: it gets the
	// listener's proof, sends garbage as its own and is hung up on.
	raw, err := net.Dial("tcp", string(addr))
	if err != nil {
		t.Fatal(err)
	}
	raw.SetDeadline(time.Now().Add(10 * time.Second))
	raw.Write([]byte(secretMagic + strings.Repeat("n", nonceLen)))
	if _, err := io.ReadFull(raw, make([]byte, nonceLen+32)); err != nil {
		t.Fatalf("read the listener's challenge: %v", err)
	}
	raw.Write(make([]byte, 33))
	if n, err := raw.Read(make([]byte, 1)); err == nil {
		t.Fatalf("the listener kept a dialer with a wrong proof (read %d bytes)", n)
	}
	raw.Close()

	// Raft bytes straight away, no handshake.
	plain, err := net.Dial("tcp", string(addr))
	if err != nil {
		t.Fatal(err)
	}
	plain.SetDeadline(time.Now().Add(10 * time.Second))
	plain.Write([]byte{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39})
	if _, err := io.ReadAll(plain); err != nil {
		t.Logf("plain client: %v", err)
	}
	plain.Close()

	legitimatePeerGetsThrough(t, newSecretLayer(t, testSecret), srv)
}

// TestSecretStreamListenerImpostor: a listener without the secret cannot
// make a legitimate dialer believe it is a peer.
func TestSecretStreamListenerImpostor(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.ReadFull(c, make([]byte, len(secretMagic)+nonceLen))
		c.Write(make([]byte, nonceLen+32)) // a proof it cannot compute
		io.ReadAll(c)
	}()
	peer := newSecretLayer(t, testSecret)
	if c, err := peer.Dial(raft.ServerAddress(ln.Addr().String()), 5*time.Second); !errors.Is(err, ErrPeerAuth) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial to an impostor: %v; want ErrPeerAuth", err)
	}
}

// TestSecretHandshakeBounded: a dialer that connects and says nothing is
// cut off when the handshake's context ends.
func TestSecretHandshakeBounded(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := secretHandshake(ctx, b, []byte(testSecret), purposeNone); err == nil {
		t.Fatal("a silent dialer completed the handshake")
	}
}

// TestNodesWithSecret: two nodes that share the cluster secret form a
// group; a node with another secret cannot join it.
func TestNodesWithSecret(t *testing.T) {
	s1, s2, s3 := newStack(t, fileDev, 1), newStack(t, fileDev, 2), newStack(t, fileDev, 3)
	n1 := startNode(t, NodeConfig{ID: "n1", Dir: t.TempDir(), BindAddr: freeAddr(t), PeerAuth: PeerAuth{Secret: []byte(testSecret)}}, s1.fsm)
	addr2, addr3 := freeAddr(t), freeAddr(t)
	n2, err := StartNode(context.Background(), NodeConfig{ID: "n2", Dir: t.TempDir(), BindAddr: addr2, Logger: discardLogger(), PeerAuth: PeerAuth{Secret: []byte(testSecret)}}, s2.fsm)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n2.Close() })
	n3, err := StartNode(context.Background(), NodeConfig{ID: "n3", Dir: t.TempDir(), BindAddr: addr3, Logger: discardLogger(), PeerAuth: PeerAuth{Secret: []byte(otherSecret)}}, s3.fsm)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = n3.Close() })

	if err := n1.Raft().AddVoter("n2", raft.ServerAddress(addr2), 0, 10*time.Second).Error(); err != nil {
		t.Fatalf("AddVoter with the secret: %v", err)
	}
	// n3 cannot be reached: adding it as a nonvoter commits the change,
	// but it never receives an entry.
	if err := n1.Raft().AddNonvoter("n3", raft.ServerAddress(addr3), 0, 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}
	res := propose(t, n1, Command{Kind: KindInit, Geometry: testGeometry.String()})
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := s2.fsm.WaitApplied(ctx, n1.Raft().LastIndex()); err != nil {
		t.Fatalf("n2 did not apply: %v", err)
	}
	if got := s3.fsm.Applied(); got != 0 {
		t.Fatalf("n3, with another secret, applied up to %d", got)
	}
	if l := n3.Raft().LastIndex(); l != 0 {
		t.Fatalf("n3, with another secret, has log entries up to %d", l)
	}
}
