package raftfsm

import (
	"errors"
	"slices"
	"syscall"
)

// ErrReadOnly is in the chain of every error returned because the node is
// read-only: a disk under the Raft log, the catalog or (for the bytes of an
// inline blob) the volume refused a write (full or failing). Reads keep serving the last applied state; writes fail fast
// until the failed operation succeeds again, which the node retries on its
// own. errors.Is(err, syscall.ENOSPC) tells a full disk from other failures.
var ErrReadOnly = errors.New("node is read-only")

// ReadOnlyError says why the node is read-only: which part of its state
// could not be written, and the I/O error that stopped it.
type ReadOnlyError struct {
	Where string // "raft log", "catalog" or "volume"
	Err   error  // the write's error, with its path (for logs)
}

func (e *ReadOnlyError) Error() string {
	return ErrReadOnly.Error() + ": " + e.Where + ": " + e.Err.Error()
}

// Unwrap makes both ErrReadOnly and the cause (e.g. syscall.ENOSPC) match.
func (e *ReadOnlyError) Unwrap() []error { return []error{ErrReadOnly, e.Err} }

// Reason is the cause without paths, safe to show to clients, e.g.
// "catalog: no space left on device".
func (e *ReadOnlyError) Reason() string {
	var errno syscall.Errno
	if errors.As(e.Err, &errno) {
		return e.Where + ": " + errno.Error()
	}
	return e.Where + ": I/O error"
}

// Parts of the state whose writes can turn the node read-only.
const (
	whereRaftLog = "raft log"
	whereCatalog = "catalog"
	whereVolume  = "volume" // inline blobs' bytes (KindCommitInline)
)

// setReadOnly records that writes to where fail with err. The first cause
// logs at Error; waiters of ReadOnlyChanged are woken.
func (f *FSM) setReadOnly(where string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, had := f.readOnly[where]
	was := len(f.readOnly) > 0
	f.readOnly[where] = &ReadOnlyError{Where: where, Err: err}
	if !had {
		if !was {
			f.log.Error("node is read-only: writes are refused until the disk accepts them again", "where", where, "err", err)
		} else {
			f.log.Error("node is read-only for a further reason", "where", where, "err", err)
		}
		f.readOnlyChangedLocked()
	}
}

// clearReadOnly records that writes to where succeed again; when no cause
// is left the node is writable and that is logged at Info.
func (f *FSM) clearReadOnly(where string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, had := f.readOnly[where]; !had {
		return
	}
	delete(f.readOnly, where)
	if len(f.readOnly) == 0 {
		f.log.Info("node is writable again", "recovered", where)
	} else {
		f.log.Info("node recovered one cause of read-only", "recovered", where)
	}
	f.readOnlyChangedLocked()
}

// readOnlyChangedLocked wakes everyone waiting on the read-only state.
// REQUIRES: f.mu held.
func (f *FSM) readOnlyChangedLocked() {
	close(f.roChanged)
	f.roChanged = make(chan struct{})
	f.cond.Broadcast()
}

// ReadOnly returns nil when the node accepts writes, otherwise a
// *ReadOnlyError (the cause that sorts first, so the answer is stable).
func (f *FSM) ReadOnly() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.readOnlyLocked()
}

// REQUIRES: f.mu held.
func (f *FSM) readOnlyLocked() error {
	if len(f.readOnly) == 0 {
		return nil
	}
	keys := make([]string, 0, len(f.readOnly))
	for k := range f.readOnly {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return f.readOnly[keys[0]]
}

// ReadOnlyChanged returns a channel closed at the next change of the
// read-only state (entering, leaving, or a further cause).
func (f *FSM) ReadOnlyChanged() <-chan struct{} {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.roChanged
}
