package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"syscall"

	"github.com/blobnode/blobnode/store"
)

// Error codes carried in the JSON error body. Clients branch on the code;
// the message is for people.
const (
	CodeInvalidKey          = "InvalidKey"
	CodeBadDigest           = "BadDigest"
	CodeIncompleteBody      = "IncompleteBody"
	CodeInvalidArgument     = "InvalidArgument"
	CodeNotFound            = "NotFound"
	CodeMethodNotAllowed    = "MethodNotAllowed"
	CodeLengthRequired      = "LengthRequired"
	CodePreconditionFailed  = "PreconditionFailed"
	CodeTooLarge            = "TooLarge"
	CodeRangeNotSatisfiable = "RangeNotSatisfiable"
	CodeClientClosed        = "ClientClosedRequest"
	CodeInternal            = "Internal"
	// CodeCorrupt: a chunk of the blob failed verification (the node's
	// copy is damaged); no byte of it was sent.
	CodeCorrupt = "Corrupt"
	// CodeReadError: the node's disk failed to read a chunk of the blob
	// (an I/O error); nothing was lost and a retry may succeed.
	CodeReadError   = "ReadError"
	CodeUnavailable = "Unavailable"
	// CodeOutcomeUnknown (503): the write reached a leader that was lost
	// before it was known to commit; it may yet take effect. Unlike
	// Unavailable (nothing was done), read the key before retrying a
	// conditional write or a DELETE.
	CodeOutcomeUnknown = "OutcomeUnknown"
	CodeTooManyUploads = "TooManyUploads"
	CodeNoSpace        = "NoSpace"
	// CodeReadOnly: the node refuses writes because a disk under its Raft
	// log or catalog is full (507) or failing (503); the message says
	// which. Reads still work; the node recovers on its own.
	CodeReadOnly = "ReadOnly"
)

// statusClientClosed is the status recorded (nginx's convention) when the
// client went away before its answer was ready; no client ever sees it.
const statusClientClosed = 499

// apiError is an error decided by this package, with its status and code.
type apiError struct {
	status int
	code   string
	msg    string
}

func (e *apiError) Error() string { return e.msg }

func invalidArgument(msg string) *apiError {
	return &apiError{http.StatusBadRequest, CodeInvalidArgument, msg}
}

// errorBody is the JSON shape of every error response.
type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// classify maps an error to its status, code and client-facing message.
// Store errors get the sentinel's fixed text, so nothing the store wrapped
// around it (paths, peers, offsets) reaches the client.
func classify(r *http.Request, err error) (status int, code, msg string) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
		return ae.status, ae.code, ae.msg
	case errors.Is(err, store.ErrInvalidKey):
		return http.StatusBadRequest, CodeInvalidKey, err.Error()
	case errors.Is(err, store.ErrInvalidArgument):
		return http.StatusBadRequest, CodeInvalidArgument, err.Error()
	case errors.Is(err, store.ErrTooLarge):
		return http.StatusRequestEntityTooLarge, CodeTooLarge, store.ErrTooLarge.Error()
	case errors.Is(err, store.ErrBadDigest):
		return http.StatusBadRequest, CodeBadDigest, store.ErrBadDigest.Error()
	case errors.Is(err, store.ErrIncompleteBody):
		return http.StatusBadRequest, CodeIncompleteBody, store.ErrIncompleteBody.Error()
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound, CodeNotFound, store.ErrNotFound.Error()
	case errors.Is(err, store.ErrPreconditionFailed):
		return http.StatusPreconditionFailed, CodePreconditionFailed, store.ErrPreconditionFailed.Error()
	case errors.Is(err, store.ErrReadOnly):
		status = http.StatusServiceUnavailable
		if errors.Is(err, syscall.ENOSPC) {
			status = http.StatusInsufficientStorage
		}
		msg = store.ErrReadOnly.Error()
		var ro *store.ReadOnlyError
		if errors.As(err, &ro) {
			msg += ": " + ro.Reason
		}
		return status, CodeReadOnly, msg
	case errors.Is(err, store.ErrNoSpace):
		return http.StatusInsufficientStorage, CodeNoSpace, store.ErrNoSpace.Error()
	case errors.Is(err, store.ErrOutcomeUnknown):
		return http.StatusServiceUnavailable, CodeOutcomeUnknown, store.ErrOutcomeUnknown.Error()
	case errors.Is(err, store.ErrUnavailable):
		return http.StatusServiceUnavailable, CodeUnavailable, store.ErrUnavailable.Error()
	case errors.Is(err, store.ErrBlobChanged):
		// Only after getBlob's retries: the key keeps changing under reads.
		return http.StatusServiceUnavailable, CodeUnavailable, store.ErrBlobChanged.Error()
	case errors.Is(err, store.ErrCorruptData):
		return http.StatusInternalServerError, CodeCorrupt, store.ErrCorruptData.Error()
	case errors.Is(err, store.ErrReadFailed):
		return http.StatusInternalServerError, CodeReadError, store.ErrReadFailed.Error()
	case r.Context().Err() != nil && (errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)):
		return statusClientClosed, CodeClientClosed, "client closed the request"
	default:
		return http.StatusInternalServerError, CodeInternal, "internal error"
	}
}

// writeError answers r with the JSON error for err and logs what the
// operator needs: server-side failures at Error, overload at Warn.
func (s *server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status, code, msg := classify(r, err)
	var ce *store.ChunkError
	switch {
	case errors.As(err, &ce):
		// The store logged it at Error, with where the volume is bad.
		s.log.Debug("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	case status == http.StatusServiceUnavailable || status == http.StatusInsufficientStorage:
		s.log.Warn("request refused", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	case status >= 500:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	case status == statusClientClosed:
		s.log.Debug("client went away", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	if status == http.StatusServiceUnavailable || code == CodeReadOnly {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, errorBody{errorDetail{Code: code, Message: msg}})
}

// writeJSON writes v as the JSON body of a response with the given status.
// v must be a type this package controls, so encoding cannot fail.
func writeJSON(w http.ResponseWriter, status int, v any) {
	writeJSONHeader(w, status)
	_ = json.NewEncoder(w).Encode(v) // a write error means the client is gone
}

// writeJSONHeader sends the header of a JSON response with status.
func writeJSONHeader(w http.ResponseWriter, status int) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
}
