package store

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/raftfsm"
	"github.com/blobnode/blobnode/volume"
)

// barrier makes the next catalog read linearizable unless opts allow stale.
func (s *Store) barrier(ctx context.Context, stale bool) error {
	if stale {
		return nil
	}
	return mapErr(s.raft.ReadBarrier(ctx))
}

// lookup reads key's current record in this node's applied state.
func (s *Store) lookup(key string) (b catalog.Blob, ok bool, err error) {
	err = s.fsm.View(func(tx *catalog.Tx) error {
		b, ok, err = tx.GetBlob(key)
		return err
	})
	return b, ok, err
}

// Get opens the current version of key.
func (s *Store) Get(ctx context.Context, key string, opts ReadOptions) (Object, error) {
	if err := s.barrier(ctx, opts.Stale); err != nil {
		return nil, err
	}
	b, ok, err := s.lookup(key)
	if err != nil {
		return nil, fmt.Errorf("store: get %q: %w", key, err)
	}
	if !ok {
		return nil, ErrNotFound
	}
	// The catalog shows an entry's blob from its batch's catalog commit,
	// but an inline blob's bytes reach the heap only after that commit
	// (and, while the volume refuses writes, not until it recovers):
	// until the entry counts as applied its pages may hold anything.
	if b.Version > s.fsm.Applied() {
		if err := s.fsm.WaitApplied(ctx, b.Version); err != nil {
			return nil, fmt.Errorf("store: get %q: %w", key, mapErr(err))
		}
	}
	o := &object{s: s, b: b}
	o.ext.add(b.Extents...)
	return o, nil
}

type object struct {
	s   *Store
	b   catalog.Blob
	ext extents
}

func (o *object) Info() BlobInfo { return info(o.b) }
func (o *object) Close() error   { return nil }

// WriteRange reads whole chunks, verifies each against its checksum, and
// writes only verified bytes. A chunk that fails (corrupt or unreadable)
// is counted and logged here, once, as the operator's record of it; the
// *ChunkError is returned for the caller to answer with.
func (o *object) WriteRange(ctx context.Context, w io.Writer, off, n int64) error {
	bufp := o.s.bufs.Get().(*[]byte)
	defer o.s.bufs.Put(bufp)
	var fix func(*ChunkError) ([]byte, error)
	if o.s.cfg.Chunks != nil {
		fix = func(ce *ChunkError) ([]byte, error) {
			if errors.Is(ce, ErrCorruptData) && !o.stillCurrent() {
				// Not corruption but reuse (see below): nothing to
				// count, and no replica serves a version that is gone.
				return nil, ErrBlobChanged
			}
			return o.s.readRepair(ctx, o.b, &o.ext, ce)
		}
	}
	err := copyVerified(ctx, o.s.vol, o.b, &o.ext, *bufp, w, off, n, fix)
	var ce *ChunkError
	if !errors.As(err, &ce) {
		return err
	}
	if errors.Is(err, ErrCorruptData) && !o.stillCurrent() {
		// Versions never come back: if this one is gone now, its pages
		// were freed after the read began, so the mismatch was a reuse.
		return fmt.Errorf("%w: %q version %d", ErrBlobChanged, o.b.Key, o.b.Version)
	}
	o.s.chunkFailed(ce)
	return err
}

// chunkFailed counts ce and logs it at Error: the one line an operator
// gets for each failed chunk read, saying where the volume is bad.
func (s *Store) chunkFailed(ce *ChunkError) {
	msg := "chunk failed verification"
	if errors.Is(ce, ErrReadFailed) {
		msg = "chunk could not be read"
		s.readErrors.Add(1)
	} else {
		s.corrupt.Add(1)
	}
	s.log.Error(msg, "key", ce.Key, "version", ce.Version, "chunk", ce.Chunk, "offset", ce.Offset, "err", ce.Err)
}

// stillCurrent reports whether the object's version is still the key's.
func (o *object) stillCurrent() bool { return o.s.stillCurrent(o.b) }

// stillCurrent reports whether b's version is still its key's (true also
// when that cannot be told, so real corruption is reported). Versions
// never come back: a chunk of b that failed verification while b is no
// longer current was read from pages freed and reused meanwhile, which
// is not corruption.
func (s *Store) stillCurrent(b catalog.Blob) bool {
	current := true
	_ = s.fsm.View(func(tx *catalog.Tx) error {
		cur, ok, err := tx.GetBlob(b.Key)
		if err == nil {
			current = ok && cur.Version == b.Version
		}
		return err
	})
	return current
}

