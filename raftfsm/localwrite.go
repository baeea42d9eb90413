package raftfsm

import (
	"fmt"
	"sync"

	"github.com/blobnode/blobnode/catalog"
)

// Local writes into reserved pages.
//
// Every write to the heap other than the state machine's own (an
// upload's coordinator, a peer receiving an upload's bytes, repair) goes
// through a LocalWrite. BeginWrite takes it only while the reservations
// are live in this node's applied state, and the state machine, before it
// frees pages (an Abort, an Expire, a refused Commit, a Delete or
// replacement), revokes every LocalWrite on them and waits for a write in
// progress to finish. A late writer therefore fails instead of writing
// over the pages of whatever blob is given them next: the pages belong to
// the log's decisions, never to a node-local list.

// writeGuard is the state machine's registry of local writes, by the
// device offset of each extent they may write.
type writeGuard struct {
	mu      sync.Mutex
	writers map[int64]map[*LocalWrite]struct{}
}

// LocalWrite is a local writer's claim on reserved pages.
type LocalWrite struct {
	f    *FSM
	mu   sync.Mutex // held across each device write, so revoke waits for it
	err  error      // set by revoke: every later write fails with it
	offs []int64
}

// BeginWrite claims the pages of reservations ids for a local writer and
// returns their extents, concatenated in the order of ids. It fails with
// ErrNoReservation if any of them is not live in the applied state (the
// caller first waits until it has applied the entry that reserved them).
// End the claim with End.
func (f *FSM) BeginWrite(ids ...uint64) (*LocalWrite, []catalog.Extent, error) {
	w := &LocalWrite{f: f}
	exts, err := w.Extend(ids...)
	if err != nil {
		return nil, nil, err
	}
	return w, exts, nil
}

// Extend adds reservations ids to the claim, as BeginWrite.
func (w *LocalWrite) Extend(ids ...uint64) ([]catalog.Extent, error) {
	f := w.f
	// No batch applies between the check and the registration.
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	var exts []catalog.Extent
	err := f.cat.View(func(tx *catalog.Tx) error {
		for _, id := range ids {
			r, ok, err := tx.GetReservation(id)
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%w: %d is not live here", ErrNoReservation, id)
			}
			exts = append(exts, r.Extents...)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	w.register(exts)
	return exts, nil
}

// WriteAt writes p at the device offset off through d, unless the claim
// was revoked (then ErrNoReservation, and nothing is written). The caller
// writes only inside the claimed extents.
func (w *LocalWrite) WriteAt(d BlobData, p []byte, off int64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	_, err := d.WriteAt(p, off)
	return err
}

// End releases the claim.
func (w *LocalWrite) End() {
	g := &w.f.guard
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, off := range w.offs {
		delete(g.writers[off], w)
		if len(g.writers[off]) == 0 {
			delete(g.writers, off)
		}
	}
	w.offs = nil
}

// revokeWriters revokes every local write on exts, waiting for writes in
// progress. Called by the applying goroutine before it frees exts.
func (f *FSM) revokeWriters(exts []catalog.Extent) {
	g := &f.guard
	g.mu.Lock()
	var ws []*LocalWrite
	for _, e := range exts {
		for w := range g.writers[e.Offset] {
			ws = append(ws, w)
		}
	}
	g.mu.Unlock()
	revoke(ws)
}

// revokeAllWriters revokes every local write: a restored snapshot
// replaces every decision they were made under.
func (f *FSM) revokeAllWriters() {
	g := &f.guard
	g.mu.Lock()
	var ws []*LocalWrite
	for _, set := range g.writers {
		for w := range set {
			ws = append(ws, w)
		}
	}
	g.mu.Unlock()
	revoke(ws)
}

func revoke(ws []*LocalWrite) {
	for _, w := range ws {
		w.mu.Lock()
		if w.err == nil {
			w.err = fmt.Errorf("%w: its pages were freed while a local write was under way", ErrNoReservation)
		}
		w.mu.Unlock()
	}
}

// BeginBlobWrite claims the pages of a committed blob, for rewriting its
// bytes (repair), if key's current version in the applied state is
// version; otherwise it fails with ErrNotFound. The caller has applied the
// version's entry. A delete or replacement revokes the claim as a free of
// reserved pages does.
func (f *FSM) BeginBlobWrite(key string, version uint64) (*LocalWrite, error) {
	w := &LocalWrite{f: f}
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	var exts []catalog.Extent
	err := f.cat.View(func(tx *catalog.Tx) error {
		b, ok, err := tx.GetBlob(key)
		if err != nil {
			return err
		}
		if !ok || b.Version != version {
			return fmt.Errorf("%w: %q version %d is not current here", ErrNotFound, key, version)
		}
		exts = b.Extents
		return nil
	})
	if err != nil {
		return nil, err
	}
	w.register(exts)
	return w, nil
}

// register adds exts to the guard under w. REQUIRES: f.applyMu held.
func (w *LocalWrite) register(exts []catalog.Extent) {
	g := &w.f.guard
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.writers == nil {
		g.writers = map[int64]map[*LocalWrite]struct{}{}
	}
	for _, e := range exts {
		if g.writers[e.Offset] == nil {
			g.writers[e.Offset] = map[*LocalWrite]struct{}{}
		}
		g.writers[e.Offset][w] = struct{}{}
		w.offs = append(w.offs, e.Offset)
	}
}

// MarkLocal records in the node-local part of the catalog that this node
// holds verified data for key's version (see catalog.Tx.MarkLocal).
func (f *FSM) MarkLocal(key string, version uint64) error {
	return f.cat.Update(func(tx *catalog.Tx) error { return tx.MarkLocal(key, version) })
}
