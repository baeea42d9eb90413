package catalog

import "errors"

// Errors returned by the catalog. Callers branch on them with errors.Is; the
// returned error usually wraps one of these with context.
var (
	// Opening and lifetime.

	// ErrUnknownLayout is returned by Open and Restore when the file carries
	// a bucket layout version this build does not understand (a newer
	// binary wrote it, or it is not a catalog at all).
	ErrUnknownLayout = errors.New("catalog: unknown bucket layout version")
	// ErrClosed is returned by every DB method after Close, and after a
	// Restore that swapped the file in but could not reopen it.
	ErrClosed = errors.New("catalog: closed")
	// ErrTxClosed is returned by a Tx method called after the function given
	// to Update or View has returned.
	ErrTxClosed = errors.New("catalog: transaction used after it ended")
	// ErrSnapshotReleased is returned by Snapshot.WriteTo after Release.
	ErrSnapshotReleased = errors.New("catalog: snapshot released")

	// Data.

	// ErrCorrupt marks bytes that cannot be a valid catalog: a record that
	// does not decode, an index entry without its record, a missing bucket,
	// a snapshot stream that is not a catalog. It is never returned for bad
	// arguments.
	ErrCorrupt = errors.New("catalog: corrupt")
	// ErrNotFound is returned by GetMeta for an unset name and by MarkLocal
	// when no blob with that key and version exists.
	ErrNotFound = errors.New("catalog: not found")

	// Arguments.

	// ErrInvalidKey is returned for an empty blob key, a key longer than
	// MaxKeyLen, or an empty or overlong setting name.
	ErrInvalidKey = errors.New("catalog: invalid key")
	// ErrInvalidRecord is returned when a Blob or Reservation about to be
	// written breaks a record invariant (negative size, extents shorter than
	// the size, a checksum count that does not match the chunking, ...).
	ErrInvalidRecord = errors.New("catalog: invalid record")
	// ErrInvalidArgument is returned for a non-positive limit or an
	// oversized setting value.
	ErrInvalidArgument = errors.New("catalog: invalid argument")
	// ErrIndexRegression is returned by SetAppliedIndex for an index lower
	// than the one already stored: applied state never moves backwards
	// (only Restore replaces it).
	ErrIndexRegression = errors.New("catalog: applied index would move backwards")
)
