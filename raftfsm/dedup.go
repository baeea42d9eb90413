package raftfsm

// Request deduplication. A proposal whose outcome is unknown (the leader was
// lost, the wait timed out) may still be committed, so its proposer retries
// it under the same Command.RequestID; both entries may end up in the log.
// The state machine records the Result of the first entry that carries a
// request id, in the catalog's replicated requests bucket and in the
// transaction of that entry's batch, and answers any later entry with the
// same id and bytes from the record without executing it. So a retried
// Reserve gets the same extents, a retried Commit the same version, and a
// retried conditional PUT does not turn into a precondition failure: the
// client never gets a failure for a write that then appears.
//
// Everything here is a function of the log: records are keyed by request
// id, pruned by log index (DedupWindow), iterated in key order, and a
// snapshot carries them, so every replica, restored or replaying, answers a
// retry alike.

import (
	"fmt"
	"hash/crc32"

	"github.com/hashicorp/raft"

	"github.com/blobnode/blobnode/catalog"
)

// DedupWindow is how long, in log entries, the outcome of a command with a
// RequestID is remembered: a command applied at index i with request id r
// is recorded, and an entry at index k carrying r again gets the recorded
// Result without being executed iff k-i < DedupWindow. At each entry the
// records at or below its index minus DedupWindow are deleted, in the
// entry's own transaction, so the table holds at most DedupWindow records
// (about one per entry that carried an id), whatever the workload.
//
// For a proposer this means: a retry that applies within DedupWindow
// entries of the first attempt's application is deduplicated; a retry
// later than that executes again as a new command. At 10,000 entries a
// second 1<<18 entries are about 26 seconds, far longer than a proposal
// is retried for.
//
// The window is part of the replicated state machine's definition (every
// node must prune at the same entries): changing it is a format change.
const DedupWindow = 1 << 18

// Stable codes of the refusals a recorded Result may hold (frozen: they
// are in replicated catalogs). 0 is success. ErrRequestIDReused is never
// recorded.
const (
	codeOK                 = 0
	codeNoSpace            = 1
	codePreconditionFailed = 2
	codeNotFound           = 3
	codeNoReservation      = 4
	codeDuplicate          = 5
	codeInvalid            = 6
	codeGeometryMismatch   = 7
)

// errCode returns the stable code of a refusal; ok is false for an error
// that has none (a bug: every refusal Apply returns must have one).
func errCode(err error) (code uint64, ok bool) {
	switch err {
	case nil:
		return codeOK, true
	case ErrNoSpace:
		return codeNoSpace, true
	case ErrPreconditionFailed:
		return codePreconditionFailed, true
	case ErrNotFound:
		return codeNotFound, true
	case ErrNoReservation:
		return codeNoReservation, true
	case ErrDuplicate:
		return codeDuplicate, true
	case ErrInvalid:
		return codeInvalid, true
	case ErrGeometryMismatch:
		return codeGeometryMismatch, true
	}
	return 0, false
}

// codeErr is errCode's inverse; ok is false for a code it does not know.
func codeErr(code uint64) (refusal error, ok bool) {
	switch code {
	case codeOK:
		return nil, true
	case codeNoSpace:
		return ErrNoSpace, true
	case codePreconditionFailed:
		return ErrPreconditionFailed, true
	case codeNotFound:
		return ErrNotFound, true
	case codeNoReservation:
		return ErrNoReservation, true
	case codeDuplicate:
		return ErrDuplicate, true
	case codeInvalid:
		return ErrInvalid, true
	case codeGeometryMismatch:
		return ErrGeometryMismatch, true
	}
	return nil, false
}

// applyEntry applies one decoded command entry with the request table's
// bookkeeping: it deletes the records that fell out of the window at this
// index (so a record is found only by entries fewer than f.window after
// it, however the log was batched), answers a recorded request id with
// the recorded Result, and otherwise executes the command, recording its
// Result if it carries a request id. Everything happens in tx, the batch's
// transaction: a record commits with the effects it describes, or neither
// does. fp is the entry's entryFingerprint when it carries a request id.
func (f *FSM) applyEntry(tx *catalog.Tx, l *raft.Log, c *Command, fp uint32) (Result, error) {
	if l.Index > f.window {
		if _, err := tx.PruneRequests(l.Index - f.window); err != nil {
			return Result{}, err
		}
	}
	if c.RequestID == 0 {
		return f.apply(tx, l.Index, c)
	}
	rec, ok, err := tx.GetRequest(c.RequestID)
	if err != nil {
		return Result{}, err
	}
	if ok {
		if rec.Fingerprint != fp {
			return Result{Err: ErrRequestIDReused}, nil
		}
		return recordedResult(rec)
	}
	res, err := f.apply(tx, l.Index, c)
	if err != nil {
		return Result{}, err
	}
	code, ok := errCode(res.Err)
	if !ok {
		return Result{}, fmt.Errorf("refusal %q has no stable code to record", res.Err)
	}
	err = tx.AddRequest(catalog.Request{ // GetRequest found none above
		ID: c.RequestID, Index: l.Index, Fingerprint: fp, Code: code,
		Extents: res.Extents, Batch: res.Batch, Version: res.Version, Old: res.Old,
	})
	if err != nil {
		return Result{}, fmt.Errorf("record request %d: %w", c.RequestID, err)
	}
	return res, nil
}

// entryRequest is an entry's request id and entryFingerprint (both 0
// without an id).
type entryRequest struct {
	id          uint64
	fingerprint uint32
}

// entryFingerprint is what tells two commands with the same request id
// apart: the CRC-32C of the entry's bytes.
func entryFingerprint(data []byte) uint32 {
	return crc32.Checksum(data, crc32.MakeTable(crc32.Castagnoli))
}

// recordedResult rebuilds the Result a request record holds.
func recordedResult(rec catalog.Request) (Result, error) {
	refusal, ok := codeErr(rec.Code)
	if !ok {
		return Result{}, fmt.Errorf("%w: request %d: unknown result code %d", catalog.ErrCorrupt, rec.ID, rec.Code)
	}
	return Result{Err: refusal, Extents: rec.Extents, Batch: rec.Batch, Version: rec.Version, Old: rec.Old}, nil
}
