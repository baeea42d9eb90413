package store

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"slices"
	"time"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/raftfsm"
)

// extents maps blob offsets onto the device extents that hold them.
type extents struct {
	exts  []catalog.Extent
	start []int64 // blob offset of each extent
	size  int64   // bytes covered
}

func (e *extents) add(xs ...catalog.Extent) {
	for _, x := range xs {
		e.exts = append(e.exts, x)
		e.start = append(e.start, e.size)
		e.size += x.Length
	}
}

// each calls fn for the device ranges holding blob bytes [off, off+n).
func (e *extents) each(off, n int64, fn func(dev int64, from, to int) error) error {
	done := 0
	for i, x := range e.exts {
		if n == 0 {
			break
		}
		if off >= e.start[i]+x.Length {
			continue
		}
		within := off - e.start[i]
		k := min(n, x.Length-within)
		if err := fn(x.Offset+within, done, done+int(k)); err != nil {
			return err
		}
		done += int(k)
		off += k
		n -= k
	}
	if n != 0 {
		return fmt.Errorf("store: %d bytes beyond the extents", n)
	}
	return nil
}

// upload is one PUT in progress: its reservations, in blob order.
type upload struct {
	s        *Store
	ids      []uint64
	ext      extents
	identity uint64 // seeds the chunk checksums: the first reservation id
	// index is the highest log index of its Reserves: a replica writes
	// the bytes only once it has applied it.
	index uint64
	// claim is this node's claim on the reservations' pages (see
	// raftfsm.LocalWrite): every write of the upload goes through it.
	claim *raftfsm.LocalWrite
	// leaseStart is when the earliest deadline among the reservations
	// was set (deadline - TTL): the lease is renewed a quarter TTL later.
	leaseStart time.Time
}

// renewIfDue extends the reservations' lease through Raft when a quarter
// of the TTL has passed since it was last set, so an upload that makes
// progress is never expired, whichever node coordinates it; an upload
// whose coordinator is gone stops being renewed and expires.
func (u *upload) renewIfDue(ctx context.Context) error {
	ttl := u.s.cfg.ReservationTTL
	now := u.s.cfg.Now()
	if len(u.ids) == 0 || now.Sub(u.leaseStart) < ttl/4 {
		return nil
	}
	deadline := now.Add(ttl).UnixNano()
	_, err := u.s.raft.Propose(ctx, &raftfsm.Command{Kind: raftfsm.KindRenew, ReservationIDs: slices.Clone(u.ids), Deadline: deadline})
	if err != nil {
		return fmt.Errorf("store: renew the upload's reservations: %w", mapErr(err))
	}
	u.leaseStart = now
	u.retrack(deadline)
	return nil
}

// addReservation waits until this node has applied the entry that made
// reservation id (index), claims its pages and appends its extents.
func (u *upload) addReservation(ctx context.Context, id, index uint64) error {
	if err := u.s.fsm.WaitApplied(ctx, index); err != nil {
		return mapErr(err)
	}
	var exts []catalog.Extent
	var err error
	if u.claim == nil {
		u.claim, exts, err = u.s.fsm.BeginWrite(id)
	} else {
		exts, err = u.claim.Extend(id)
	}
	if err != nil {
		return mapErr(err)
	}
	if u.identity == 0 {
		u.identity = id
	}
	u.ids = append(u.ids, id)
	u.ext.add(exts...)
	u.index = max(u.index, index)
	return nil
}

// stream opens the copy of the upload's size bytes to the group's other
// replicas.
func (u *upload) stream(ctx context.Context, size int64) (ReplicaStream, error) {
	rs, err := u.s.cfg.Replicas.Stream(ctx, ReplicaWrite{
		ReservationIDs: slices.Clone(u.ids), Index: u.index, Identity: u.identity, Size: size,
	})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	return rs, nil
}

