package powercutfs

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// Mode is how a cut treats what was not yet synced.
type Mode int

const (
	// DropAll loses every unsynced write, size change and namespace
	// operation.
	DropAll Mode = iota + 1
	// KeepRandom keeps each unsynced write and size change with
	// probability 1/2, applied in their order, and a random prefix
	// (possibly empty or whole) of the unsynced namespace operations.
	KeepRandom
	// Tear is KeepRandom, and then each kept write is torn with
	// probability 1/2: only a prefix of its sectors (possibly none) lands,
	// and with probability 1/2 the sector after that prefix reads back as
	// garbage.
	Tear
)

// Modes lists every Mode.
func Modes() []Mode { return []Mode{DropAll, KeepRandom, Tear} }

func (m Mode) String() string {
	switch m {
	case DropAll:
		return "drop-all"
	case KeepRandom:
		return "keep-random"
	case Tear:
		return "tear"
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// Report says what a cut did.
type Report struct {
	Mode Mode
	Seed uint64
	// DataOps unsynced writes and size changes were pending at the cut:
	// Kept landed whole, Torn in part (Garbage of those left a garbage
	// sector), Dropped not at all.
	DataOps, Kept, Torn, Garbage, Dropped int
	// MetaOps unsynced namespace operations were pending; the first
	// MetaKept of them landed.
	MetaOps, MetaKept int
}

func (r Report) String() string {
	return fmt.Sprintf("%v cut (seed %d): of %d unsynced writes and size changes %d kept, %d torn (%d with a garbage sector), %d dropped; of %d namespace operations the first %d kept",
		r.Mode, r.Seed, r.DataOps, r.Kept, r.Torn, r.Garbage, r.Dropped, r.MetaOps, r.MetaKept)
}

// plan makes a cut's random decisions, all from one seeded source, in the
// order the cut asks (inodes by number, ops in their order): the same
// seed and the same pending state give the same cut.
type plan struct {
	mode Mode
	rng  *rand.Rand
	rep  *Report
}

func newPlan(mode Mode, seed uint64, rep *Report) *plan {
	return &plan{mode: mode, rng: rand.New(rand.NewPCG(seed, 0x706f77657263757)), rep: rep}
}

// keep decides whether an unsynced change reaches the disk.
func (p *plan) keep() bool { return p.mode != DropAll && p.rng.IntN(2) == 0 }

// tear decides how many of a kept write's sectors (pieces) land whole, and
// whether the next one is garbage. whole == sectors: not torn.
func (p *plan) tear(sectors int) (whole int, garbage bool) {
	if p.mode != Tear || p.rng.IntN(2) == 0 {
		return sectors, false
	}
	return p.rng.IntN(sectors), p.rng.IntN(2) == 0
}

// metaPrefix decides how many of n pending namespace ops land.
func (p *plan) metaPrefix(n int) int {
	if p.mode == DropAll {
		return 0
	}
	return p.rng.IntN(n + 1)
}

// FS is one mount of a backing directory. Its methods are for one
// goroutine (the test's); the FUSE server it owns runs its own, which stop
// when the mount is unmounted (Cut or Unmount).
type FS struct {
	dir     string
	srv     *fuse.Server
	served  chan struct{} // closed when the server's loop has returned
	s       *state
	cut     bool // Cut was called
	mounted bool // the server has not been stopped
}

// errDead: Cut on an FS that was already cut or unmounted.
var errDead = errors.New("powercutfs: the file system was cut or unmounted")

// Options configure a mount.
type Options struct {
	// Debug logs every FUSE request (go-fuse's log).
	Debug bool
}

// Available returns nil if this machine can mount a powercutfs, or why not.
func Available() error {
	f, err := os.OpenFile("/dev/fuse", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("powercutfs: %w", err)
	}
	f.Close()
	if os.Geteuid() == 0 {
		return nil // mounts with mount(2); fusermount is the fallback
	}
	for _, bin := range []string{"fusermount3", "fusermount"} {
		if _, err := exec.LookPath(bin); err == nil {
			return nil
		}
	}
	return errors.New("powercutfs: not root, and neither fusermount3 nor fusermount is in PATH")
}

// Mount serves the durable state in backing (created if missing) at dir,
// an empty directory. Anything backing holds outside its own layout (the
// tree and the orphan area) is refused.
func Mount(backing, dir string, opt Options) (*FS, error) {
	ns, err := loadNamespace(filepath.Join(backing, "tree"), filepath.Join(backing, "orphans"))
	if err != nil {
		return nil, fmt.Errorf("powercutfs: load %s: %w", backing, err)
	}
	s := &state{uid: uint32(os.Getuid()), gid: uint32(os.Getgid()), ns: ns}
	srv, err := fuse.NewServer(&raw{RawFileSystem: fuse.NewDefaultRawFileSystem(), s: s}, dir, &fuse.MountOptions{
		FsName:      "powercutfs:" + backing,
		Name:        "powercutfs",
		DirectMount: true,
		// See openFlags: the kernel must not drop cached pages because a
		// file's mtime or size changed; it saw every change itself.
		ExplicitDataCacheControl: true,
		DisableXAttrs:            true,
		DisableReadDirPlus:       true,
		Debug:                    opt.Debug,
	})
	if err != nil {
		ns.closeAll()
		return nil, fmt.Errorf("powercutfs: mount %s: %w", dir, err)
	}
	fs := &FS{dir: dir, srv: srv, served: make(chan struct{}), s: s, mounted: true}
	go func() {
		defer close(fs.served)
		srv.Serve()
	}()
	if err := srv.WaitMount(); err != nil {
		fs.stop()
		return nil, fmt.Errorf("powercutfs: mount %s: %w", dir, err)
	}
	return fs, nil
}

// Dir returns the mount point.
func (fs *FS) Dir() string { return fs.dir }

// Cut is a power cut. At once every operation on the mount starts to fail
// with EIO; then mode and seed decide what of the unsynced state reaches
// the backing directory (see Mode), the rest is lost, and the mount is
// unmounted. Stop the processes using the mount first, or the unmount
// fails (the cut itself has happened all the same, and Unmount may be
// tried again). Mount the backing directory again to see what survived.
//
// The error is also the first failure, if any, of the backing directory
// or of the model's own invariants while the mount served.
func (fs *FS) Cut(mode Mode, seed uint64) (Report, error) {
	rep := Report{Mode: mode, Seed: seed}
	if mode < DropAll || mode > Tear {
		return rep, fmt.Errorf("powercutfs: cut: unknown mode %v", mode)
	}
	if fs.cut || !fs.mounted {
		return rep, errDead
	}
	fs.cut = true
	s := fs.s
	s.mu.Lock()
	s.dead = true
	err := s.err
	if err == nil {
		err = s.cut(newPlan(mode, seed, &rep))
	}
	if cerr := s.ns.closeAll(); err == nil {
		err = cerr
	}
	s.mu.Unlock()
	if uerr := fs.stop(); err == nil {
		err = uerr
	}
	return rep, err
}

// cut applies p to the pending state.
// REQUIRES: s.mu held.
func (s *state) cut(p *plan) error {
	ns := s.ns
	p.rep.MetaOps = len(ns.meta)
	p.rep.MetaKept = p.metaPrefix(len(ns.meta))
	if err := ns.commit(p.rep.MetaKept); err != nil {
		return err
	}
	ns.meta = nil
	for _, ino := range ns.sortedInos() {
		n := ns.nodes[ino]
		if n.data == nil || !n.data.pending() {
			continue
		}
		d, err := ns.backing(n)
		if err != nil {
			return err
		}
		if err := d.cut(p); err != nil {
			return err
		}
	}
	return nil
}

// Unmount unmounts. Like a real filesystem's clean unmount it makes
// everything still unsynced durable (after a Cut there is nothing left).
// Stop the processes using the mount first. Unmounting an unmounted FS
// does nothing.
func (fs *FS) Unmount() error {
	if !fs.mounted {
		return nil
	}
	// Stop the server first: once it has stopped nothing can change.
	if err := fs.stop(); err != nil {
		return err
	}
	if fs.cut {
		return nil
	}
	s := fs.s
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dead = true
	err := s.err
	if err == nil {
		err = s.syncAll()
	}
	if cerr := s.ns.closeAll(); err == nil {
		err = cerr
	}
	return err
}

// syncAll makes everything unsynced durable.
// REQUIRES: s.mu held.
func (s *state) syncAll() error {
	if err := s.ns.commit(len(s.ns.meta)); err != nil {
		return err
	}
	for _, ino := range s.ns.sortedInos() {
		n := s.ns.nodes[ino]
		if n.data == nil || !n.data.pending() {
			continue
		}
		d, err := s.ns.backing(n)
		if err != nil {
			return err
		}
		if err := d.sync(); err != nil {
			return err
		}
	}
	return nil
}

// stop unmounts and waits for the server's goroutines to end.
func (fs *FS) stop() error {
	if err := fs.srv.Unmount(); err != nil {
		return fmt.Errorf("powercutfs: unmount %s: %w", fs.dir, err)
	}
	<-fs.served
	fs.mounted = false
	return nil
}

// Pending returns how many writes and size changes, and how many namespace
// operations, are unsynced now.
func (fs *FS) Pending() (data, meta int) {
	s := fs.s
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.ns.nodes {
		if n.data != nil {
			data += len(n.data.log)
		}
	}
	return data, len(s.ns.meta)
}
