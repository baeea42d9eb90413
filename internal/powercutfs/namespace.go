package powercutfs

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"
)

// inode is a file or directory of the mounted tree.
type inode struct {
	ino   uint64 // also the kernel's node id; never reused within a mount
	isDir bool
	perm  uint32    // permission bits; in memory only (not modelled)
	mtime time.Time // in memory only (not modelled)

	// The current namespace: what the mount shows.
	parent *inode // nil: the root, or unlinked
	name   string
	kids   map[string]*inode // directories only

	// The durable namespace: where the inode is in the backing tree.
	// dparent == nil (other than for the root): a file's backing file is
	// in the orphan area (created but not yet durably linked, or durably
	// unlinked); a directory has no backing directory.
	dparent *inode
	dname   string

	data *fileData // regular files only
}

// metaKind is the kind of a namespace operation.
type metaKind int

const (
	metaCreate metaKind = iota + 1 // a regular file
	metaMkdir
	metaUnlink
	metaRmdir
	metaRename
)

// metaOp is one unsynced namespace operation, recorded in the order the
// mount performed it.
type metaOp struct {
	kind      metaKind
	n         *inode
	dir       *inode // the directory of the entry (rename: of the old one)
	name      string
	newDir    *inode // rename only
	newName   string // rename only
	replaced  *inode // rename only: the inode the new name pointed to, if any
	replacedD bool   // replaced is a directory
}

// involves reports whether op changed an entry of directory d.
func (op metaOp) involves(d *inode) bool {
	return op.dir == d || op.newDir == d
}

// namespace is the tree of one mount and its backing tree. It does no
// locking; its owner serialises every call.
//
// Invariant: applying meta, in order, to the backing tree turns the durable
// namespace into the current one. Each applied op finds the backing tree
// exactly as the mount's tree was just before the op was performed (every
// earlier op was applied before it), which is why ops are only ever made
// durable, or kept by a cut, as a prefix.
type namespace struct {
	tree    string // backing directory of the root
	orphans string // backing directory of unlinked and not yet linked files
	nodes   map[uint64]*inode
	root    *inode
	nextIno uint64
	meta    []metaOp
}

// loadNamespace builds the tree from the backing tree, which holds the
// durable state only, and empties the orphan area: what was there was
// never durably linked, or durably unlinked, and a real filesystem frees
// it on mount.
func loadNamespace(tree, orphans string) (*namespace, error) {
	if err := os.RemoveAll(orphans); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(orphans, 0o700); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(tree, 0o755); err != nil {
		return nil, err
	}
	ns := &namespace{tree: tree, orphans: orphans, nodes: map[uint64]*inode{}, nextIno: 1}
	st, err := os.Stat(tree)
	if err != nil {
		return nil, err
	}
	ns.root = ns.newInode(true, uint32(st.Mode().Perm()))
	ns.root.mtime = st.ModTime()
	if err := ns.loadDir(ns.root, tree); err != nil {
		return nil, err
	}
	return ns, nil
}