// sendStored sends the upload's size bytes, read back from this node's
// volume chunk by chunk, with their checksums.
func (s *Store) sendStored(ctx context.Context, u *upload, rs ReplicaStream, size int64, checksums []uint32, buf []byte) error {
	r := &blobReader{vol: s.vol, ext: &u.ext, size: size}
	for c := range checksums {
		if err := u.renewIfDue(ctx); err != nil {
			return err
		}
		n := min(ChunkSize, size-int64(c)*ChunkSize)
		if _, err := io.ReadFull(r, buf[:n]); err != nil {
			return fmt.Errorf("store: read back chunk %d: %w", c, err)
		}
		if err := rs.Send(ctx, checksums[c], buf[:n]); err != nil {
			return fmt.Errorf("%w: %w", ErrUnavailable, err)
		}
	}
	return nil
}

// release ends the upload's claim on its pages.
func (u *upload) release() {
	if u.claim != nil {
		u.claim.End()
		u.claim = nil
	}
}

func (u *upload) reserve(ctx context.Context, size int64) error {
	start := time.Now()
	defer func() { u.s.cfg.ObserveStage("reserve", time.Since(start)) }()
	if len(u.ids) == 0 {
		if r, ok := u.s.pool.take(size); ok {
			u.track(r.deadline)
			u.noteLease(r.deadline)
			if err := u.addReservation(ctx, r.id, r.index); err != nil {
				u.ids = append(u.ids, r.id) // aborted with the rest
				return err
			}
			return nil
		}
	}
	err := u.reserveNew(ctx, size)
	if errors.Is(err, ErrNoSpace) && u.s.pool.drain(ctx, false) > 0 {
		err = u.reserveNew(ctx, size) // the pool held the space
	}
	return err
}

func (u *upload) reserveNew(ctx context.Context, size int64) error {
	id := raftfsm.RandomID()
	deadline := u.s.cfg.Now().Add(u.s.cfg.ReservationTTL).UnixNano()
	u.track(deadline)
	u.noteLease(deadline)
	res, err := u.s.raft.Propose(ctx, &raftfsm.Command{Kind: raftfsm.KindReserve, ReservationID: id, Size: size, Deadline: deadline})
	switch {
	case errors.Is(err, raftfsm.ErrReadOnly):
		// The node turned read-only with the Reserve in flight: it may
		// still be applied, so it is aborted with the rest.
		u.ids = append(u.ids, id)
	case err != nil:
		// The Reserve may still be applied (its outcome is unknown): it
		// would hold its space until its deadline. Aborted apart from the
		// upload, whose answer does not wait for a group that may have
		// no quorum.
		u.s.abortLater(id)
	}
	if err == nil {
		err = res.Err
	}
	if err != nil {
		return mapErr(err)
	}
	if err := u.addReservation(ctx, id, res.Index); err != nil {
		if !slices.Contains(u.ids, id) {
			u.ids = append(u.ids, id) // aborted with the rest
		}
		return err
	}
	return nil
}

// abort frees every reservation of the upload. It does not use the
// request's context, which is often what ended the upload; if it fails the
// reservations expire at their deadline.
func (u *upload) abort() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for i, id := range u.ids {
		_, err := u.s.raft.Propose(ctx, &raftfsm.Command{Kind: raftfsm.KindAbort, ReservationID: id})
		if errors.Is(err, raftfsm.ErrReadOnly) {
			u.s.abortWhenWritable(u.ids[i:])
			break
		}
		if err != nil {
			u.s.log.Warn("abort reservation; it will expire", "reservation", id, "err", err)
		}
	}
	u.ids = nil
}

func (u *upload) writeAt(p []byte, off int64) error {
	return u.ext.each(off, int64(len(p)), func(dev int64, from, to int) error {
		return u.claim.WriteAt(u.s.vol, p[from:to], dev)
	})
}

