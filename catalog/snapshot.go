package catalog

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	bbolt "go.etcd.io/bbolt"
	bberrors "go.etcd.io/bbolt/errors"
)

// Snapshot stream framing (frozen): a header of snapshotMagic and the body
// length (uint64, big-endian), the body (a bbolt file image written by
// bbolt's Tx.WriteTo), and a trailer holding the CRC32C (Castagnoli) of the
// body, big-endian.
const (
	snapshotMagic      = "BNCATSN1"
	snapshotHeaderLen  = len(snapshotMagic) + 8
	snapshotTrailerLen = 4
	// maxSnapshotBody bounds the length a header may announce (1 TiB).
	maxSnapshotBody = 1 << 40
)

func newCRC() hash.Hash32 { return crc32.New(crc32.MakeTable(crc32.Castagnoli)) }

// Snapshot is a consistent, read-only view of the whole catalog taken by
// BeginSnapshot. It holds a bbolt read transaction: writers keep going, but
// pages it still sees are not reused until Release, and a write that must
// grow bbolt's mapping beyond Options.InitialMmapSize waits for it.
//
// WriteTo and Release may run on a goroutine other than the one that called
// BeginSnapshot (Raft's Persist does), but not concurrently with each other.
type Snapshot struct {
	gen *generation
	tx  *bbolt.Tx // nil once released
}

// BeginSnapshot captures the catalog as of the last committed Update. Each
// Snapshot must be released. The state is what has been committed, durable or
// not: with Options.NoSync, call Sync first if the snapshot must not run ahead
// of the durable state.
func (db *DB) BeginSnapshot() (*Snapshot, error) {
	db.mu.RLock()
	defer db.mu.RUnlock()
	g, err := db.current()
	if err != nil {
		return nil, err
	}
	tx, err := g.bdb.Begin(false)
	if err != nil {
		return nil, fmt.Errorf("begin snapshot: %w", err)
	}
	g.acquire()
	return &Snapshot{gen: g, tx: tx}, nil
}

// Size returns the number of bytes WriteTo writes.
func (s *Snapshot) Size() int64 {
	if s.tx == nil {
		return 0
	}
	return int64(snapshotHeaderLen) + s.tx.Size() + snapshotTrailerLen
}

// AppliedIndex returns the applied index recorded in the snapshot.
func (s *Snapshot) AppliedIndex() (uint64, error) {
	if s.tx == nil {
		return 0, ErrSnapshotReleased
	}
	t := &Tx{tx: s.tx}
	defer t.end()
	return t.AppliedIndex()
}

// crcWriter passes writes through to w and adds them to a checksum.
type crcWriter struct {
	w   io.Writer
	crc hash.Hash32
}

func (c *crcWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.crc.Write(p[:n])
	return n, err
}

// WriteTo streams the snapshot to w: header, the bbolt file image as of
// BeginSnapshot, and a checksum trailer. It reads the file page by page and
// never holds the catalog in memory. It may be called more than once before
// Release; each call writes the same bytes.
func (s *Snapshot) WriteTo(w io.Writer) (int64, error) {
	if s.tx == nil {
		return 0, ErrSnapshotReleased
	}
	body := s.tx.Size()
	hdr := make([]byte, 0, snapshotHeaderLen)
	hdr = append(hdr, snapshotMagic...)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(body))
	n, err := w.Write(hdr)
	total := int64(n)
	if err != nil {
		return total, fmt.Errorf("write snapshot header: %w", err)
	}
	cw := &crcWriter{w: w, crc: newCRC()}
	m, err := s.tx.WriteTo(cw)
	total += m
	if err != nil {
		return total, fmt.Errorf("write snapshot body: %w", err)
	}
	if m != body {
		return total, fmt.Errorf("write snapshot body: wrote %d bytes, want %d", m, body)
	}
	n, err = w.Write(binary.BigEndian.AppendUint32(nil, cw.crc.Sum32()))
	total += int64(n)
	if err != nil {
		return total, fmt.Errorf("write snapshot trailer: %w", err)
	}
	return total, nil
}

// Release ends the snapshot's read transaction. It is idempotent.
func (s *Snapshot) Release() {
	if s.tx == nil {
		return
	}
	_ = s.tx.Rollback() // a read transaction: nothing to lose
	s.tx = nil
	// A close error of a retired file has no one to report to, and the
	// file's content was already replaced or closed.
	_ = s.gen.release()
}

