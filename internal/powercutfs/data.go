package powercutfs

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// pageSize is the granularity of a file's overlay of unsynced bytes. It is
// a bookkeeping unit only: nothing in the model is atomic per page.
const pageSize = 4096

// SectorSize is the unit of a torn write: a torn write keeps a whole prefix
// of the 512-byte sectors it covers (sectors of the file, counted from
// offset 0), never part of one.
const SectorSize = 512

// dataOp is one unsynced change to a file's bytes: a write of data at off,
// or (data == nil) a change of the file's size to off (truncate, extend,
// fallocate).
type dataOp struct {
	off  int64
	data []byte
}

// fileData is one regular file's bytes: the durable ones in a backing
// file, and the unsynced changes since the last fsync in memory.
//
// Invariants, between calls:
//   - The current content is: overlay pages where present; elsewhere the
//     backing file's bytes below low; zero from low on; all cut at size.
//   - low <= size and low <= dsize: low is the smallest size the file had
//     since the durable and the current content were last the same (a
//     truncate below dsize makes the backing bytes past it dead even if
//     the file grows again).
//   - Overlay bytes at or past size are zero.
//   - log is what an fsync makes durable and a cut may lose. Unless ghost
//     is set, applying it, in order, to the backing file yields the
//     current content.
//   - ghost is set once a failed fsync dropped changes (see drop): they
//     stay in the current content (the page cache keeps the pages) but
//     will never be durable, so the current content is the durable one,
//     plus the dropped changes, plus log. Applying log then yields the
//     durable content a sync makes, and only a cut (which reverts the
//     current content to the durable one) clears ghost.
//
// fileData does no locking; its owner serialises every call.
type fileData struct {
	back  *os.File // durable content; nil until first needed (see open)
	dsize int64    // size of back
	size  int64    // current size
	low   int64
	pages map[int64][]byte // page index -> pageSize bytes of current content
	log   []dataOp
	ghost bool
}

// newFileData returns the state of a file whose durable content is a
// backing file of size bytes, with nothing unsynced.
func newFileData(size int64) *fileData {
	return &fileData{dsize: size, size: size, low: size}
}

// pending reports whether anything is unsynced.
func (d *fileData) pending() bool { return len(d.log) > 0 }

// readBack fills p with the durable bytes at off, zero past dsize or limit.
func (d *fileData) readBack(p []byte, off, limit int64) error {
	end := min(off+int64(len(p)), limit, d.dsize)
	n := 0
	if end > off {
		k, err := d.back.ReadAt(p[:end-off], off)
		if err != nil && !(errors.Is(err, io.EOF) && int64(k) == end-off) {
			return fmt.Errorf("read backing file: %w", err)
		}
		n = k
	}
	clear(p[n:])
	return nil
}

// page returns the overlay page idx, loading it from the durable state
// first unless whole is set (the caller overwrites all of it).
func (d *fileData) page(idx int64, whole bool) ([]byte, error) {
	if pg, ok := d.pages[idx]; ok {
		return pg, nil
	}
	pg := make([]byte, pageSize)
	if !whole {
		if err := d.readBack(pg, idx*pageSize, d.low); err != nil {
			return nil, err
		}
	}
	if d.pages == nil {
		d.pages = map[int64][]byte{}
	}
	d.pages[idx] = pg
	return pg, nil
}

// read reads the current content at off into p, stopping at size.
func (d *fileData) read(p []byte, off int64) (int, error) {
	if off >= d.size {
		return 0, nil
	}
	p = p[:min(int64(len(p)), d.size-off)]
	for done := 0; done < len(p); {
		at := off + int64(done)
		idx, in := at/pageSize, int(at%pageSize)
		k := min(pageSize-in, len(p)-done)
		if pg, ok := d.pages[idx]; ok {
			copy(p[done:done+k], pg[in:in+k])
		} else if err := d.readBack(p[done:done+k], at, d.low); err != nil {
			return done, err
		}
		done += k
	}
	return len(p), nil
}

// write writes p at off, unsynced. An empty write changes nothing.
func (d *fileData) write(p []byte, off int64) error {
	if off < 0 {
		return fmt.Errorf("write at %d: %w", off, os.ErrInvalid)
	}
	if len(p) == 0 {
		return nil
	}
	for done := 0; done < len(p); {
		at := off + int64(done)
		idx, in := at/pageSize, int(at%pageSize)
		k := min(pageSize-in, len(p)-done)
		pg, err := d.page(idx, k == pageSize)
		if err != nil {
			return err
		}
		copy(pg[in:in+k], p[done:done+k])
		done += k
	}
	d.size = max(d.size, off+int64(len(p)))
	d.log = append(d.log, dataOp{off: off, data: bytes.Clone(p)})
	return nil
}

