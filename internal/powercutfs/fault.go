package powercutfs

import (
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// FsyncFault is an fsync failure armed by [FS.FailNextFsync]. Its
// accessors say what the failure did once [FsyncFault.Fired] is closed,
// and return zero values before.
type FsyncFault struct {
	name  string
	fired chan struct{}

	// Set once, with the state's mutex held, before fired is closed.
	path     string
	datasync bool
	dropped  []Change
}

// Change is one unsynced change of a file's bytes: Data written at Off,
// or, with Data nil, the file's size set to Off (truncate, extend,
// fallocate).
type Change struct {
	Off  int64
	Data []byte
}

// FailNextFsync arms a failure of the next fsync or fdatasync of a
// regular file whose name (its last path element, in any directory) is
// name, as a disk whose writeback fails makes Linux fail one: that call
// returns EIO and drops the file's unsynced writes and size changes. They
// never become durable, neither by a later fsync nor at a cut or an
// unmount, while reads through the mount keep seeing them (the page cache
// keeps the pages). The failure fires once; later fsyncs of the file
// succeed and make durable what was changed after it. Faults armed for
// the same name fire in the order armed, one fsync each. See the package
// documentation, "Failing an fsync".
func (fs *FS) FailNextFsync(name string) *FsyncFault {
	f := &FsyncFault{name: name, fired: make(chan struct{})}
	fs.s.mu.Lock()
	defer fs.s.mu.Unlock()
	fs.s.faults = append(fs.s.faults, f)
	return f
}

// Fired is closed once the failure has been returned to an fsync.
func (f *FsyncFault) Fired() <-chan struct{} { return f.fired }

func (f *FsyncFault) hasFired() bool {
	select {
	case <-f.fired:
		return true
	default:
		return false
	}
}

// Path returns the path, relative to the mount point, of the file whose
// fsync failed. (An unlinked file has no name, so it never matches.)
func (f *FsyncFault) Path() string {
	if !f.hasFired() {
		return ""
	}
	return f.path
}

// Datasync reports whether the failed call was an fdatasync.
func (f *FsyncFault) Datasync() bool { return f.hasFired() && f.datasync }

// Dropped returns the unsynced changes the failure dropped, in the order
// they were made: what the disk never got.
func (f *FsyncFault) Dropped() []Change {
	if !f.hasFired() {
		return nil
	}
	return slices.Clone(f.dropped)
}

// fsyncDatasync is FUSE_FSYNC_FDATASYNC, the flag of FsyncIn.FsyncFlags
// that says the call is an fdatasync.
const fsyncDatasync = 1

// takeFault removes and returns the first armed fault for n's name, or nil.
// REQUIRES: s.mu held.
func (s *state) takeFault(n *inode) *FsyncFault {
	if n.parent == nil {
		return nil // unlinked: no name to match (nor the root)
	}
	for i, f := range s.faults {
		if f.name == n.name {
			s.faults = slices.Delete(s.faults, i, i+1)
			return f
		}
	}
	return nil
}

// fire records what the failure did and announces it.
// REQUIRES: the state's mutex held.
func (f *FsyncFault) fire(path string, datasync bool, dropped []dataOp) {
	f.path, f.datasync = path, datasync
	for _, op := range dropped {
		f.dropped = append(f.dropped, Change{Off: op.off, Data: op.data})
	}
	close(f.fired)
}

// ReadFault is a byte range of a file whose reads fail, armed by
// [FS.FailReads] until [FS.ClearReadFaults].
type ReadFault struct {
	name     string
	off, end int64        // [off, end) of the file
	failed   atomic.Int64 // FUSE reads failed
}

// Failed returns how many reads that reached the file system the fault
// has failed so far (one system call may take several, one a FUSE read
// request, and the kernel retries a failed readahead page by page).
func (f *ReadFault) Failed() int64 { return f.failed.Load() }

// FailReads makes every read of a regular file whose name (its last path
// element, in any directory) is name that overlaps bytes [off,
// off+length) fail with EIO, as a disk with unreadable sectors there
// does, until [FS.ClearReadFaults]. It lasts: every read fails, not only
// the next. Nothing else changes: the bytes, durable or not, are still
// there and read back once the faults are cleared; writes, fsyncs and
// cuts are not affected; other ranges of the file read as before.
//
// The kernel answers a read from its page cache without asking the file
// system, and the cache holds what was written and what was read before
// (see "Serving" in the package documentation), so FailReads drops the
// cached pages of the range, of every file of that name now, before it
// returns: from then on every read of those bytes reaches the file
// system and fails. (The alternative, opening files with FOPEN_DIRECT_IO,
// would take effect only for opens after arming, so not for the volume
// file of a node already running, and would change how every other read
// and mapping of the file behaves.) The kernel asks for whole pages (or
// larger folios, on a kernel that caches FUSE files in them), so a read
// fails if it needs a page that overlaps the range, even for bytes of
// that page outside it. A failed readahead costs nothing more: the kernel
// reads the page it was asked for again on its own, which succeeds if
// that page is outside the range. A process faulting on a mapping of the
// range gets SIGBUS.
//
// Arm the fault over bytes that nothing is writing at the time: the
// kernel puts a write's bytes into the cache before it sends them on, and
// a page dropped in that window would be read again without them (and,
// after clearing, cached stale). A write into the range after FailReads
// goes into the cache as usual, and reads of those pages are then served
// from there without failing.
//
// The error is the kernel's refusal to drop the cached pages; the fault
// is armed all the same.
func (fs *FS) FailReads(name string, off, length int64) (*ReadFault, error) {
	f := &ReadFault{name: name, off: off, end: off + length}
	s := fs.s
	s.mu.Lock()
	s.reads = append(s.reads, f)
	var inos []uint64
	for ino, n := range s.ns.nodes {
		if n.data != nil && n.parent != nil && n.name == name {
			inos = append(inos, ino)
		}
	}
	s.mu.Unlock()
	// Without the mutex: the kernel waits for reads of the range already in
	// flight (it holds their pages locked), which wait for the mutex. Those
	// reads were answered before the fault was armed, and their pages go
	// with the rest.
	for _, ino := range inos {
		switch st := fs.srv.InodeNotify(ino, off, length); st {
		case fuse.OK, fuse.ENOENT: // ENOENT: the kernel has no inode, so no pages, for it
		default:
			return f, fmt.Errorf("powercutfs: drop the cached pages of %s [%d, %d): %v", name, off, off+length, st)
		}
	}
	return f, nil
}

// ClearReadFaults disarms every fault armed by [FS.FailReads]: reads of
// those ranges succeed again and see the file's bytes as they are now.
func (fs *FS) ClearReadFaults() {
	fs.s.mu.Lock()
	defer fs.s.mu.Unlock()
	fs.s.reads = nil
}

// readFault returns the armed fault that fails a read of n's bytes [off,
// off+size), or nil.
// REQUIRES: s.mu held.
func (s *state) readFault(n *inode, off, size int64) *ReadFault {
	if n.parent == nil {
		return nil // unlinked: no name to match
	}
	for _, f := range s.reads {
		if f.name == n.name && off < f.end && f.off < off+size {
			return f
		}
	}
	return nil
}
