package volume

import (
	"errors"
	"fmt"
)

// Errors returned while formatting or opening a volume. Every error the
// package returns wraps one of these (or an error from the Device) with
// context, so callers branch with errors.Is, never on the message.
var (
	// ErrNotVolume is returned by Open and DecodeSuperblock when the
	// superblock does not start with the magic "BLOBNODE": the device was
	// never formatted, or holds something else.
	ErrNotVolume = errors.New("volume: not a blobnode volume (bad superblock magic)")

	// ErrUnsupportedVersion is returned when the superblock's format version
	// is not one this code reads.
	ErrUnsupportedVersion = errors.New("volume: unsupported format version")

	// ErrChecksum is returned when the superblock's CRC32C does not match
	// its contents (a torn or corrupted superblock).
	ErrChecksum = errors.New("volume: superblock checksum mismatch")

	// ErrGeometryMismatch is returned by Open when the caller expected a
	// geometry other than the one the volume was formatted with. The
	// wrapping message names both.
	ErrGeometryMismatch = errors.New("volume: geometry mismatch")

	// ErrTruncated is returned when the device (or a buffer handed to
	// DecodeSuperblock) is shorter than the superblock, or shorter than the
	// VolumeSize the superblock records.
	ErrTruncated = errors.New("volume: device truncated")

	// ErrBadGeometry is returned when a geometry or layout is out of range:
	// page shifts outside the allowed ranges, a volume too small to hold the
	// superblock, journal, state region and one lpage, unaligned or
	// overlapping regions in a decoded superblock, or a bad device size.
	ErrBadGeometry = errors.New("volume: bad geometry")
)

// Errors returned by the metadata journal.
var (
	// ErrCorrupt marks corruption that recovery must not paper over: a
	// journal record in the middle of the log whose payload checksum fails
	// although the record after it is intact, a valid record whose writes
	// fall outside the state region, or no valid journal header. The
	// concrete error is a *CorruptError carrying the device offset;
	// errors.Is(err, ErrCorrupt) matches it.
	ErrCorrupt = errors.New("volume: corrupt")

	// ErrTxnTooLarge is returned (through Commit.Wait) when one transaction
	// does not fit in the journal's log area as a single record.
	ErrTxnTooLarge = errors.New("volume: transaction too large for the journal")
)

// Errors returned by I/O calls.
var (
	// ErrClosed is returned by every method of a Volume, Journal or
	// MemDevice after Close, and by a second Close.
	ErrClosed = errors.New("volume: closed")

	// ErrOutOfRange is returned when a data read or write falls outside the
	// heap, a metadata read, direct write or journaled write falls outside
	// the state region, or a MemDevice access falls outside the device.
	ErrOutOfRange = errors.New("volume: offset out of range")

	// ErrPoisoned is returned by every sync of a Volume (journal commits,
	// checkpoints, SyncData, Sync, Close) after any one sync of its device
	// failed: the kernel may have dropped the pages it could not write and
	// reports that only once, so no later sync can vouch for anything. The
	// wrapped cause names the file. Reopen the volume (restart the node).
	ErrPoisoned = errors.New("volume: a sync of the device failed earlier, so nothing written since can be made durable; restart to recover from the Raft log")
)

// Errors produced only by MemDevice, the test double.
var (
	// ErrInjected is returned by MemDevice once a fault set with
	// FailSyncAfter or FailWritesAfter fires.
	ErrInjected = errors.New("volume: injected I/O error")

	// ErrCrashed is returned by MemDevice.WriteAt and MemDevice.Sync from
	// the crash point set with SetCrashAt on, until Crash is called. The
	// operation is not applied.
	ErrCrashed = errors.New("volume: device crashed")
)

// CorruptError reports corruption at a device offset. It matches ErrCorrupt
// under errors.Is.
type CorruptError struct {
	Offset int64  // absolute device offset of the damaged structure
	Reason string // what was wrong
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("volume: corrupt at offset %d: %s", e.Offset, e.Reason)
}

// Is reports whether target is ErrCorrupt.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }
