package catalog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// layoutVersion is the bucket layout this build reads and writes. Layout 2
// added the requests, requests-by-index and members buckets to layout 1;
// Open and Restore upgrade a layout-1 file (see migrateLayout).
const layoutVersion = 2

// layoutV1 is the layout of releases before request deduplication.
const layoutV1 = 1

// Bucket names and meta keys (frozen: see the package documentation).
const (
	bucketMeta     = "meta"
	bucketBlobs    = "blobs"
	bucketResv     = "reservations"
	bucketDeadline = "reservations-by-deadline"
	bucketSettings = "settings"
	bucketLocal    = "local"
	// Layout 2.
	bucketRequests     = "requests"
	bucketRequestIndex = "requests-by-index"
	bucketMembers      = "members"

	metaLayout    = "layout"
	metaApplied   = "applied-index"
	metaBlobCount = "blob-count"
)

// replicatedBuckets are the buckets a snapshot carries.
func replicatedBuckets() []string {
	return []string{bucketMeta, bucketBlobs, bucketResv, bucketDeadline, bucketSettings,
		bucketRequests, bucketRequestIndex, bucketMembers}
}

// layout2Buckets are the buckets layout 2 added to layout 1.
func layout2Buckets() []string {
	return []string{bucketRequests, bucketRequestIndex, bucketMembers}
}

// allBuckets are the buckets every catalog file holds.
func allBuckets() []string {
	return append(replicatedBuckets(), bucketLocal)
}

// restoreTempInfix names the temporary files Restore writes next to the
// catalog; Open removes leftovers from an interrupted Restore.
const restoreTempInfix = ".restore-"

// defaultInitialMmapSize lets a long-lived snapshot read transaction coexist
// with writers: bbolt must remap to grow the file, and a remap waits for every
// open read transaction. The mapping is address space, not memory or disk.
const defaultInitialMmapSize = 1 << 30

// Options configure Open.
type Options struct {
	// NoSync skips the fdatasync at the end of every Update. The state
	// machine then relies on the Raft log for durability and calls Sync
	// before a Raft snapshot is taken (see DESIGN.md, Durability).
	NoSync bool
	// Timeout bounds the wait for the file lock held by another process;
	// zero waits forever.
	Timeout time.Duration
	// InitialMmapSize overrides the initial size of bbolt's mapping
	// (default 1 GiB). A write that outgrows the mapping waits for open
	// snapshots to be released.
	InitialMmapSize int
}

func (o Options) bolt() *bbolt.Options {
	size := o.InitialMmapSize
	if size == 0 {
		size = defaultInitialMmapSize
	}
	return &bbolt.Options{
		Timeout: o.Timeout,
		NoSync:  o.NoSync,
		// Without NoSync's syncs, none on growth either: bbolt fsyncs the
		// file when a commit grows it, and that fsync would be told (once:
		// Linux reports a writeback error to one fsync) of an earlier
		// commit's pages the kernel failed to write. The commit would fail
		// and its retry, the file already grown, succeed: the loss never
		// reaches Sync, whose failure stops the node before a stop is
		// called clean. So Sync is the only fsync of a NoSync catalog.
		NoGrowSync:      o.NoSync,
		InitialMmapSize: size,
		FreelistType:    bbolt.FreelistMapType,
	}
}

// DB is an open catalog file.
//
// Update, View, Sync and BeginSnapshot may be called from any goroutine;
// bbolt serialises writers and lets readers run alongside. Restore and Close
// wait for calls in progress to return. Do not call one DB method from inside
// a function passed to Update or View: it can deadlock against a pending
// Restore or Close.
type DB struct {
	path string
	opts Options

	// mu is held shared for the whole of Update, View, Sync and
	// BeginSnapshot, and exclusively while Restore swaps the file and while
	// Close runs. It guards cur and err.
	mu  sync.RWMutex
	cur *generation // nil once closed or broken
	err error       // why cur is nil; wraps ErrClosed

	commits atomic.Uint64 // read-write transactions committed by Update
}

// generation is one open bbolt file. Restore replaces the current generation;
// a replaced one is closed when its last snapshot is released.
type generation struct {
	bdb *bbolt.DB

	mu      sync.Mutex // guards snaps and retired
	snaps   int        // snapshots holding a read transaction on bdb
	retired bool       // no new transactions; close bdb when snaps reaches 0
}

