package raftfsm

import (
	"cmp"
	"fmt"
	"slices"
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
	// held names the live reservations whose bytes this node holds
	// durably and verified (LocalWrite.Held). A Commit whose reservations
	// are all held marks its blob verified here in the same transaction,
	// so the repairer need not read it back; a reservation leaves the set
	// when it is consumed or freed, so the set is bounded by the live
	// reservations. It is in memory only: after a restart the repairer
	// verifies what the log commits.
	held map[uint64]struct{}
}

// LocalWrite is a local writer's claim on reserved pages.
type LocalWrite struct {
	f    *FSM
	mu   sync.Mutex // held across each device write, so revoke waits for it
	err  error      // set by revoke: every later write fails with it
	offs []int64
	ids  []uint64 // the reservations claimed (none for BeginBlobWrite)
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
	w.ids = append(w.ids, ids...)
	return exts, nil
}

// Held records that this node now holds the bytes of reservations ids,
// all of them claimed by w, durably (synced) and verified (their
// checksums computed or checked as they were written): the Commit that
// maps them will mark its blob verified here. It fails, and records
// nothing, if a reservation is no longer live
// (ErrNoReservation: a Commit applied meanwhile leaves its blob to the
// repairer) or not claimed by w.
func (w *LocalWrite) Held(ids []uint64) error {
	f := w.f
	// Live is what matters, not whether w was revoked: a revocation
	// frees pages, and freed reservations are never live again (ids are
	// not reused); one of w's may be freed on purpose (store's trimTail).
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	for _, id := range ids {
		if !slices.Contains(w.ids, id) {
			return fmt.Errorf("raftfsm: reservation %d is not claimed by this write", id)
		}
	}
	err := f.cat.View(func(tx *catalog.Tx) error {
		for _, id := range ids {
			if _, ok, err := tx.GetReservation(id); err != nil || !ok {
				return cmp.Or(err, fmt.Errorf("%w: %d is not live here", ErrNoReservation, id))
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	g := &f.guard
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.held == nil {
		g.held = map[uint64]struct{}{}
	}
	for _, id := range ids {
		g.held[id] = struct{}{}
	}
	return nil
}

// takeHeld reports whether every one of ids (at least one) is held, and
// forgets them all. Called by the applying goroutine as a Commit consumes
// them.
func (f *FSM) takeHeld(ids []uint64) bool {
	g := &f.guard
	g.mu.Lock()
	defer g.mu.Unlock()
	all := len(ids) > 0
	for _, id := range ids {
		if _, ok := g.held[id]; !ok {
			all = false
		}
		delete(g.held, id)
	}
	return all
}

// forgetHeld drops reservation id from the held set (it was freed).
func (f *FSM) forgetHeld(id uint64) {
	g := &f.guard
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.held, id)
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
	clear(g.held)
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

// Unmarked counts the blobs this node committed or restored without
// marking them held verified; it only grows. Whoever verifies such blobs
// (the repairer) has work when it changes.
func (f *FSM) Unmarked() uint64 { return f.unmarked.Load() }

// Restores counts the snapshots this state machine has installed.
func (f *FSM) Restores() uint64 { return f.restores.Load() }

// MarkLocal records in the node-local part of the catalog that this node
// holds verified data for key's version (see catalog.Tx.MarkLocal).
func (f *FSM) MarkLocal(key string, version uint64) error {
	return f.cat.Update(func(tx *catalog.Tx) error { return tx.MarkLocal(key, version) })
}
