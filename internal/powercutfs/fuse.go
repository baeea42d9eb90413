package powercutfs

import (
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// openFlags keep the kernel's page cache of a file across opens. Every
// change to a file's bytes passes through that cache (writes go through it
// to the FS), so it is never stale while the mount lives; and it must not
// be dropped behind a write: the kernel copies a write into the cache and
// only then sends it to the FS, so a page invalidated in between (as an
// open without FOPEN_KEEP_CACHE does) is fetched again from the FS without
// the write and cached stale for good.
const openFlags = fuse.FOPEN_KEEP_CACHE

// cacheTimeout is how long the kernel may cache entries and attributes.
// Every change goes through the kernel, so its caches are never stale
// while a mount lives; a cut ends the mount and with it the caches.
const cacheTimeout = time.Second

// state is a mount's whole model. The FUSE server calls its methods from
// many goroutines.
type state struct {
	uid, gid uint32 // owner of every inode

	mu sync.Mutex // guards everything below, and every inode and fileData
	// dead is set by a cut or an unmount: from then on every operation
	// fails with EIO, so nothing changes after the moment of the cut.
	dead bool
	// err is the first failure of the backing store or of the model's own
	// invariants. It is sticky (the model can no longer vouch for its
	// state) and is reported by Cut and Unmount.
	err    error
	ns     *namespace
	faults []*FsyncFault              // armed, not yet fired, in the order armed
	reads  []*ReadFault               // armed by FailReads, until cleared
	dirs   map[uint64][]fuse.DirEntry // open directory handles: their entries
	nextFh uint64
}

// fail records err as the model's failure and returns EIO.
// REQUIRES: s.mu held.
func (s *state) fail(err error) fuse.Status {
	if s.err == nil {
		s.err = err
	}
	s.dead = true
	return fuse.EIO
}

// lock takes s.mu and returns the inode id names, or a failure status
// (with s.mu released).
func (s *state) lock(id uint64) (*inode, fuse.Status) {
	s.mu.Lock()
	if s.dead {
		s.mu.Unlock()
		return nil, fuse.EIO
	}
	n, ok := s.ns.nodes[id]
	if !ok {
		s.mu.Unlock()
		return nil, fuse.ENOENT
	}
	return n, fuse.OK
}

// REQUIRES: s.mu held.
func (s *state) attr(n *inode, a *fuse.Attr) {
	*a = fuse.Attr{Ino: n.ino, Mode: n.mode(), Nlink: 1, Blksize: pageSize}
	a.Owner = fuse.Owner{Uid: s.uid, Gid: s.gid}
	switch {
	case n.isDir:
		a.Nlink, a.Size = 2, pageSize
	case n.parent == nil:
		a.Nlink = 0 // unlinked, still open
	}
	if n.data != nil {
		a.Size = uint64(n.data.size)
	}
	a.Blocks = (a.Size + 511) / 512
	a.SetTimes(&n.mtime, &n.mtime, &n.mtime)
}

// REQUIRES: s.mu held.
func (s *state) entry(n *inode, out *fuse.EntryOut) {
	out.NodeId, out.Generation = n.ino, 1
	out.SetEntryTimeout(cacheTimeout)
	out.SetAttrTimeout(cacheTimeout)
	s.attr(n, &out.Attr)
}

// raw serves FUSE requests from a state. Operations it does not implement
// (links, symlinks, extended attributes, locks: the kernel keeps flock and
// POSIX locks locally) answer ENOSYS, or what the kernel makes of that.
type raw struct {
	fuse.RawFileSystem
	s *state
}

func (r *raw) String() string { return "powercutfs" }

func (r *raw) Lookup(_ <-chan struct{}, h *fuse.InHeader, name string, out *fuse.EntryOut) fuse.Status {
	d, st := r.s.lock(h.NodeId)
	if !st.Ok() {
		return st
	}
	defer r.s.mu.Unlock()
	if !d.isDir {
		return fuse.ENOTDIR
	}
	n, ok := d.kids[name]
	if !ok {
		return fuse.ENOENT
	}
	r.s.entry(n, out)
	return fuse.OK
}

func (r *raw) GetAttr(_ <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	n, st := r.s.lock(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer r.s.mu.Unlock()
	r.s.attr(n, &out.Attr)
	out.SetTimeout(cacheTimeout)
	return fuse.OK
}

func (r *raw) SetAttr(_ <-chan struct{}, in *fuse.SetAttrIn, out *fuse.AttrOut) fuse.Status {
	n, st := r.s.lock(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer r.s.mu.Unlock()
	if size, ok := in.GetSize(); ok {
		if n.isDir {
			return fuse.Status(syscall.EISDIR)
		}
		if err := n.data.truncate(int64(size)); err != nil {
			return fuse.EINVAL
		}
		n.mtime = time.Now()
	}
	if perm, ok := in.GetMode(); ok {
		n.perm = perm & 0o777
	}
	if t, ok := in.GetMTime(); ok {
		n.mtime = t
	}
	r.s.attr(n, &out.Attr)
	out.SetTimeout(cacheTimeout)
	return fuse.OK
}

// newEntry checks that name can be created in directory d.
// REQUIRES: s.mu held.
func newEntry(d *inode, name string) fuse.Status {
	switch {
	case !d.isDir:
		return fuse.ENOTDIR
	case d.kids[name] != nil:
		return fuse.Status(syscall.EEXIST)
	}
	return fuse.OK
}

// create makes a regular file: its backing file starts in the orphan area
// and is linked into the backing tree when its create op is made durable.
// REQUIRES: s.mu held.
func (s *state) create(d *inode, name string, perm uint32) (*inode, fuse.Status) {
	if st := newEntry(d, name); !st.Ok() {
		return nil, st
	}
	n := s.ns.newInode(false, perm&0o777)
	f, err := os.OpenFile(s.ns.orphanPath(n), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		delete(s.ns.nodes, n.ino)
		return nil, s.fail(err)
	}
	n.data = newFileData(0)
	n.data.back = f
	s.ns.link(d, name, n)
	s.ns.meta = append(s.ns.meta, metaOp{kind: metaCreate, n: n, dir: d, name: name})
	d.mtime = time.Now()
	return n, fuse.OK
}

func (r *raw) Create(_ <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	d, st := r.s.lock(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer r.s.mu.Unlock()
	n, st := r.s.create(d, name, in.Mode)
	if !st.Ok() {
		return st
	}
	r.s.entry(n, &out.EntryOut)
	out.OpenOut = fuse.OpenOut{OpenFlags: openFlags}
	return fuse.OK
}

func (r *raw) Mknod(_ <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	if in.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return fuse.EPERM // only regular files and directories are modelled
	}
	d, st := r.s.lock(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer r.s.mu.Unlock()
	n, st := r.s.create(d, name, in.Mode)
	if !st.Ok() {
		return st
	}
	r.s.entry(n, out)
	return fuse.OK
}

func (r *raw) Mkdir(_ <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	d, st := r.s.lock(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer r.s.mu.Unlock()
	if st := newEntry(d, name); !st.Ok() {
		return st
	}
	n := r.s.ns.newInode(true, in.Mode&0o777)
	r.s.ns.link(d, name, n)
	r.s.ns.meta = append(r.s.ns.meta, metaOp{kind: metaMkdir, n: n, dir: d, name: name})
	d.mtime = time.Now()
	r.s.entry(n, out)
	return fuse.OK
}

func (r *raw) Unlink(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return r.remove(h.NodeId, name, false)
}

func (r *raw) Rmdir(_ <-chan struct{}, h *fuse.InHeader, name string) fuse.Status {
	return r.remove(h.NodeId, name, true)
}

func (r *raw) remove(dirID uint64, name string, isDir bool) fuse.Status {
	d, st := r.s.lock(dirID)
	if !st.Ok() {
		return st
	}
	defer r.s.mu.Unlock()
	if !d.isDir {
		return fuse.ENOTDIR
	}
	n, ok := d.kids[name]
	switch {
	case !ok:
		return fuse.ENOENT
	case isDir && !n.isDir:
		return fuse.ENOTDIR
	case !isDir && n.isDir:
		return fuse.Status(syscall.EISDIR)
	case isDir && len(n.kids) > 0:
		return fuse.Status(syscall.ENOTEMPTY)
	}
	kind := metaUnlink
	if isDir {
		kind = metaRmdir
	}
	r.s.ns.unlink(n)
	r.s.ns.meta = append(r.s.ns.meta, metaOp{kind: kind, n: n, dir: d, name: name})
	d.mtime = time.Now()
	return fuse.OK
}

func (r *raw) Rename(_ <-chan struct{}, in *fuse.RenameIn, oldName, newName string) fuse.Status {
	if in.Flags&^unix.RENAME_NOREPLACE != 0 {
		return fuse.EINVAL // RENAME_EXCHANGE and RENAME_WHITEOUT are not modelled
	}
	d, st := r.s.lock(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer r.s.mu.Unlock()
	nd, ok := r.s.ns.nodes[in.Newdir]
	if !ok {
		return fuse.ENOENT
	}
	if !d.isDir || !nd.isDir {
		return fuse.ENOTDIR
	}
	n, ok := d.kids[oldName]
	if !ok {
		return fuse.ENOENT
	}
	for a := nd; a != nil; a = a.parent {
		if a == n {
			return fuse.EINVAL // into its own subtree
		}
	}
	old := nd.kids[newName]
	switch {
	case old == n:
		return fuse.OK
	case old == nil:
	case in.Flags&unix.RENAME_NOREPLACE != 0:
		return fuse.Status(syscall.EEXIST)
	case n.isDir && !old.isDir:
		return fuse.ENOTDIR
	case !n.isDir && old.isDir:
		return fuse.Status(syscall.EISDIR)
	case old.isDir && len(old.kids) > 0:
		return fuse.Status(syscall.ENOTEMPTY)
	}
	if old != nil {
		r.s.ns.unlink(old)
	}
	r.s.ns.unlink(n)
	r.s.ns.link(nd, newName, n)
	op := metaOp{kind: metaRename, n: n, dir: d, name: oldName, newDir: nd, newName: newName, replaced: old}
	op.replacedD = old != nil && old.isDir
	r.s.ns.meta = append(r.s.ns.meta, op)
	now := time.Now()
	d.mtime, nd.mtime = now, now
	return fuse.OK
}

func (r *raw) Link(_ <-chan struct{}, _ *fuse.LinkIn, _ string, _ *fuse.EntryOut) fuse.Status {
	return fuse.EPERM // hard links are not modelled
}

func (r *raw) Symlink(_ <-chan struct{}, _ *fuse.InHeader, _, _ string, _ *fuse.EntryOut) fuse.Status {
	return fuse.EPERM // symbolic links are not modelled
}

func (r *raw) Access(_ <-chan struct{}, in *fuse.AccessIn) fuse.Status {
	_, st := r.s.lock(in.NodeId)
	if st.Ok() {
		r.s.mu.Unlock()
	}
	return st
}

func (r *raw) Open(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	n, st := r.s.lock(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer r.s.mu.Unlock()
	if n.isDir {
		return fuse.Status(syscall.EISDIR)
	}
	if in.Flags&syscall.O_TRUNC != 0 {
		if err := n.data.truncate(0); err != nil {
			return r.s.fail(err)
		}
	}
	*out = fuse.OpenOut{OpenFlags: openFlags}
	return fuse.OK
}

// file returns the open data of regular file id, with s.mu held.
func (s *state) file(id uint64) (*fileData, fuse.Status) {
	n, st := s.lock(id)
	if !st.Ok() {
		return nil, st
	}
	if n.isDir {
		s.mu.Unlock()
		return nil, fuse.Status(syscall.EISDIR)
	}
	d, err := s.ns.backing(n)
	if err != nil {
		st := s.fail(err)
		s.mu.Unlock()
		return nil, st
	}
	return d, fuse.OK
}

func (r *raw) Read(_ <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	d, st := r.s.file(in.NodeId)
	if !st.Ok() {
		return nil, st
	}
	defer r.s.mu.Unlock()
	size := min(len(buf), int(in.Size))
	if f := r.s.readFault(r.s.ns.nodes[in.NodeId], int64(in.Offset), int64(size)); f != nil {
		// The whole request fails: a short answer would read as the end
		// of the file, and the kernel would zero-fill the rest of the page.
		f.failed.Add(1)
		return nil, fuse.EIO
	}
	k, err := d.read(buf[:size], int64(in.Offset))
	if err != nil {
		return nil, r.s.fail(err)
	}
	return fuse.ReadResultData(buf[:k]), fuse.OK
}

func (r *raw) Write(_ <-chan struct{}, in *fuse.WriteIn, data []byte) (uint32, fuse.Status) {
	d, st := r.s.file(in.NodeId)
	if !st.Ok() {
		return 0, st
	}
	defer r.s.mu.Unlock()
	if err := d.write(data, int64(in.Offset)); err != nil {
		return 0, r.s.fail(err)
	}
	r.s.ns.nodes[in.NodeId].mtime = time.Now()
	return uint32(len(data)), fuse.OK
}

func (r *raw) Flush(_ <-chan struct{}, _ *fuse.FlushIn) fuse.Status { return fuse.OK }

func (r *raw) Release(_ <-chan struct{}, _ *fuse.ReleaseIn) {}

// Fsync makes the file's unsynced writes and size changes durable. fsync
// and fdatasync are the same here, and neither makes the file's name
// durable: that takes an fsync of its directory. An armed FsyncFault for
// the file's name fails it instead, dropping the unsynced changes.
func (r *raw) Fsync(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	d, st := r.s.file(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer r.s.mu.Unlock()
	n := r.s.ns.nodes[in.NodeId]
	if f := r.s.takeFault(n); f != nil {
		f.fire(r.s.ns.currentPath(n), in.FsyncFlags&fsyncDatasync != 0, d.drop())
		return fuse.EIO
	}
	if err := d.sync(); err != nil {
		return r.s.fail(err)
	}
	return fuse.OK
}

// Fallocate models mode 0 as a size change (allocation itself is not
// modelled: the backing file is sparse) and FALLOC_FL_KEEP_SIZE as nothing.
func (r *raw) Fallocate(_ <-chan struct{}, in *fuse.FallocateIn) fuse.Status {
	if in.Mode != 0 && in.Mode != unix.FALLOC_FL_KEEP_SIZE {
		return fuse.Status(syscall.EOPNOTSUPP)
	}
	d, st := r.s.file(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer r.s.mu.Unlock()
	end := int64(in.Offset + in.Length)
	if in.Mode == 0 && end > d.size {
		if err := d.truncate(end); err != nil {
			return r.s.fail(err)
		}
	}
	return fuse.OK
}

func (r *raw) OpenDir(_ <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	d, st := r.s.lock(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer r.s.mu.Unlock()
	if !d.isDir {
		return fuse.ENOTDIR
	}
	// The handle lists the directory as it was at open.
	parent := d.parent
	if parent == nil {
		parent = d
	}
	ents := []fuse.DirEntry{
		{Name: ".", Mode: syscall.S_IFDIR, Ino: d.ino},
		{Name: "..", Mode: syscall.S_IFDIR, Ino: parent.ino},
	}
	for name, n := range d.kids {
		ents = append(ents, fuse.DirEntry{Name: name, Mode: n.mode(), Ino: n.ino})
	}
	slices.SortFunc(ents[2:], func(a, b fuse.DirEntry) int {
		switch {
		case a.Name < b.Name:
			return -1
		case a.Name > b.Name:
			return 1
		}
		return 0
	})
	r.s.nextFh++
	if r.s.dirs == nil {
		r.s.dirs = map[uint64][]fuse.DirEntry{}
	}
	r.s.dirs[r.s.nextFh] = ents
	*out = fuse.OpenOut{Fh: r.s.nextFh}
	return fuse.OK
}

func (r *raw) ReadDir(_ <-chan struct{}, in *fuse.ReadIn, out *fuse.DirEntryList) fuse.Status {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	if r.s.dead {
		return fuse.EIO
	}
	ents, ok := r.s.dirs[in.Fh]
	if !ok {
		return fuse.EBADF
	}
	for i := int(min(in.Offset, uint64(len(ents)))); i < len(ents); i++ {
		e := ents[i]
		e.Off = uint64(i + 1)
		if !out.AddDirEntry(e) {
			break
		}
	}
	return fuse.OK
}

func (r *raw) ReleaseDir(in *fuse.ReleaseIn) {
	r.s.mu.Lock()
	defer r.s.mu.Unlock()
	delete(r.s.dirs, in.Fh)
}

// FsyncDir makes the directory's unsynced entry changes durable, and with
// them every namespace change made before the last of those (one ordered
// journal, as ext4 and XFS keep).
func (r *raw) FsyncDir(_ <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	d, st := r.s.lock(in.NodeId)
	if !st.Ok() {
		return st
	}
	defer r.s.mu.Unlock()
	if err := r.s.ns.commitThrough(d); err != nil {
		return r.s.fail(err)
	}
	return fuse.OK
}

func (r *raw) StatFs(_ <-chan struct{}, h *fuse.InHeader, out *fuse.StatfsOut) fuse.Status {
	r.s.mu.Lock()
	tree, dead := "", r.s.dead
	if !dead {
		tree = r.s.ns.tree
	}
	r.s.mu.Unlock()
	if dead {
		return fuse.EIO
	}
	var st unix.Statfs_t
	if err := unix.Statfs(tree, &st); err != nil {
		return fuse.ToStatus(err)
	}
	*out = fuse.StatfsOut{
		Blocks: st.Blocks, Bfree: st.Bfree, Bavail: st.Bavail, Files: st.Files, Ffree: st.Ffree,
		Bsize: uint32(st.Bsize), NameLen: uint32(st.Namelen), Frsize: uint32(st.Frsize),
	}
	return fuse.OK
}