// Put stores a blob: reserve, stream, sync, commit. Nothing is visible
// until the commit, and a failure at any step aborts the reservations.
func (s *Store) Put(ctx context.Context, req PutRequest) (BlobInfo, error) {
	if err := s.raft.ReadOnly(); err != nil {
		return BlobInfo{}, mapErr(err) // refused before reserving or reading anything
	}
	if len(req.ContentType) > MaxContentTypeLen {
		// Its Commit could never be proposed: refuse before the body.
		return BlobInfo{}, fmt.Errorf("%w: content type of %d bytes, at most %d", ErrInvalidArgument, len(req.ContentType), MaxContentTypeLen)
	}
	if req.Size > 0 && req.Size <= s.cfg.InlineMax {
		return s.putInline(ctx, req)
	}
	u := &upload{s: s}
	defer u.untrack()
	defer u.release()
	info, err := s.put(ctx, u, req)
	switch {
	case err != nil && len(u.ids) > 0 && errors.Is(err, ErrUnavailable) && !errors.Is(err, raftfsm.ErrReadOnly):
		// No leader, or the Commit's outcome unknown: the answer does not
		// wait up to another write timeout for the Aborts (an Abort after
		// the Commit applied changes nothing). A read-only node refuses
		// them at once; abort waits for its recovery.
		s.abortLater(u.ids...)
		u.ids = nil
	case err != nil && len(u.ids) > 0:
		u.abort()
	}
	return info, err
}

