package raftfsm

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/volume"
)

// TestInitLayoutMismatchStops: a group whose volumes agree with this node
// on page sizes and volume size but not on the rest of the layout (format
// version, journal size, so the heap starts elsewhere) puts every extent
// at other device offsets. Applying its Init stops this node, with an
// error that shows both layouts.
func TestInitLayoutMismatchStops(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(p *volume.Placement)
	}{
		{"format version", func(p *volume.Placement) { p.Version--; p.HeapOffset -= 4096 }},
		{"journal size", func(p *volume.Placement) { p.JournalSize += 1 << 20; p.HeapOffset += 1 << 20 }},
		{"heap size", func(p *volume.Placement) { p.HeapSize -= 1 << 18 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStack(t, memDev, 1)
			own := s.vol.Superblock().Placement()
			other := own
			tc.edit(&other)
			if other.Geometry != own.Geometry {
				t.Fatal("the geometry changed: not the case under test")
			}
			res := applyCmds(t, s.fsm, Command{Kind: KindInit, Geometry: other.String()})
			err := s.fsm.Err()
			if !errors.Is(res[0].Err, ErrStopped) || !errors.Is(err, ErrGeometryMismatch) {
				t.Fatalf("Init of a group with %s on a node with %s: %s, Err() = %v; want a stop with ErrGeometryMismatch", other, own, fmtResult(res[0]), err)
			}
			if !strings.Contains(err.Error(), other.String()) || !strings.Contains(err.Error(), own.String()) {
				t.Fatalf("the error does not show both layouts: %v", err)
			}
			if got := catalogApplied(t, s.cat); got != 0 {
				t.Fatalf("catalog applied %d after the refused Init; want 0", got)
			}
		})
	}
}

// TestInitLegacyGeometry: a group recorded by a release before format 3
// holds only the geometry text. It still accepts this node, and the first
// Init with a whole layout completes the record, after which a proposer
// with another layout is refused (deterministically, without a stop).
func TestInitLegacyGeometry(t *testing.T) {
	s := newStack(t, memDev, 1)
	own := s.vol.Superblock().Placement()
	if res := applyCmds(t, s.fsm, Command{Kind: KindInit, Geometry: testGeometry.String()}); res[0].Err != nil {
		t.Fatalf("legacy Init: %v", res[0].Err)
	}
	if got := groupLayout(t, s.cat); got != testGeometry.String() {
		t.Fatalf("recorded %q", got)
	}
	if res := applyCmds(t, s.fsm, Command{Kind: KindInit, Geometry: own.String()}); res[0].Err != nil {
		t.Fatalf("Init with the whole layout: %v", res[0].Err)
	}
	if got := groupLayout(t, s.cat); got != own.String() {
		t.Fatalf("recorded %q after a whole-layout Init; want %q", got, own)
	}
	other := own
	other.JournalSize += 1 << 20
	other.HeapOffset += 1 << 20
	res := applyCmds(t, s.fsm, Command{Kind: KindInit, Geometry: other.String()}, Command{Kind: KindInit, Geometry: "nonsense"})
	if !errors.Is(res[0].Err, ErrGeometryMismatch) || !errors.Is(res[1].Err, ErrInvalid) || s.fsm.Err() != nil {
		t.Fatalf("Init with another layout: %s, garbage: %s, Err() = %v; want refusals", fmtResult(res[0]), fmtResult(res[1]), s.fsm.Err())
	}
	if got := groupLayout(t, s.cat); got != own.String() {
		t.Fatalf("a refused Init changed the record to %q", got)
	}
}

// TestRestoreRefusesOtherLayout: a snapshot of a group whose volumes have
// another layout is refused before it replaces the catalog.
func TestRestoreRefusesOtherLayout(t *testing.T) {
	a := newStack(t, memDev, 1)
	own := a.vol.Superblock().Placement()
	r := rand.New(rand.NewPCG(1, 2))
	applyLogs(t, a.fsm, newWorkload(1).logs(50), r, 8)
	applyCmds(t, a.fsm, Command{Kind: KindInit, Geometry: own.String()}) // the whole layout, not the workload's legacy geometry
	snap, err := a.fsm.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}

	b := newStack(t, fileDev, 2)
	applyLogs(t, b.fsm, newWorkload(2).logs(30), r, 8)
	before := b.state()
	other := b.vol.Superblock().Placement()
	other.JournalSize += 1 << 20
	other.HeapOffset += 1 << 20
	f, err := Open(context.Background(), b.cat, b.alloc, other, discardLogger(), false)
	if err != nil {
		t.Fatal(err)
	}
	err = f.Restore(io.NopCloser(&sink.Buffer))
	if !errors.Is(err, ErrGeometryMismatch) || !strings.Contains(err.Error(), own.String()) || !strings.Contains(err.Error(), other.String()) {
		t.Fatalf("Restore of a %s snapshot on a %s node: %v; want ErrGeometryMismatch showing both", own, other, err)
	}
	sameState(t, "after the refused restore", b.state(), before)
}

func groupLayout(t testing.TB, cat *catalog.DB) string {
	t.Helper()
	var v []byte
	if err := cat.View(func(tx *catalog.Tx) error {
		var err error
		v, err = tx.GetMeta(geometryMeta)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return string(v)
}
