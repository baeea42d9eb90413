package powercutfs

import "slices"

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