func (ns *namespace) loadDir(d *inode, path string) error {
	ents, err := os.ReadDir(path)
	if err != nil {
		return err
	}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			return err
		}
		var n *inode
		switch {
		case info.IsDir():
			n = ns.newInode(true, uint32(info.Mode().Perm()))
		case info.Mode().IsRegular():
			n = ns.newInode(false, uint32(info.Mode().Perm()))
			n.data = newFileData(info.Size())
		default:
			return fmt.Errorf("powercutfs: %s: only regular files and directories are modelled", filepath.Join(path, e.Name()))
		}
		n.mtime = info.ModTime()
		ns.link(d, e.Name(), n)
		n.dparent, n.dname = d, e.Name()
		if n.isDir {
			if err := ns.loadDir(n, filepath.Join(path, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

func (ns *namespace) newInode(isDir bool, perm uint32) *inode {
	n := &inode{ino: ns.nextIno, isDir: isDir, perm: perm, mtime: time.Now()}
	if isDir {
		n.kids = map[string]*inode{}
	}
	ns.nextIno++
	ns.nodes[n.ino] = n
	return n
}

// link and unlink change the current namespace only.
func (ns *namespace) link(d *inode, name string, n *inode) {
	d.kids[name] = n
	n.parent, n.name = d, name
}

func (ns *namespace) unlink(n *inode) {
	delete(n.parent.kids, n.name)
	n.parent, n.name = nil, ""
}

// currentPath is n's path in the mount, relative to its root ("" for the
// root, or for an unlinked inode).
func (ns *namespace) currentPath(n *inode) string {
	var names []string
	for ; n.parent != nil; n = n.parent {
		names = append(names, n.name)
	}
	if n != ns.root {
		return ""
	}
	slices.Reverse(names)
	return filepath.Join(names...)
}

// durablePath is where n is in the backing tree ("" for a directory that
// has none).
func (ns *namespace) durablePath(n *inode) string {
	switch {
	case n == ns.root:
		return ns.tree
	case n.dparent != nil:
		p := ns.durablePath(n.dparent)
		if p == "" {
			return ""
		}
		return filepath.Join(p, n.dname)
	case n.isDir:
		return ""
	}
	return ns.orphanPath(n)
}

func (ns *namespace) orphanPath(n *inode) string {
	return filepath.Join(ns.orphans, strconv.FormatUint(n.ino, 10))
}

// entryPath is the backing path of the entry name in directory d, which
// must have a backing directory.
func (ns *namespace) entryPath(d *inode, name string) (string, error) {
	p := ns.durablePath(d)
	if p == "" {
		return "", fmt.Errorf("powercutfs: internal error: directory %d has no backing directory", d.ino)
	}
	return filepath.Join(p, name), nil
}

// commitThrough makes durable every pending op up to and including the last
// one that involves directory d: what fsync of d does here.
func (ns *namespace) commitThrough(d *inode) error {
	last := -1
	for i, op := range ns.meta {
		if op.involves(d) {
			last = i
		}
	}
	return ns.commit(last + 1)
}

// commit applies the first k pending ops to the backing tree and forgets
// them.
func (ns *namespace) commit(k int) error {
	for i, op := range ns.meta[:k] {
		if err := ns.apply(op); err != nil {
			ns.meta = slices.Delete(ns.meta, 0, i)
			return err
		}
	}
	ns.meta = slices.Delete(ns.meta, 0, k)
	return nil
}

// apply performs op on the backing tree.
func (ns *namespace) apply(op metaOp) error {
	switch op.kind {
	case metaCreate:
		dst, err := ns.entryPath(op.dir, op.name)
		if err != nil {
			return err
		}
		if err := os.Rename(ns.orphanPath(op.n), dst); err != nil {
			return fmt.Errorf("powercutfs: link %s: %w", dst, err)
		}
		op.n.dparent, op.n.dname = op.dir, op.name
	case metaMkdir:
		dst, err := ns.entryPath(op.dir, op.name)
		if err != nil {
			return err
		}
		if err := os.Mkdir(dst, os.FileMode(op.n.perm)|0o700); err != nil {
			return fmt.Errorf("powercutfs: mkdir %s: %w", dst, err)
		}
		op.n.dparent, op.n.dname = op.dir, op.name
	case metaUnlink:
		if err := ns.toOrphan(op.n, op.dir, op.name); err != nil {
			return err
		}
	case metaRmdir:
		if err := ns.removeDir(op.n, op.dir, op.name); err != nil {
			return err
		}
	case metaRename:
		if op.replaced != nil {
			var err error
			if op.replacedD {
				err = ns.removeDir(op.replaced, op.newDir, op.newName)
			} else {
				err = ns.toOrphan(op.replaced, op.newDir, op.newName)
			}
			if err != nil {
				return err
			}
		}
		src, err := ns.expect(op.n, op.dir, op.name)
		if err != nil {
			return err
		}
		dst, err := ns.entryPath(op.newDir, op.newName)
		if err != nil {
			return err
		}
		if err := os.Rename(src, dst); err != nil {
			return fmt.Errorf("powercutfs: rename %s to %s: %w", src, dst, err)
		}
		op.n.dparent, op.n.dname = op.newDir, op.newName
	default:
		return fmt.Errorf("powercutfs: internal error: metadata op kind %d", op.kind)
	}
	return nil
}

// expect returns n's backing path, checking that it is d/name there: the
// invariant that makes applying ops in order sound.
func (ns *namespace) expect(n, d *inode, name string) (string, error) {
	if n.dparent != d || n.dname != name {
		return "", fmt.Errorf("powercutfs: internal error: inode %d is not durably %q in directory %d", n.ino, name, d.ino)
	}
	return ns.entryPath(d, name)
}

func (ns *namespace) toOrphan(n, d *inode, name string) error {
	src, err := ns.expect(n, d, name)
	if err != nil {
		return err
	}
	if err := os.Rename(src, ns.orphanPath(n)); err != nil {
		return fmt.Errorf("powercutfs: unlink %s: %w", src, err)
	}
	n.dparent, n.dname = nil, ""
	return nil
}

func (ns *namespace) removeDir(n, d *inode, name string) error {
	src, err := ns.expect(n, d, name)
	if err != nil {
		return err
	}
	if err := os.Remove(src); err != nil {
		return fmt.Errorf("powercutfs: rmdir %s: %w", src, err)
	}
	n.dparent, n.dname = nil, ""
	return nil
}

// backing returns n's open backing file, opening it on first use.
func (ns *namespace) backing(n *inode) (*fileData, error) {
	if n.data.back != nil {
		return n.data, nil
	}
	f, err := os.OpenFile(ns.durablePath(n), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("powercutfs: open backing file: %w", err)
	}
	n.data.back = f
	return n.data, nil
}

// closeAll closes every backing file.
func (ns *namespace) closeAll() error {
	var first error
	for _, n := range ns.nodes {
		if n.data != nil && n.data.back != nil {
			if err := n.data.back.Close(); err != nil && first == nil {
				first = err
			}
			n.data.back = nil
		}
	}
	return first
}

// sortedInos returns the inode numbers in order, so that a cut decides the
// same way for the same seed whatever the map's order.
func (ns *namespace) sortedInos() []uint64 {
	inos := make([]uint64, 0, len(ns.nodes))
	for ino := range ns.nodes {
		inos = append(inos, ino)
	}
	slices.Sort(inos)
	return inos
}

// mode is n's st_mode.
func (n *inode) mode() uint32 {
	if n.isDir {
		return syscall.S_IFDIR | n.perm
	}
	return syscall.S_IFREG | n.perm
}