// acquire registers a snapshot. REQUIRES: DB.mu held (shared is enough), so
// the generation cannot be retired concurrently.
func (g *generation) acquire() {
	g.mu.Lock()
	g.snaps++
	g.mu.Unlock()
}

// release unregisters a snapshot, closing a retired file with the last one.
func (g *generation) release() error {
	g.mu.Lock()
	g.snaps--
	closeNow := g.retired && g.snaps == 0
	g.mu.Unlock()
	if closeNow {
		return g.bdb.Close()
	}
	return nil
}

// retire stops new use of the file and closes it now if no snapshot holds it.
// REQUIRES: DB.mu held exclusively.
func (g *generation) retire() error {
	g.mu.Lock()
	g.retired = true
	closeNow := g.snaps == 0
	g.mu.Unlock()
	if closeNow {
		return g.bdb.Close()
	}
	return nil
}

// Open opens the catalog at path, creating and initialising it if the file
// does not exist. It refuses a file with an unknown layout version
// (ErrUnknownLayout) or one missing a bucket (ErrCorrupt), and removes
// temporary files left next to it by an interrupted Restore.
func Open(path string, opts Options) (*DB, error) {
	_, statErr := os.Stat(path)
	bdb, err := openBolt(path, opts.bolt())
	if err != nil {
		return nil, fmt.Errorf("open catalog %s: %w", path, err)
	}
	// Only the holder of the file lock restores, so leftovers are stale.
	if err := removeRestoreLeftovers(path); err != nil {
		return nil, errors.Join(fmt.Errorf("open catalog %s: %w", path, err), bdb.Close())
	}
	if errors.Is(statErr, os.ErrNotExist) {
		// A new file: make its directory entry durable too.
		if err := syncDir(filepath.Dir(path)); err != nil {
			return nil, errors.Join(fmt.Errorf("open catalog %s: sync directory: %w", path, err), bdb.Close())
		}
	}
	return &DB{path: path, opts: opts, cur: &generation{bdb: bdb}}, nil
}

// openBolt opens a bbolt file and initialises or validates the layout.
func openBolt(path string, bopts *bbolt.Options) (*bbolt.DB, error) {
	bdb, err := bbolt.Open(path, 0o600, bopts)
	if err != nil {
		return nil, err
	}
	if err := initLayout(bdb); err != nil {
		return nil, errors.Join(err, bdb.Close())
	}
	return bdb, nil
}

