package space

import "errors"

// Errors of allocation and free. Each leaves the allocator unchanged.
var (
	// ErrNoSpace is returned by Allocate when the heap cannot hold the
	// request; check with errors.Is.
	ErrNoSpace = errors.New("space: out of space")
	// ErrInvalidSize is returned by Allocate for a size <= 0.
	ErrInvalidSize = errors.New("space: invalid size")
	// ErrBadExtent is returned for an extent that is not a page of this
	// geometry: outside the heap, a length that is not a page size, or an
	// offset not aligned to its length.
	ErrBadExtent = errors.New("space: bad extent")
	// ErrDoubleFree is returned by Free for a page that is already free, or
	// listed twice in one call.
	ErrDoubleFree = errors.New("space: double free")
	// ErrNotAllocated is returned by Free for a page that was never handed
	// out as a whole page of that size.
	ErrNotAllocated = errors.New("space: not allocated")
)

// Errors of opening, rebuilding and checking.
var (
	// ErrCorrupt is returned by Open when the state header is not ours.
	ErrCorrupt = errors.New("space: corrupt allocator state")
	// ErrNeedsRebuild is returned by Open when a Rebuild was interrupted:
	// the caller must Rebuild from its list of owned extents.
	ErrNeedsRebuild = errors.New("space: allocator state needs a rebuild")
	// ErrOverlap is returned by Rebuild when two owned extents overlap.
	ErrOverlap = errors.New("space: owned extents overlap")
	// ErrFailed is returned by every call after a journal commit failed:
	// memory is ahead of the device and the allocator must be reopened.
	ErrFailed = errors.New("space: allocator failed")
	// ErrInconsistent is matched by the *CheckError that Check returns.
	ErrInconsistent = errors.New("space: inconsistent allocator state")
)