// truncate sets the size, unsynced.
func (d *fileData) truncate(size int64) error {
	if size < 0 {
		return fmt.Errorf("truncate to %d: %w", size, os.ErrInvalid)
	}
	if size < d.size {
		for idx, pg := range d.pages {
			switch start := idx * pageSize; {
			case start >= size:
				delete(d.pages, idx)
			case start+pageSize > size:
				clear(pg[size-start:])
			}
		}
		d.low = min(d.low, size)
	}
	d.size = size
	d.log = append(d.log, dataOp{off: size})
	return nil
}

// sync makes everything unsynced durable: the log is applied, in order, to
// the backing file. (The backing file itself is not fsynced: the host does
// not lose power during a test, only the model does.) Changes an earlier
// failed sync dropped stay in the current content only.
func (d *fileData) sync() error {
	for _, op := range d.log {
		if err := d.apply(op, len(op.data)); err != nil {
			return err
		}
	}
	if d.ghost {
		// The current content is not the durable one: keep it. Every
		// byte the log changed in the backing file is under an overlay
		// page or at or past low, so the current content is unchanged.
		d.log = nil
		return nil
	}
	if d.dsize != d.size {
		return fmt.Errorf("powercutfs: internal error: synced size %d, current size %d", d.dsize, d.size)
	}
	d.reset()
	return nil
}

// reset forgets everything unsynced, and what a failed sync dropped; the
// current content is the durable one.
func (d *fileData) reset() {
	d.size, d.low, d.pages, d.log, d.ghost = d.dsize, d.dsize, nil, nil, false
}

// drop is a failed sync, as Linux fails one when the writeback of a file's
// dirty pages fails: the unsynced changes are dropped and never become
// durable, neither by a later sync nor at a cut or an unmount, while the
// current content keeps them (the pages stay in the page cache, clean). It
// returns the dropped changes, in their order.
func (d *fileData) drop() []dataOp {
	dropped := d.log
	d.log = nil
	if len(dropped) > 0 {
		d.ghost = true
	}
	return dropped
}

// apply makes the first n bytes of op durable (all of a size change).
func (d *fileData) apply(op dataOp, n int) error {
	if op.data == nil {
		if err := d.back.Truncate(op.off); err != nil {
			return fmt.Errorf("truncate backing file: %w", err)
		}
		d.dsize = op.off
		return nil
	}
	if n == 0 {
		return nil
	}
	if _, err := d.back.WriteAt(op.data[:n], op.off); err != nil {
		return fmt.Errorf("write backing file: %w", err)
	}
	d.dsize = max(d.dsize, op.off+int64(n))
	return nil
}

// cut is a power cut of this file: p decides which unsynced changes reach
// the backing file (in their order) and which are torn; the rest are lost.
func (d *fileData) cut(p *plan) error {
	for _, op := range d.log {
		p.rep.DataOps++
		if !p.keep() {
			p.rep.Dropped++
			continue
		}
		if op.data == nil {
			p.rep.Kept++
			if err := d.apply(op, 0); err != nil {
				return err
			}
			continue
		}
		bounds := sectorsOf(op.off, len(op.data))
		whole, garbage := p.tear(len(bounds) - 1)
		if whole == len(bounds)-1 {
			p.rep.Kept++
			if err := d.apply(op, len(op.data)); err != nil {
				return err
			}
			continue
		}
		p.rep.Torn++
		n := bounds[whole] // bytes of op in its first `whole` sectors
		if err := d.apply(op, n); err != nil {
			return err
		}
		if garbage {
			p.rep.Garbage++
			if err := d.garble(op, n, bounds[whole+1], p); err != nil {
				return err
			}
		}
	}
	d.reset()
	return nil
}

// garble replaces bytes [from, to) of op's range in the backing file with
// bytes that are neither what was there nor what op wrote: the sector the
// write was in the middle of when the power went.
func (d *fileData) garble(op dataOp, from, to int, p *plan) error {
	old := make([]byte, to-from)
	if err := d.readBack(old, op.off+int64(from), d.dsize); err != nil {
		return err
	}
	g := make([]byte, to-from)
	for {
		for i := range g {
			g[i] = byte(p.rng.Uint32())
		}
		if !bytes.Equal(g, old) && !bytes.Equal(g, op.data[from:to]) {
			break
		}
	}
	return d.apply(dataOp{off: op.off + int64(from), data: g}, len(g))
}

// sectorsOf splits the byte range [off, off+n), n > 0, at sector
// boundaries. It returns the bounds of the pieces relative to off: piece i
// is [b[i], b[i+1]), so there are len(b)-1 pieces. The first and the last
// piece may be part of a sector.
func sectorsOf(off int64, n int) []int {
	b := []int{0}
	for at := (off/SectorSize + 1) * SectorSize; at < off+int64(n); at += SectorSize {
		b = append(b, int(at-off))
	}
	return append(b, n)
}