// initLayout creates every bucket in an empty file, and otherwise checks the
// layout version and that every bucket exists.
func initLayout(bdb *bbolt.DB) error {
	empty := true
	err := bdb.View(func(tx *bbolt.Tx) error {
		return tx.ForEach(func([]byte, *bbolt.Bucket) error {
			empty = false
			return nil
		})
	})
	if err != nil {
		return err
	}
	if !empty {
		if err := migrateLayout(bdb); err != nil {
			return err
		}
		if err := bdb.View(checkLayout); err != nil {
			return err
		}
		// A raw snapshot file carries no local bucket of ours: start one.
		return ensureBucket(bdb, bucketLocal)
	}
	return bdb.Update(func(tx *bbolt.Tx) error {
		for _, name := range allBuckets() {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		return tx.Bucket([]byte(bucketMeta)).Put([]byte(metaLayout), binary.BigEndian.AppendUint64(nil, layoutVersion))
	})
}

// checkLayout verifies the layout version and the replicated buckets; the
// local bucket is checked by the caller where it matters (Restore drops it).
func checkLayout(tx *bbolt.Tx) error {
	meta := tx.Bucket([]byte(bucketMeta))
	if meta == nil {
		return fmt.Errorf("%w: no %q bucket: not a catalog file", ErrCorrupt, bucketMeta)
	}
	v := meta.Get([]byte(metaLayout))
	if len(v) != 8 {
		return fmt.Errorf("%w: layout version is %d bytes, want 8", ErrCorrupt, len(v))
	}
	if got := binary.BigEndian.Uint64(v); got != layoutVersion {
		return fmt.Errorf("%w: file has layout %d, this build reads layout %d", ErrUnknownLayout, got, layoutVersion)
	}
	for _, name := range replicatedBuckets() {
		if tx.Bucket([]byte(name)) == nil {
			return fmt.Errorf("%w: bucket %q missing", ErrCorrupt, name)
		}
	}
	return nil
}

// migrateLayout upgrades a layout-1 file to layout 2 in one transaction:
// it creates the (empty) buckets layout 2 added and sets the version. A
// layout-1 node never recorded requests or members, so empty buckets are
// exactly its state in layout 2, and every node that upgrades the same
// catalog holds the same records. A file of any other version, or not a
// catalog, is left untouched for checkLayout to judge. The commit is
// synced whatever the options, so a file that says layout 2 on disk has
// the buckets too.
func migrateLayout(bdb *bbolt.DB) error {
	var v1 bool
	if err := bdb.View(func(tx *bbolt.Tx) error {
		v1 = layoutOf(tx) == layoutV1
		return nil
	}); err != nil || !v1 {
		return err
	}
	err := bdb.Update(func(tx *bbolt.Tx) error {
		for _, name := range layout2Buckets() {
			if _, err := tx.CreateBucket([]byte(name)); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		return tx.Bucket([]byte(bucketMeta)).Put([]byte(metaLayout), binary.BigEndian.AppendUint64(nil, layoutVersion))
	})
	if err != nil {
		return fmt.Errorf("migrate layout %d to %d: %w", layoutV1, layoutVersion, err)
	}
	if err := bdb.Sync(); err != nil {
		return fmt.Errorf("migrate layout %d to %d: sync: %w", layoutV1, layoutVersion, err)
	}
	return nil
}

// layoutOf returns the layout version recorded in tx, or 0 if there is no
// well-formed one.
func layoutOf(tx *bbolt.Tx) uint64 {
	meta := tx.Bucket([]byte(bucketMeta))
	if meta == nil {
		return 0
	}
	v := meta.Get([]byte(metaLayout))
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func ensureBucket(bdb *bbolt.DB, name string) error {
	var exists bool
	if err := bdb.View(func(tx *bbolt.Tx) error {
		exists = tx.Bucket([]byte(name)) != nil
		return nil
	}); err != nil || exists {
		return err
	}
	return bdb.Update(func(tx *bbolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists([]byte(name))
		return err
	})
}

func removeRestoreLeftovers(path string) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), base+restoreTempInfix) && e.Type().IsRegular() {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				return fmt.Errorf("remove restore leftover: %w", err)
			}
		}
	}
	return nil
}

// Path returns the file name given to Open.
func (db *DB) Path() string { return db.path }

// Close closes the catalog. It waits for Update and View calls in progress.
// It does not wait for open snapshots: their file stays open (and locked)
// until the last one is released. Closing twice returns nil.
func (db *DB) Close() error {
	db.mu.Lock()
	defer db.mu.Unlock()
	if db.cur == nil {
		return nil
	}
	g := db.cur
	db.cur, db.err = nil, ErrClosed
	if err := g.retire(); err != nil {
		return fmt.Errorf("close catalog %s: %w", db.path, err)
	}
	return nil
}

// current returns the open generation. REQUIRES: db.mu held.
func (db *DB) current() (*generation, error) {
	if db.cur == nil {
		return nil, db.err
	}
	return db.cur, nil
}

// Update runs fn in one read-write transaction and commits it if fn returns
// nil; any error (or panic) rolls back everything fn wrote. Unless
// Options.NoSync is set, the commit is durable when Update returns.
func (db *DB) Update(fn func(*Tx) error) error {
	db.mu.RLock()
	defer db.mu.RUnlock()
	g, err := db.current()
	if err != nil {
		return err
	}
	err = g.bdb.Update(func(btx *bbolt.Tx) error {
		tx := &Tx{tx: btx}
		defer tx.end()
		if err := fn(tx); err != nil {
			return err
		}
		return tx.flush()
	})
	if err == nil {
		db.commits.Add(1)
	}
	return err
}

// Commits returns how many transactions Update has committed since Open:
// each writes pages (and, without Options.NoSync, syncs the file).
func (db *DB) Commits() uint64 { return db.commits.Load() }

// View runs fn in a read-only transaction that sees one consistent state.
func (db *DB) View(fn func(*Tx) error) error {
	db.mu.RLock()
	defer db.mu.RUnlock()
	g, err := db.current()
	if err != nil {
		return err
	}
	return g.bdb.View(func(btx *bbolt.Tx) error {
		tx := &Tx{tx: btx}
		defer tx.end()
		return fn(tx)
	})
}