// copyVerified writes bytes [off, off+n) of blob b (laid out on ext) to w,
// reading whole chunks into buf and checking each against its checksum
// before any of its bytes are written. It stops at the first chunk that
// fails, with a *ChunkError, having written exactly the bytes before it.
//
// fix, if not nil, is given every chunk that fails: it returns the chunk's
// verified bytes from elsewhere (read repair), or an error, and then the
// chunk's *ChunkError is returned as without it.
func copyVerified(ctx context.Context, vol *volume.Volume, b catalog.Blob, ext *extents, buf []byte, w io.Writer, off, n int64, fix func(*ChunkError) ([]byte, error)) error {
	if off < 0 || n < 0 || off+n > b.Size {
		return fmt.Errorf("store: range %d+%d outside a blob of %d bytes", off, n, b.Size)
	}
	if n == 0 {
		return nil
	}
	cs := b.ChunkSize
	if int64(len(buf)) < cs {
		buf = make([]byte, cs)
	}
	for c := off / cs; c*cs < off+n; c++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		start := c * cs
		chunk, err := loadChunk(vol, b, ext, buf, c)
		var ce *ChunkError
		if errors.As(err, &ce) && fix != nil {
			if fixed, ferr := fix(ce); ferr == nil {
				chunk, err = fixed, nil
			}
		}
		if err != nil {
			return err
		}
		from := max(off, start) - start
		to := min(off+n, start+int64(len(chunk))) - start
		if _, err := w.Write(chunk[from:to]); err != nil {
			return err
		}
	}
	return nil
}

// chunkBuffer returns a buffer that holds b's largest chunk: a small
// blob's chunk is the blob, not ChunkSize.
func chunkBuffer(b catalog.Blob) []byte {
	return make([]byte, min(b.ChunkSize, b.Size))
}

// loadChunk reads chunk c of blob b into buf (at least b's largest
// chunk, see chunkBuffer) and verifies it. It returns the chunk's bytes,
// or a *ChunkError for a chunk that is corrupt or that the device could
// not read; any other error means the chunk could not be looked at (the
// volume is closed, or the record is not self-consistent).
func loadChunk(vol *volume.Volume, b catalog.Blob, ext *extents, buf []byte, c int64) ([]byte, error) {
	start := c * b.ChunkSize
	chunk := buf[:min(b.ChunkSize, b.Size-start)]
	if c >= int64(len(b.Checksums)) {
		return nil, fmt.Errorf("store: %q version %d has %d chunk checksums, chunk %d has none", b.Key, b.Version, len(b.Checksums), c)
	}
	first := int64(-1) // device offset of the chunk's first byte
	err := ext.each(start, int64(len(chunk)), func(dev int64, from, to int) error {
		if first < 0 {
			first = dev
		}
		if _, err := vol.ReadAt(chunk[from:to], dev); err != nil {
			if errors.Is(err, volume.ErrClosed) {
				return fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			return &ChunkError{Key: b.Key, Version: b.Version, Chunk: c, Offset: dev, Err: fmt.Errorf("%w: %w", ErrReadFailed, err)}
		}
		return nil
	})
	var ce *ChunkError
	switch {
	case errors.As(err, &ce):
		return nil, ce
	case err != nil:
		return nil, fmt.Errorf("store: read %q version %d chunk %d: %w", b.Key, b.Version, c, err)
	}
	if got := chunkChecksum(b.ReservationID, c, chunk); got != b.Checksums[c] {
		return nil, &ChunkError{Key: b.Key, Version: b.Version, Chunk: c, Offset: first,
			Err: fmt.Errorf("%w: checksum %08x, want %08x", ErrCorruptData, got, b.Checksums[c])}
	}
	return chunk, nil
}

// Delete removes key through Raft.
func (s *Store) Delete(ctx context.Context, key string, cond Condition) error {
	if err := s.raft.ReadOnly(); err != nil {
		return mapErr(err)
	}
	c := &raftfsm.Command{Kind: raftfsm.KindDelete, Key: key, IfMatch: parseETag(cond.IfMatch)}
	if cond.IfMatch != "" && c.IfMatch == 0 {
		return ErrPreconditionFailed
	}
	_, err := s.decide(ctx, c)
	return mapErr(err)
}

// List returns one page of keys in order.
func (s *Store) List(ctx context.Context, req ListRequest) (ListPage, error) {
	if err := s.barrier(ctx, false); err != nil {
		return ListPage{}, err
	}
	var page ListPage
	err := s.fsm.View(func(tx *catalog.Tx) error {
		blobs, more, err := tx.ListBlobs(req.Prefix, req.StartAfter, req.Limit)
		if err != nil {
			return err
		}
		for _, b := range blobs {
			page.Blobs = append(page.Blobs, info(b))
		}
		page.Truncated = more
		if more && len(blobs) > 0 {
			page.NextStartAfter = blobs[len(blobs)-1].Key
		}
		return nil
	})
	if err != nil {
		return ListPage{}, fmt.Errorf("store: list: %w", err)
	}
	return page, nil
}

// Verify reads every chunk of b and checks it against its checksum (for
// fsck and a scrubber). It returns every chunk that failed, in chunk
// order, each a *ChunkError wrapping ErrCorruptData or ErrReadFailed; err
// is for a blob that could not be checked at all (the volume is closed, or
// the record is not self-consistent). It neither counts nor logs.
func Verify(vol *volume.Volume, b catalog.Blob) (bad []*ChunkError, err error) {
	var ext extents
	ext.add(b.Extents...)
	buf := chunkBuffer(b)
	for c := int64(0); c*b.ChunkSize < b.Size; c++ {
		_, err := loadChunk(vol, b, &ext, buf, c)
		var ce *ChunkError
		switch {
		case errors.As(err, &ce):
			bad = append(bad, ce)
		case err != nil:
			return bad, err
		}
	}
	return bad, nil
}
