package store

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/internal/solevoter"
	"github.com/blobnode/blobnode/raftfsm"
	"github.com/blobnode/blobnode/space"
	"github.com/blobnode/blobnode/volume"
)

// reviewStack is a single-node store over real parts: a MemDevice volume,
// the space allocator, a bbolt catalog, the FSM and real Raft over TCP.
type reviewStack struct {
	vol   *volume.Volume
	alloc *space.Allocator
	cat   *catalog.DB
	fsm   *raftfsm.FSM
	node  *raftfsm.Node
	st    *Store
}

func newReviewStack(t testing.TB, g volume.Geometry, cfg Config) *reviewStack {
	t.Helper()
	return newReviewStackOn(t, g, cfg, volume.NewMemDevice(g.VolumeSize, 1))
}

// newReviewStackOn is newReviewStack over dev, e.g. a MemDevice wrapped to
// fail on command.
func newReviewStackOn(t testing.TB, g volume.Geometry, cfg Config, dev volume.Device) *reviewStack {
	t.Helper()
	one := solevoter.Start(t, g, dev)
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &reviewStack{vol: one.Vol, alloc: one.Alloc, cat: one.Cat, fsm: one.FSM, node: one.Node}
	s.st = New(one.Node, one.FSM, one.Vol, cfg)
	t.Cleanup(func() { s.st.Close() })
	return s
}

func reviewBody(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e37))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func (s *reviewStack) get(t testing.TB, key string) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	o, err := s.st.Get(ctx, key, ReadOptions{})
	if err != nil {
		return nil, err
	}
	defer o.Close()
	var buf bytes.Buffer
	err = o.WriteRange(ctx, &buf, 0, o.Info().Size)
	return buf.Bytes(), err
}

// put stores body under key, its size known.
func (s *reviewStack) put(ctx context.Context, key string, body []byte) error {
	_, err := s.st.Put(ctx, PutRequest{Key: key, Size: int64(len(body)), Body: bytes.NewReader(body)})
	return err
}

// requireBlobs fails the test unless every key reads back its bytes.
func (s *reviewStack) requireBlobs(t testing.TB, want map[string][]byte) {
	t.Helper()
	for key, body := range want {
		if got, err := s.get(t, key); err != nil || !bytes.Equal(got, body) {
			t.Fatalf("GET %s: %d bytes, %v; want %d bytes", key, len(got), err, len(body))
		}
	}
}

// waitWritable waits, on the state machine's read-only changes, until the
// node takes writes again.
func (s *reviewStack) waitWritable(t testing.TB, ctx context.Context) {
	t.Helper()
	for {
		changed := s.fsm.ReadOnlyChanged() // before the check: no change is missed
		if s.node.ReadOnly() == nil {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			t.Fatal("still read-only after the disk recovered")
		}
	}
}

// reservations counts open reservations in the catalog.
func (s *reviewStack) reservations(t testing.TB) int {
	t.Helper()
	var n int
	if err := s.fsm.View(func(tx *catalog.Tx) error {
		rs, err := tx.ExpiredReservations(1<<62, 1<<20)
		n = len(rs)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return n
}

// blob returns key's current catalog record.
func (s *reviewStack) blob(t testing.TB, key string) catalog.Blob {
	t.Helper()
	var b catalog.Blob
	var ok bool
	if err := s.fsm.View(func(tx *catalog.Tx) error {
		var err error
		b, ok, err = tx.GetBlob(key)
		return err
	}); err != nil || !ok {
		t.Fatalf("catalog record of %q: found %v, %v", key, ok, err)
	}
	return b
}

// deviceOffset returns the device offset of byte off of key's current
// version.
func (s *reviewStack) deviceOffset(t testing.TB, key string, off int64) int64 {
	t.Helper()
	var ext extents
	ext.add(s.blob(t, key).Extents...)
	dev := int64(-1)
	if err := ext.each(off, 1, func(d int64, _, _ int) error { dev = d; return nil }); err != nil {
		t.Fatal(err)
	}
	return dev
}

// localVersion returns the version of key this node has marked as held
// verified.
func (s *reviewStack) localVersion(t testing.TB, key string) (uint64, bool) {
	t.Helper()
	var v uint64
	var ok bool
	if err := s.fsm.View(func(tx *catalog.Tx) error {
		var err error
		v, ok, err = tx.LocalVersion(key)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return v, ok
}