func (s *Store) put(ctx context.Context, u *upload, req PutRequest) (BlobInfo, error) {
	bufp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bufp)
	buf := *bufp

	if req.Size > 0 {
		if err := u.reserve(ctx, req.Size); err != nil {
			return BlobInfo{}, err
		}
	}
	// In a group, a body of known size goes to the peers chunk by chunk as
	// it is written here; one of unknown size, once it is complete.
	var rs ReplicaStream
	if s.cfg.Replicas != nil && req.Size > 0 {
		var err error
		if rs, err = u.stream(ctx, req.Size); err != nil {
			return BlobInfo{}, err
		}
		defer rs.Abort()
	}
	var (
		written   int64
		checksums []uint32
		whole     uint32   // CRC32C of the body, for the client's header
		replicas  []string // the nodes holding the bytes, in a group
	)
	for {
		want := int64(len(buf))
		if req.Size >= 0 {
			want = min(want, req.Size-written)
		}
		if want == 0 {
			break
		}
		n, rerr := readChunk(renewing{u: u, ctx: ctx, r: req.Body}, buf[:want])
		if n > 0 {
			for req.Size < 0 && written+int64(n) > u.ext.size {
				// Unknown length: reserve lpages as the data arrives (a
				// chunk may need several when lpages are small).
				if err := u.reserve(ctx, s.lpage); err != nil {
					return BlobInfo{}, err
				}
			}
			if err := u.writeAt(buf[:n], written); err != nil {
				return BlobInfo{}, fmt.Errorf("store: write: %w", err)
			}
			if err := u.renewIfDue(ctx); err != nil {
				return BlobInfo{}, err
			}
			sum := chunkChecksum(u.identity, written/ChunkSize, buf[:n])
			if rs != nil {
				if err := rs.Send(ctx, sum, buf[:n]); err != nil {
					return BlobInfo{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
				}
			}
			checksums = append(checksums, sum)
			whole = crc32.Update(whole, castagnoli, buf[:n])
			written += int64(n)
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			if errors.Is(rerr, ErrTooLarge) {
				return BlobInfo{}, rerr
			}
			return BlobInfo{}, fmt.Errorf("%w: %w", ErrIncompleteBody, rerr)
		}
	}
	if req.Size >= 0 && written != req.Size {
		return BlobInfo{}, fmt.Errorf("%w: %d of %d bytes", ErrIncompleteBody, written, req.Size)
	}
	if req.CRC32C != nil && *req.CRC32C != whole {
		return BlobInfo{}, fmt.Errorf("%w: crc32c %08x, body %08x", ErrBadDigest, *req.CRC32C, whole)
	}
	if req.Size < 0 && written%s.lpage != 0 {
		// The last lpage is partly used: move its bytes to pages of the
		// right size so the blob wastes less than one spage.
		if err := s.trimTail(ctx, u, written); err != nil {
			return BlobInfo{}, err
		}
	}
	if written > 0 {
		start := time.Now()
		if err := s.vol.SyncData(ctx); err != nil {
			return BlobInfo{}, fmt.Errorf("store: sync data: %w", err)
		}
		s.cfg.ObserveStage("sync", time.Since(start))
		if err := u.claim.Held(u.ids); err != nil {
			return BlobInfo{}, mapErr(err) // its reservations are gone: the Commit would fail
		}
		if s.cfg.Replicas != nil && rs == nil {
			// Unknown length: the bytes go out now, read back from here.
			var err error
			if rs, err = u.stream(ctx, written); err != nil {
				return BlobInfo{}, err
			}
			defer rs.Abort()
			if err := s.sendStored(ctx, u, rs, written, checksums, buf); err != nil {
				return BlobInfo{}, err
			}
		}
		if rs != nil {
			start := time.Now()
			var err error
			replicas, err = rs.Finish(ctx)
			s.cfg.ObserveStage("replicate", time.Since(start))
			if err != nil {
				return BlobInfo{}, fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
		}
	}
	c := &raftfsm.Command{
		Kind: raftfsm.KindCommit, ReservationIDs: u.ids, Size: written, Key: req.Key,
		ContentType: req.ContentType, Created: s.cfg.Now().UnixNano(),
		ChunkSize: ChunkSize, Checksums: checksums, Identity: u.identity,
		IfMatch: parseETag(req.Cond.IfMatch), IfNoneMatch: req.Cond.IfNoneMatchAny,
		Replicas: replicas,
	}
	if req.Cond.IfMatch != "" && c.IfMatch == 0 {
		return BlobInfo{}, ErrPreconditionFailed
	}
	// The body's sync and the peers' acknowledgements renewed nothing:
	// the Commit goes with at least three quarters of a lease left.
	if err := u.renewIfDue(ctx); err != nil {
		return BlobInfo{}, err
	}
	start := time.Now()
	res, err := s.decide(ctx, c)
	s.cfg.ObserveStage("commit", time.Since(start))
	if err != nil {
		if errors.Is(err, raftfsm.ErrPreconditionFailed) || errors.Is(err, raftfsm.ErrNoReservation) || errors.Is(err, raftfsm.ErrInvalid) {
			u.ids = nil // the state machine released them
		}
		return BlobInfo{}, mapErr(err)
	}
	u.ids = nil
	return committed(c, res), nil
}

func committed(c *raftfsm.Command, res raftfsm.Result) BlobInfo {
	return BlobInfo{
		Key: c.Key, Size: c.Size, Version: res.Version, ETag: ETag(res.Version),
		ContentType: c.ContentType, Created: time.Unix(0, c.Created).UTC(), Replicas: c.Replicas,
	}
}

// putInline stores a small blob of known size in one Raft entry that
// carries its bytes: the state machine allocates, writes and maps it on
// every replica, and the entry's durability is the blob's. Nothing is
// reserved beforehand, so a failed upload leaves nothing to abort.
func (s *Store) putInline(ctx context.Context, req PutRequest) (BlobInfo, error) {
	bufp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bufp)
	data := (*bufp)[:req.Size]
	n, err := readChunk(req.Body, data)
	if err == io.EOF && n == len(data) {
		err = nil // the body ended exactly at its declared size
	}
	switch {
	case err == io.EOF:
		return BlobInfo{}, fmt.Errorf("%w: %d of %d bytes", ErrIncompleteBody, n, req.Size)
	case errors.Is(err, ErrTooLarge):
		return BlobInfo{}, err
	case err != nil:
		return BlobInfo{}, fmt.Errorf("%w: %w", ErrIncompleteBody, err)
	}
	if whole := crc32.Checksum(data, castagnoli); req.CRC32C != nil && *req.CRC32C != whole {
		return BlobInfo{}, fmt.Errorf("%w: crc32c %08x, body %08x", ErrBadDigest, *req.CRC32C, whole)
	}
	identity := raftfsm.RandomID()
	c := &raftfsm.Command{
		Kind: raftfsm.KindCommitInline, Size: req.Size, Key: req.Key,
		ContentType: req.ContentType, Created: s.cfg.Now().UnixNano(),
		ChunkSize: ChunkSize, Checksums: []uint32{chunkChecksum(identity, 0, data)}, Identity: identity,
		IfMatch: parseETag(req.Cond.IfMatch), IfNoneMatch: req.Cond.IfNoneMatchAny, Data: data,
	}
	if req.Cond.IfMatch != "" && c.IfMatch == 0 {
		return BlobInfo{}, ErrPreconditionFailed
	}
	start := time.Now()
	res, err := s.decide(ctx, c)
	if errors.Is(err, raftfsm.ErrNoSpace) && s.pool.drain(ctx, false) > 0 {
		// The pool held the space. The refusal is the first attempt's
		// definite outcome, recorded under its request id: the retry is
		// another command, with an id of its own, or the state machine
		// would answer it with that record.
		c.RequestID = 0
		res, err = s.decide(ctx, c)
	}
	s.cfg.ObserveStage("commit", time.Since(start))
	if err != nil {
		return BlobInfo{}, mapErr(err)
	}
	return committed(c, res), nil
}