// Restore replaces the catalog with a stream written by Snapshot.WriteTo.
//
// It reads exactly the bytes WriteTo wrote (a caller may frame other state
// after them in the same stream), into a temporary file next to the catalog
// that it syncs (see below) and validates (framing checksum, bbolt consistency, layout
// version, every record). A snapshot of layout 1 (from a node of an earlier
// release) is upgraded to layout 2 first, as Open upgrades a file: it
// carries no recorded requests or members. A snapshot of a layout newer
// than this build's is refused with ErrUnknownLayout. It then takes the writer lock, carries over this
// node's local marks whose (key, version) exists in the restored blobs (the
// sender's local bucket is dropped), renames the file over the catalog,
// syncs the directory and reopens. A failure before the rename leaves the
// current catalog untouched; a crash at any point leaves either the old or
// the new file in place. With Options.NoSync the received file is not
// synced: like any Update, the restored state is durable only after Sync,
// and a crash before it may leave a torn file in place (a catalog without
// fsync is rebuilt after any crash anyway). Update and View calls wait for
// the swap; open snapshots keep reading the replaced file until released.
//
// If the file was swapped in but cannot be reopened, the DB is unusable and
// every later call returns an error wrapping ErrClosed.
func (db *DB) Restore(r io.Reader) error { return db.RestoreIf(r, nil) }

// RestoreIf is Restore that also runs accept, if not nil, in a read
// transaction of the received catalog: an error from it refuses the
// snapshot, and the catalog in place is unchanged. accept runs while the
// received file is still being checked, so it may see a corrupt catalog
// (the Tx then returns errors wrapping ErrCorrupt); what it learns counts
// only if RestoreIf returns nil.
func (db *DB) RestoreIf(r io.Reader, accept func(*Tx) error) (err error) {
	db.mu.RLock()
	_, err = db.current()
	db.mu.RUnlock()
	if err != nil {
		return err
	}

	dir, base := filepath.Split(db.path)
	if dir == "" {
		dir = "."
	}
	f, err := os.CreateTemp(dir, base+restoreTempInfix+"*")
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	tmp := f.Name()
	renamed := false
	defer func() {
		if !renamed {
			if rmErr := os.Remove(tmp); rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
				err = errors.Join(err, fmt.Errorf("restore: remove temporary file: %w", rmErr))
			}
		}
	}()

	if err := receiveSnapshot(f, r); err != nil {
		return errors.Join(fmt.Errorf("restore: %w", err), f.Close())
	}
	if !db.opts.NoSync {
		if err := f.Sync(); err != nil {
			return errors.Join(fmt.Errorf("restore: sync received snapshot: %w", err), f.Close())
		}
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}

	// NoGrowSync too: bbolt otherwise syncs the whole file when a commit
	// grows it (0.5 s of a restart with a million blobs).
	tdb, err := bbolt.Open(tmp, 0o600, &bbolt.Options{FreelistType: bbolt.FreelistMapType, NoSync: db.opts.NoSync, NoGrowSync: db.opts.NoSync})
	if err != nil {
		return fmt.Errorf("restore: open received file: %w: %w", ErrCorrupt, err)
	}
	tdbOpen := true
	defer func() {
		if tdbOpen {
			err = errors.Join(err, tdb.Close())
		}
	}()
	// A snapshot from a node of an earlier release has layout 1: upgrade
	// it as Open upgrades a file, before it is checked as layout 2.
	if err := migrateLayout(tdb); err != nil {
		return fmt.Errorf("restore: received catalog: %w", err)
	}
	// Both only read the file, so accept runs while it is checked: a
	// catalog of a million blobs takes each about half a second.
	checked := make(chan error, 1)
	go func() { checked <- checkBolt(tdb, false) }()
	var acceptErr error
	if accept != nil {
		acceptErr = readingCorrupt(func() error {
			return tdb.View(func(btx *bbolt.Tx) error {
				tx := &Tx{tx: btx}
				defer tx.end()
				return accept(tx)
			})
		})
	}
	if err := <-checked; err != nil {
		return fmt.Errorf("restore: received catalog: %w", err)
	}
	if acceptErr != nil {
		return fmt.Errorf("restore: snapshot refused: %w", acceptErr)
	}

	db.mu.Lock()
	defer db.mu.Unlock()
	g, err := db.current()
	if err != nil {
		return err
	}
	if err := mergeLocal(tdb, g.bdb); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	tdbOpen = false
	if err := tdb.Close(); err != nil {
		return fmt.Errorf("restore: close received file: %w", err)
	}
	if err := os.Rename(tmp, db.path); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	renamed = true
	// From here the new file is the catalog: the old one goes whatever
	// happens below, and a failed directory sync (the rename may not survive
	// a crash, leaving the old, consistent file) does not stop the reopen.
	var errs []error
	if err := g.retire(); err != nil {
		errs = append(errs, fmt.Errorf("restore: close replaced file: %w", err))
	}
	if err := syncDir(dir); err != nil {
		errs = append(errs, fmt.Errorf("restore: sync directory: %w", err))
	}
	bdb, err := openBolt(db.path, db.opts.bolt())
	if err != nil {
		db.cur, db.err = nil, fmt.Errorf("%w: reopen after restore failed: %w", ErrClosed, err)
		errs = append(errs, fmt.Errorf("restore: reopen: %w", err))
		return errors.Join(errs...)
	}
	db.cur = &generation{bdb: bdb}
	return errors.Join(errs...)
}

