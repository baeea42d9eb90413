package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"
)

// Errors returned by the store. Callers branch on them with errors.Is; the
// HTTP layer maps each to one status code.
var (
	// ErrNotFound: the key has no committed blob.
	ErrNotFound = errors.New("blob not found")
	// ErrPreconditionFailed: an If-Match / If-None-Match condition did not hold.
	ErrPreconditionFailed = errors.New("precondition failed")
	// ErrTooLarge: the body is larger than the configured maximum blob size.
	ErrTooLarge = errors.New("blob too large")
	// ErrNoSpace: the volume cannot hold the blob.
	ErrNoSpace = errors.New("out of space")
	// ErrUnavailable: no Raft leader, or the node is shutting down; retry later.
	ErrUnavailable = errors.New("unavailable")
	// ErrOutcomeUnknown: the write reached a leader, which was lost (or
	// shut down) before it was known to commit, and no retry within the
	// write timeout settled it: it may yet take effect. It wraps
	// ErrUnavailable.
	ErrOutcomeUnknown = fmt.Errorf("the write's outcome is unknown: it may have been applied: %w", ErrUnavailable)
	// ErrBadDigest: the client's checksum header does not match the body received.
	ErrBadDigest = errors.New("body does not match its checksum")
	// ErrIncompleteBody: the body ended before its declared length, or the
	// client went away mid-upload. Nothing was stored.
	ErrIncompleteBody = errors.New("incomplete body")
	// ErrCorruptData: a chunk failed verification and no verified copy could
	// be found. Never returned together with the bad bytes. Returned inside
	// a *ChunkError.
	ErrCorruptData = errors.New("stored data failed verification")
	// ErrReadFailed: a chunk could not be read from the volume (the device
	// returned an I/O error, e.g. EIO; errors.Is matches it too). Nothing
	// was changed: the blob stays stored and a later read may succeed.
	// Returned inside a *ChunkError.
	ErrReadFailed = errors.New("stored data could not be read")
	// ErrBlobChanged: the version being read was deleted or replaced
	// during the read and its pages taken by another blob; the chunk
	// checks caught it, so no wrong byte was returned. Reading again
	// finds the current state.
	ErrBlobChanged = errors.New("blob deleted or replaced during the read")
	// ErrInvalidKey: the key breaks a key rule (the message says which).
	ErrInvalidKey = errors.New("invalid key")
	// ErrInvalidArgument: another field of the request breaks a limit
	// (e.g. a Content-Type longer than MaxContentTypeLen). Nothing was
	// read or stored.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrReadOnly: the node cannot make changes durable because a disk
	// under its Raft log or catalog is full or failing; reads still work
	// and the node recovers on its own when the disk does. Returned as a
	// *ReadOnlyError; errors.Is(err, syscall.ENOSPC) tells a full disk.
	ErrReadOnly = errors.New("node is read-only")
)

// ReadOnlyError is the store's ErrReadOnly with its reason.
type ReadOnlyError struct {
	// Reason is safe to show to clients: which state could not be written
	// and the error number's text, e.g. "catalog: no space left on device".
	Reason string
	Err    error // the full cause (paths, indexes), for logs
}

func (e *ReadOnlyError) Error() string { return e.Err.Error() }

// Unwrap makes ErrReadOnly and the cause (e.g. syscall.ENOSPC) match.
func (e *ReadOnlyError) Unwrap() []error { return []error{ErrReadOnly, e.Err} }

// ChunkError is one chunk of a stored blob that could not be served: its
// bytes did not match their checksum (Err wraps ErrCorruptData) or could
// not be read (Err wraps ErrReadFailed and the device's error). It says
// where, for operators; the HTTP layer shows clients only the sentinel.
type ChunkError struct {
	Key     string
	Version uint64
	Chunk   int64 // index of the chunk in the blob (ChunkSize bytes each)
	// Offset is the device offset of the chunk's first byte, or, for a
	// read error, of the read that failed (a chunk may span extents).
	Offset int64
	Err    error
}

func (e *ChunkError) Error() string {
	return fmt.Sprintf("store: blob %q version %d chunk %d at device offset %d: %v", e.Key, e.Version, e.Chunk, e.Offset, e.Err)
}

func (e *ChunkError) Unwrap() error { return e.Err }

// ChunkStats counts the chunk failures reads have met since the store was
// created (each time one is met: two reads of one bad chunk count two).
type ChunkStats struct {
	Corrupt    uint64 // chunks that failed verification (ErrCorruptData)
	ReadErrors uint64 // chunks the device failed to read (ErrReadFailed)
	// Repaired chunks (and their bytes) were written back from a replica.
	Repaired, RepairedBytes uint64
	// RepairBacklog is the number of committed blobs this node has not
	// verified yet, as of the repairer's last pass (-1 before its first).
	RepairBacklog int64
	// ScrubbedBytes were re-verified by the scrubber.
	ScrubbedBytes uint64
	// InheritedMarks are blobs marked verified again after an unclean
	// start from the old catalog's marks (Config.OldMarks), unread.
	InheritedMarks uint64
	// ReplicaBytes were received from coordinators of other nodes'
	// uploads, verified and written here (ReceiveReplica).
	ReplicaBytes uint64
}

// BlobInfo describes one committed version of a blob.
type BlobInfo struct {
	Key         string
	Size        int64
	Version     uint64 // Raft index of the commit that made this version visible
	ETag        string // strong entity tag, quoted, e.g. "\"1a2b-0c0ffee0\""
	ContentType string
	Created     time.Time
	// Replicas are the nodes that held the bytes durably when the blob
	// was committed (streamed uploads in a group); nil otherwise.
	Replicas []string
}

// Condition is a write precondition taken from If-Match / If-None-Match.
type Condition struct {
	IfMatch        string // an ETag (quoted); empty = no condition
	IfNoneMatchAny bool   // If-None-Match: * — create only
}

// PutRequest is one upload. Body is read exactly once, streaming.
type PutRequest struct {
	Key         string
	ContentType string
	// Size is the declared length, or -1 when unknown (chunked upload).
	// A body that ends before Size bytes is ErrIncompleteBody.
	Size int64
	Body io.Reader
	// CRC32C, when non-nil, is the client's Castagnoli CRC of the whole body;
	// a mismatch is ErrBadDigest and nothing is stored.
	CRC32C *uint32
	Cond   Condition
}

// ReadOptions select the consistency of a read.
type ReadOptions struct {
	// Stale allows a read from local state without confirming leadership
	// (faster; may miss the most recent writes acknowledged elsewhere).
	Stale bool
}

// Object is an open handle on one committed version.
type Object interface {
	Info() BlobInfo
	// WriteRange writes bytes [off, off+n) of the blob to w, verifying every
	// chunk before any of its bytes are written. A chunk that fails its
	// checksum or cannot be read ends it with a *ChunkError (wrapping
	// ErrCorruptData or ErrReadFailed) after exactly the bytes before that
	// chunk; the store has then already counted it (Store.ChunkStats) and
	// logged it at Error, so the caller need not log it again.
	WriteRange(ctx context.Context, w io.Writer, off, n int64) error
	Close() error
}

// ListRequest asks for keys with Prefix, strictly after StartAfter, at most Limit.
type ListRequest struct {
	Prefix     string
	StartAfter string
	Limit      int
}

// ListPage is one page of a listing in key order.
type ListPage struct {
	Blobs []BlobInfo
	// Truncated is true when more keys follow; NextStartAfter continues.
	Truncated      bool
	NextStartAfter string
}