// trimTail replaces the upload's last, partly filled lpage by a reservation
// of exactly the tail's size, copying the tail's bytes over.
func (s *Store) trimTail(ctx context.Context, u *upload, written int64) error {
	last := len(u.ids) - 1
	lastID := u.ids[last]
	tailStart := u.ext.start[len(u.ext.exts)-1]
	tail := written - tailStart
	old := u.ext.exts[len(u.ext.exts)-1]

	var rest extents
	rest.add(u.ext.exts[:len(u.ext.exts)-1]...)
	u.ext = rest
	u.ids = u.ids[:last]
	if err := u.reserve(ctx, tail); err != nil {
		u.ids = append(u.ids, lastID) // so it is aborted too
		return err
	}
	bufp := s.bufs.Get().(*[]byte)
	defer s.bufs.Put(bufp)
	buf := *bufp
	for off := int64(0); off < tail; off += int64(len(buf)) {
		n := min(int64(len(buf)), tail-off)
		if _, err := s.vol.ReadAt(buf[:n], old.Offset+off); err != nil {
			u.ids = append(u.ids, lastID)
			return fmt.Errorf("store: move tail: %w", err)
		}
		if err := u.writeAt(buf[:n], tailStart+off); err != nil {
			u.ids = append(u.ids, lastID)
			return fmt.Errorf("store: move tail: %w", err)
		}
	}
	// The tail reservation replaced lastID, which is freed now.
	ctx2, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.raft.Propose(ctx2, &raftfsm.Command{Kind: raftfsm.KindAbort, ReservationID: lastID}); err != nil {
		s.log.Warn("abort replaced reservation; it will expire", "reservation", lastID, "err", err)
	}
	return nil
}

// renewing renews the upload's lease (renewIfDue) before every read of
// its body, so an upload that trickles in, slower than a chunk per
// quarter TTL, is renewed while it makes progress.
type renewing struct {
	u   *upload
	ctx context.Context
	r   io.Reader
}

func (r renewing) Read(p []byte) (int, error) {
	if err := r.u.renewIfDue(r.ctx); err != nil {
		return 0, err
	}
	return r.r.Read(p)
}

// readChunk fills p from r. It returns io.EOF (with n possibly > 0) when r
// ended cleanly before p was full, and r's other errors as they are.
func readChunk(r io.Reader, p []byte) (int, error) {
	n := 0
	for n < len(p) {
		k, err := r.Read(p[n:])
		n += k
		if err != nil {
			return n, err
		}
	}
	return n, nil
}