// receiveSnapshot copies one framed snapshot from r into f and verifies its
// checksum. It reads no byte past the trailer.
func receiveSnapshot(f *os.File, r io.Reader) error {
	hdr := make([]byte, snapshotHeaderLen)
	if err := readFull(r, hdr, "header"); err != nil {
		return err
	}
	if string(hdr[:len(snapshotMagic)]) != snapshotMagic {
		return fmt.Errorf("%w: not a catalog snapshot (magic %q)", ErrCorrupt, hdr[:len(snapshotMagic)])
	}
	body := binary.BigEndian.Uint64(hdr[len(snapshotMagic):])
	if body == 0 || body > maxSnapshotBody {
		return fmt.Errorf("%w: snapshot body length %d", ErrCorrupt, body)
	}
	cw := &crcWriter{w: f, crc: newCRC()}
	// In 1 MiB writes, not io.Copy's 32 KiB: a catalog of a million blobs
	// is about 300 MB.
	n, err := io.CopyBuffer(cw, io.LimitReader(r, int64(body)), make([]byte, 1<<20))
	if err == nil && n < int64(body) {
		err = io.EOF
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("%w: snapshot truncated after %d of %d bytes", ErrCorrupt, n, body)
		}
		return fmt.Errorf("read snapshot body: %w", err)
	}
	trailer := make([]byte, snapshotTrailerLen)
	if err := readFull(r, trailer, "trailer"); err != nil {
		return err
	}
	if got, want := cw.crc.Sum32(), binary.BigEndian.Uint32(trailer); got != want {
		return fmt.Errorf("%w: snapshot checksum %08x, trailer says %08x", ErrCorrupt, got, want)
	}
	return nil
}

// readFull fills buf from r; a stream that ends early is corrupt, any other
// read error is the reader's.
func readFull(r io.Reader, buf []byte, what string) error {
	_, err := io.ReadFull(r, buf)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: snapshot %s truncated: %w", ErrCorrupt, what, err)
	}
	if err != nil {
		return fmt.Errorf("read snapshot %s: %w", what, err)
	}
	return nil
}

// mergeLocal replaces the local bucket of the received file with the entries
// of cur's local bucket whose (key, version) exists among the received blobs.
// The commit is synced unless tdb was opened with NoSync.
func mergeLocal(tdb, cur *bbolt.DB) error {
	return tdb.Update(func(ttx *bbolt.Tx) error {
		if err := ttx.DeleteBucket([]byte(bucketLocal)); err != nil && !errors.Is(err, bberrors.ErrBucketNotFound) {
			return fmt.Errorf("drop sender's local bucket: %w", err)
		}
		local, err := ttx.CreateBucket([]byte(bucketLocal))
		if err != nil {
			return fmt.Errorf("create local bucket: %w", err)
		}
		blobs := ttx.Bucket([]byte(bucketBlobs))
		return cur.View(func(ctx *bbolt.Tx) error {
			old := ctx.Bucket([]byte(bucketLocal))
			if old == nil {
				return fmt.Errorf("%w: bucket %q missing", ErrCorrupt, bucketLocal)
			}
			return old.ForEach(func(k, v []byte) error {
				bv := blobs.Get(k)
				if bv == nil || len(v) != 8 {
					return nil
				}
				ver, err := blobRecordVersion(bv)
				if err != nil || ver != binary.BigEndian.Uint64(v) {
					return nil
				}
				// k and v live in cur's mapping, which outlives this
				// callback but not ttx's commit: copy them.
				return local.Put(bytes.Clone(k), bytes.Clone(v))
			})
		})
	})
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}
