package cluster

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/hashicorp/raft"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/raftfsm"
)

// wireResult is a raftfsm.Result on the wire: what a proposer needs back.
// (Result.Old, the version a command replaced, is not carried: nothing
// that forwards a command reads it.)
type wireResult struct {
	Err     string             `json:"err,omitempty"` // a refusalCodes key
	Extents []catalog.Extent   `json:"extents,omitempty"`
	Batch   [][]catalog.Extent `json:"batch,omitempty"`
	Version uint64             `json:"version,omitempty"`
	Index   uint64             `json:"index,omitempty"`
}

// refusalCodes name the state machine's deterministic refusals on the wire.
var refusalCodes = map[string]error{
	"NoSpace":            raftfsm.ErrNoSpace,
	"PreconditionFailed": raftfsm.ErrPreconditionFailed,
	"NotFound":           raftfsm.ErrNotFound,
	"NoReservation":      raftfsm.ErrNoReservation,
	"Duplicate":          raftfsm.ErrDuplicate,
	"Invalid":            raftfsm.ErrInvalid,
	"GeometryMismatch":   raftfsm.ErrGeometryMismatch,
	// Not a recorded outcome: the entry was refused for its request id;
	// the forwarding node draws another (Coordinator.Propose).
	"RequestIDReused": raftfsm.ErrRequestIDReused,
}

func encodeResult(r raftfsm.Result) (wireResult, error) {
	w := wireResult{Extents: r.Extents, Batch: r.Batch, Version: r.Version, Index: r.Index}
	if r.Err != nil {
		for code, e := range refusalCodes {
			if errors.Is(r.Err, e) {
				w.Err = code
				return w, nil
			}
		}
		return w, fmt.Errorf("cluster: a refusal with no wire code: %w", r.Err)
	}
	return w, nil
}

func decodeResult(w wireResult) (raftfsm.Result, error) {
	r := raftfsm.Result{Extents: w.Extents, Batch: w.Batch, Version: w.Version, Index: w.Index}
	if w.Err != "" {
		e, ok := refusalCodes[w.Err]
		if !ok {
			return r, fmt.Errorf("cluster: unknown refusal %q from the leader", w.Err)
		}
		r.Err = e
	}
	return r, nil
}

// wireError is a failed peer request's body.
type wireError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	// Where and Reason describe a read-only leader (Code "ReadOnly").
	Where  string `json:"where,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Codes of failed peer requests.
const (
	codeNotLeader   = "NotLeader"   // ask the leader instead; nothing was proposed
	codeReadOnly    = "ReadOnly"    // the leader cannot write
	codeUnavailable = "Unavailable" // the state machine stopped or closed
	codeBadCommand  = "BadCommand"  // the command does not decode
	codeUnknown     = "Unknown"     // the outcome is not known (timeout, leadership lost)
	codeAuth        = "Unauthorized"
	codeInternal    = "Internal"
)

// errorOf maps an error of the leader's Propose or ReadIndex to the wire.
func errorOf(err error) (int, wireError) {
	var ro *raftfsm.ReadOnlyError
	switch {
	case errors.Is(err, raftfsm.ErrOutcomeUnknown), errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrRaftShutdown):
		// Proposed, then leadership was lost: the entry may still commit.
		return http.StatusInternalServerError, wireError{Code: codeUnknown, Message: err.Error()}
	case errors.As(err, &ro):
		return http.StatusServiceUnavailable, wireError{Code: codeReadOnly, Message: "the leader is read-only", Where: ro.Where, Reason: ro.Reason()}
	case errors.Is(err, raftfsm.ErrNotLeader):
		return http.StatusMisdirectedRequest, wireError{Code: codeNotLeader, Message: err.Error()}
	case errors.Is(err, raftfsm.ErrStopped), errors.Is(err, raftfsm.ErrClosed):
		return http.StatusServiceUnavailable, wireError{Code: codeUnavailable, Message: err.Error()}
	case errors.Is(err, raftfsm.ErrBadCommand):
		return http.StatusBadRequest, wireError{Code: codeBadCommand, Message: err.Error()}
	}
	return http.StatusInternalServerError, wireError{Code: codeUnknown, Message: err.Error()}
}

// errNotLeader, from a peer, means nothing was proposed: retry elsewhere.
var errNotLeader = fmt.Errorf("cluster: %w (the peer asked is not the leader)", raftfsm.ErrNotLeader)

// errorFrom turns a peer's wireError back into an error the store maps:
// raftfsm's sentinels where the peer named one.
func errorFrom(status int, w wireError) error {
	switch w.Code {
	case codeNotLeader:
		return errNotLeader
	case codeReadOnly:
		return &raftfsm.ReadOnlyError{Where: "leader's " + w.Where, Err: errors.New(w.Reason)}
	case codeUnavailable:
		return fmt.Errorf("cluster: the leader: %s: %w", w.Message, raftfsm.ErrStopped)
	case codeBadCommand:
		return fmt.Errorf("cluster: the leader: %s: %w", w.Message, raftfsm.ErrBadCommand)
	case codeAuth:
		return fmt.Errorf("cluster: the leader refused this node: %s: %w", w.Message, ErrPeerAuth)
	case "JoinRefused":
		return fmt.Errorf("%w: %s", ErrJoinRefused, w.Message)
	case "NotFound":
		return fmt.Errorf("%w: %s", ErrNoSuchNode, w.Message)
	}
	return fmt.Errorf("%w: the leader answered %d %s: %s", errUnknownOutcome, status, w.Code, w.Message)
}

// errUnknownOutcome: the command may or may not have been applied. It
// wraps raftfsm.ErrNotLeader, so Propose retries it, and
// raftfsm.ErrOutcomeUnknown, so the store answers 503 OutcomeUnknown if no
// retry settles it.
var errUnknownOutcome = fmt.Errorf("cluster: outcome unknown (the leader was lost or did not answer): %w: %w", raftfsm.ErrNotLeader, raftfsm.ErrOutcomeUnknown)