// Sync makes every committed transaction durable (fdatasync of the file). It
// is needed only with Options.NoSync.
func (db *DB) Sync() error {
	db.mu.RLock()
	defer db.mu.RUnlock()
	g, err := db.current()
	if err != nil {
		return err
	}
	if err := g.bdb.Sync(); err != nil {
		return fmt.Errorf("sync catalog %s: %w", db.path, err)
	}
	return nil
}

// Check verifies the whole file: bbolt's own page consistency check and the
// catalog invariants listed at Tx.Check. It holds the writer lock for its
// duration (bbolt's check is not safe beside writers otherwise), so it is for
// tests, fsck and restore, not for a busy node. It returns every problem found,
// joined; each wraps ErrCorrupt.
func (db *DB) Check() error {
	db.mu.RLock()
	defer db.mu.RUnlock()
	g, err := db.current()
	if err != nil {
		return err
	}
	return checkBolt(g.bdb, true)
}

// checkBolt runs bbolt's check and the catalog check in one write transaction
// it rolls back.
func checkBolt(bdb *bbolt.DB, withLocal bool) error {
	btx, err := bdb.Begin(true)
	if err != nil {
		return err
	}
	defer func() { _ = btx.Rollback() }()
	// The records are checked in a read transaction of their own while
	// bbolt walks its pages (each takes about half a second over a
	// million blobs).
	records := make(chan []error, 1)
	go func() {
		rtx, err := bdb.Begin(false)
		if err != nil {
			records <- []error{err}
			return
		}
		defer func() { _ = rtx.Rollback() }()
		tx := &Tx{tx: rtx}
		defer tx.end()
		var errs []error
		if err := readingCorrupt(func() error { errs = tx.check(withLocal); return nil }); err != nil {
			errs = append(errs, err)
		}
		records <- errs
	}()
	var errs []error
	for e := range btx.Check() {
		errs = append(errs, fmt.Errorf("%w: bbolt: %w", ErrCorrupt, e))
	}
	errs = append(errs, <-records...)
	return errors.Join(errs...)
}

// readingCorrupt runs fn, which reads a file not yet checked, and turns a
// panic of bbolt's (a page it cannot parse) into an error wrapping
// ErrCorrupt. bbolt rolls back a View's transaction when fn panics.
func readingCorrupt(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: bbolt: %v", ErrCorrupt, r)
		}
	}()
	return fn()
}

// LocalMarks are the node-local marks (key -> the version this node
// holds verified data for) of a catalog file opened read-only: the catalog
// an unclean start set aside, whose marks still describe the volume.
type LocalMarks struct {
	bdb *bbolt.DB
}

// OpenLocalMarks opens the catalog file at path read-only for its marks.
func OpenLocalMarks(path string) (*LocalMarks, error) {
	bdb, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return nil, fmt.Errorf("catalog: open the local marks of %s: %w", path, err)
	}
	return &LocalMarks{bdb: bdb}, nil
}

// Version returns the version key was marked at (ok false: not marked, or
// the file cannot be read).
//
// The file was set aside after a crash and, written without fsync, may be
// torn: a page bbolt cannot parse makes the key unmarked (its blob is then
// verified again), never a panic.
func (m *LocalMarks) Version(key string) (version uint64, ok bool) {
	err := readingCorrupt(func() error {
		return m.bdb.View(func(tx *bbolt.Tx) error {
			b := tx.Bucket([]byte(bucketLocal))
			if b == nil {
				return nil
			}
			if v := b.Get([]byte(key)); len(v) == 8 {
				version, ok = binary.BigEndian.Uint64(v), true
			}
			return nil
		})
	})
	if err != nil {
		return 0, false
	}
	return version, ok
}

// Len returns the number of marks, or an error wrapping ErrCorrupt if the
// file holds a page bbolt cannot parse (see Version).
func (m *LocalMarks) Len() (int, error) {
	n := 0
	err := readingCorrupt(func() error {
		return m.bdb.View(func(tx *bbolt.Tx) error {
			if b := tx.Bucket([]byte(bucketLocal)); b != nil {
				n = b.Stats().KeyN
			}
			return nil
		})
	})
	return n, err
}

// Close closes the file.
func (m *LocalMarks) Close() error { return m.bdb.Close() }
