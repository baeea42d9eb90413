// Package store coordinates blob operations on a node: it turns a PUT into
// Reserve (through Raft), streaming the body into the reserved extents with
// per-chunk checksums, a batched fdatasync, and Commit (through Raft); and a
// GET into a linearizable catalog lookup plus verified reads.
//
// Order on the write path is data before pointer: the bytes are durable
// before the Commit that makes them visible is proposed, so a crash at any
// point leaves either no visible blob (the reservation is aborted or
// expires) or a blob whose bytes are on disk.
//
// A PUT of known size up to Config.InlineMax is one KindCommitInline entry
// that carries the bytes: data and pointer become durable together with
// the entry, and the state machine writes the bytes on every replica (see
// raftfsm's FSM for why replay cannot write them over newer data).
//
// Checksums are CRC32C per chunk, seeded with the upload's identity (its
// first reservation id, or a random id for an inline blob) and the chunk's
// index. Extents freed and reused by
// another blob therefore never verify as the old blob's bytes, so a read
// racing a delete fails instead of returning another blob's data.
package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/raftfsm"
	"github.com/blobnode/blobnode/volume"
)

// ChunkSize is the unit of checksumming and verification.
const ChunkSize = 256 << 10

// MaxContentTypeLen bounds a blob's content type, in bytes.
const MaxContentTypeLen = raftfsm.MaxContentTypeLen

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Proposer is the Raft side the store drives (a *raftfsm.Node).
type Proposer interface {
	Propose(ctx context.Context, c *raftfsm.Command) (raftfsm.Result, error)
	ReadBarrier(ctx context.Context) error
	IsLeader() bool
	// ReadOnly is nil while the node accepts writes, else why not (an
	// error matching raftfsm.ErrReadOnly).
	ReadOnly() error
}

// Config tunes a Store.
type Config struct {
	// ReservationTTL bounds how long an upload may take before its
	// reservation expires (default 1h).
	ReservationTTL time.Duration
	// ReapInterval is how often the leader frees expired reservations
	// (default a quarter of ReservationTTL, at most 30s).
	ReapInterval time.Duration
	Logger       *slog.Logger
	// ObserveStage, when set, receives the duration of each stage of a PUT
	// ("reserve", "write", "sync", "commit") for metrics.
	ObserveStage func(stage string, d time.Duration)
	// Now is the clock used for proposals (Created, deadlines); default
	// time.Now. Never read inside the state machine.
	Now func() time.Time
	// InlineMax is the largest blob of known size whose bytes travel in
	// its Raft entry (one durable write per PUT instead of a data sync
	// then a commit). 0: DefaultInlineMax; negative: never inline. Larger
	// values are capped at raftfsm.MaxInlineSize.
	InlineMax int64
	// Replicas, in a group, copies each streamed upload's bytes to the
	// other replicas before its Commit (nil: a one-node group).
	Replicas Replicator
	// Chunks, in a group, fetches chunks from replicas for read repair and
	// the repairer (nil: a one-node group, nothing to repair from).
	Chunks ChunkSource
	// OldMarks, after an unclean start, says which version of a key this
	// node held verified data for before it (the catalog set aside): the
	// bytes were durable when marked (a streamed blob's before its Commit,
	// a repaired one's before the mark, an inline one's replayed from the
	// log), so the repairer marks such a blob again without reading it.
	OldMarks func(key string) (version uint64, ok bool)
	// ScrubRate is the bytes per second the scrubber re-verifies (and
	// repairs) once the repair backlog is empty, in a group (<= 0: off).
	ScrubRate int64
}

// DefaultInlineMax keeps inline entries small: the Raft log holds up to
// snapshot-threshold + trailing-logs entries, so its size on disk scales
// with the largest inline blob (about 300 MiB at 16 KiB with the default
// 8192 + 10240 entries).
const DefaultInlineMax = 16 << 10

// Store implements the blob operations of one node. Close stops its reaper.
type Store struct {
	raft  Proposer
	fsm   *raftfsm.FSM
	vol   *volume.Volume
	lpage int64
	spage int64
	pool  *reservationPool
	cfg   Config
	log   *slog.Logger

	bufs sync.Pool // *[]byte of ChunkSize

	// Chunk failures met by reads (see ChunkStats), counted where they
	// are logged (chunkFailed).
	corrupt, readErrors atomic.Uint64
	// Repair's counters: chunks written back from a replica, their
	// bytes, and the blobs this node has not verified (last pass).
	repaired, repairedBytes, scrubbedBytes, inherited, replicaBytes atomic.Uint64
	backlog                                                         atomic.Int64

	// live holds, for each upload in progress, the earliest deadline of
	// the reservations it writes into; the reaper never expires one of
	// those (see reapNow). An upload is tracked from before its Reserve is
	// proposed until it committed or aborted.
	liveMu sync.Mutex // guards live
	live   map[*upload]int64

	stop chan struct{}
	wg   sync.WaitGroup
	once sync.Once
	// bgMu orders background starts against Close: once closing is set
	// (before wg.Wait) no task is added, so Add never races Wait.
	bgMu    sync.Mutex
	closing bool
}

// New returns a Store and starts its reaper goroutine.
func New(p Proposer, fsm *raftfsm.FSM, vol *volume.Volume, cfg Config) *Store {
	if cfg.ReservationTTL <= 0 {
		cfg.ReservationTTL = time.Hour
	}
	if cfg.ReapInterval <= 0 {
		// Often enough that an abandoned reservation outlives its TTL by
		// at most a quarter of it.
		cfg.ReapInterval = min(30*time.Second, max(cfg.ReservationTTL/4, 100*time.Millisecond))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.InlineMax == 0 {
		cfg.InlineMax = DefaultInlineMax
	}
	cfg.InlineMax = min(cfg.InlineMax, raftfsm.MaxInlineSize)
	if cfg.ObserveStage == nil {
		cfg.ObserveStage = func(string, time.Duration) {}
	}
	s := &Store{
		raft: p, fsm: fsm, vol: vol, cfg: cfg, log: cfg.Logger,
		lpage: vol.Superblock().Geometry.LpageSize(),
		spage: vol.Superblock().Geometry.SpageSize(),
		stop:  make(chan struct{}),
		live:  map[*upload]int64{},
	}
	s.pool = newPool(s)
	s.bufs.New = func() any { b := make([]byte, ChunkSize); return &b }
	s.wg.Add(1)
	go s.reap()
	if cfg.Chunks != nil {
		s.backlog.Store(-1) // not known before the repairer's first pass
		s.wg.Add(1)
		go s.repairer()
	}
	return s
}

// Close aborts the pooled reservations and stops the store's goroutines.
// In-flight calls are the caller's to drain first; Raft must still run.
func (s *Store) Close() error {
	s.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.pool.drain(ctx, true)
		s.bgMu.Lock()
		s.closing = true
		s.bgMu.Unlock()
		close(s.stop)
		s.wg.Wait()
	})
	return nil
}

// ChunkStats returns the chunk failures met by reads so far.
func (s *Store) ChunkStats() ChunkStats {
	return ChunkStats{
		Corrupt: s.corrupt.Load(), ReadErrors: s.readErrors.Load(),
		Repaired: s.repaired.Load(), RepairedBytes: s.repairedBytes.Load(), RepairBacklog: s.backlog.Load(),
		ScrubbedBytes: s.scrubbedBytes.Load(), InheritedMarks: s.inherited.Load(), ReplicaBytes: s.replicaBytes.Load(),
	}
}

// PooledBytes is the space held by reservations made ahead for small
// uploads (counted as used by the allocator).
func (s *Store) PooledBytes() int64 { return s.pool.pooledBytes() }

// decide proposes c and returns the state machine's refusal, if any, as
// the error: for callers to whom a refused command is a failed request.
func (s *Store) decide(ctx context.Context, c *raftfsm.Command) (raftfsm.Result, error) {
	res, err := s.raft.Propose(ctx, c)
	if err == nil {
		err = res.Err
	}
	return res, err
}

// abortLater aborts reservations in the background: ones no upload
// holds, or whose Reserve may have been applied although its proposal
// failed (an Abort of a reservation that does not exist changes nothing).
func (s *Store) abortLater(ids ...uint64) {
	started := s.background(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, id := range ids {
			if _, err := s.raft.Propose(ctx, &raftfsm.Command{Kind: raftfsm.KindAbort, ReservationID: id}); err != nil {
				s.log.Warn("abort reservation; it will expire", "reservation", id, "err", err)
			}
		}
	})
	if !started {
		s.log.Warn("store closing: reservations left to expire", "reservations", ids)
	}
}

// background runs fn on a goroutine Close waits for, unless the store is
// closing (then it returns false and fn does not run).
func (s *Store) background(fn func()) bool {
	s.bgMu.Lock()
	defer s.bgMu.Unlock()
	if s.closing {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
	return true
}

// abortRetryMin and abortRetryMax bound the wait of abortWhenWritable
// between Aborts refused as read-only.
const (
	abortRetryMin = 50 * time.Millisecond
	abortRetryMax = 5 * time.Second
)

// abortWhenWritable aborts reservations once the node accepts writes
// again: an upload that failed because the node turned read-only may hold
// some (or its Reserve may still be applied after recovery). If the store
// closes first they expire at their deadline (or, on a single voter, at
// the next start).
func (s *Store) abortWhenWritable(ids []uint64) {
	started := s.background(func() {
		retry := abortRetryMin
		for len(ids) > 0 {
			for {
				// The channel is taken before the check, so a recovery
				// between the two still wakes the wait.
				changed := s.fsm.ReadOnlyChanged()
				if s.raft.ReadOnly() == nil {
					break
				}
				select {
				case <-s.stop:
					return
				case <-changed:
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err := s.raft.Propose(ctx, &raftfsm.Command{Kind: raftfsm.KindAbort, ReservationID: ids[0]})
			cancel()
			switch {
			case err == nil:
				ids = ids[1:]
			case errors.Is(err, raftfsm.ErrReadOnly):
				// Read-only again, here or at the leader, whose recovery
				// this node is not told of: look again after a while.
				t := time.NewTimer(retry)
				select {
				case <-s.stop:
					t.Stop()
					return
				case <-t.C:
				}
				retry = min(2*retry, abortRetryMax)
			default:
				s.log.Warn("abort reservation; it will expire", "reservation", ids[0], "err", err)
				ids = ids[1:]
			}
		}
	})
	if !started {
		s.log.Warn("store closing: reservations left to expire", "reservations", ids)
	}
}

// reap proposes Expire on the leader whenever reservations are past their
// deadline (uploads whose coordinator died or could not abort).
func (s *Store) reap() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.ReapInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if !s.raft.IsLeader() {
			continue
		}
		now := s.reapNow()
		var expired []catalog.Reservation
		if err := s.fsm.View(func(tx *catalog.Tx) error {
			var err error
			expired, err = tx.ExpiredReservations(now, 1)
			return err
		}); err != nil || len(expired) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := s.raft.Propose(ctx, &raftfsm.Command{Kind: raftfsm.KindExpire, Now: now}); err != nil {
			s.log.Warn("expire reservations", "err", err)
		}
		cancel()
	}
}

// reapNow is the time the reaper expires reservations at: the clock, but
// before the earliest deadline of any upload still writing. A slow upload
// may outlast its reservation (the body timeout bounds only silence); had
// its pages been freed, another blob would be given them and then be
// overwritten by the rest of the upload.
func (s *Store) reapNow() int64 {
	now := s.cfg.Now().UnixNano()
	s.liveMu.Lock()
	defer s.liveMu.Unlock()
	for _, d := range s.live {
		if d <= now {
			now = d - 1
		}
	}
	return now
}

// track records that u writes into a reservation due at deadline.
func (u *upload) track(deadline int64) {
	u.s.liveMu.Lock()
	defer u.s.liveMu.Unlock()
	if d, ok := u.s.live[u]; !ok || deadline < d {
		u.s.live[u] = deadline
	}
}

// retrack records that u's earliest deadline is now deadline (a renewal).
func (u *upload) retrack(deadline int64) {
	u.s.liveMu.Lock()
	defer u.s.liveMu.Unlock()
	u.s.live[u] = deadline
}

// noteLease moves u's lease start back to when a reservation due at
// deadline was made, if that is earlier.
func (u *upload) noteLease(deadline int64) {
	start := time.Unix(0, deadline).Add(-u.s.cfg.ReservationTTL)
	if u.leaseStart.IsZero() || start.Before(u.leaseStart) {
		u.leaseStart = start
	}
}

// untrack ends the protection of u's reservations from the reaper.
func (u *upload) untrack() {
	u.s.liveMu.Lock()
	defer u.s.liveMu.Unlock()
	delete(u.s.live, u)
}

// checksumSeed is the CRC32C state a chunk's checksum starts from.
func checksumSeed(identity uint64, chunk int64) uint32 {
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], identity)
	binary.LittleEndian.PutUint64(b[8:], uint64(chunk))
	return crc32.Update(0, castagnoli, b[:])
}

func chunkChecksum(identity uint64, chunk int64, data []byte) uint32 {
	return crc32.Update(checksumSeed(identity, chunk), castagnoli, data)
}

// ETag renders a version as a strong entity tag.
func ETag(version uint64) string { return `"` + strconv.FormatUint(version, 16) + `"` }

// parseETag returns the version an entity tag names, or 0 if it names none
// of ours (so a condition on it can never hold).
func parseETag(tag string) uint64 {
	tag = strings.TrimPrefix(tag, "W/")
	if len(tag) < 3 || tag[0] != '"' || tag[len(tag)-1] != '"' {
		return 0
	}
	v, err := strconv.ParseUint(tag[1:len(tag)-1], 16, 64)
	if err != nil {
		return 0
	}
	return v
}

// mapErr turns Raft and state-machine errors into the store's.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raftfsm.ErrOutcomeUnknown):
		// Before ErrReadOnly: a command Raft took before the disk failed
		// may still apply.
		return fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
	case errors.Is(err, raftfsm.ErrReadOnly):
		reason := "I/O error"
		var ro *raftfsm.ReadOnlyError
		if errors.As(err, &ro) {
			reason = ro.Reason()
		}
		return &ReadOnlyError{Reason: reason, Err: err}
	case errors.Is(err, raftfsm.ErrNotLeader), errors.Is(err, raftfsm.ErrStopped), errors.Is(err, raftfsm.ErrClosed):
		return fmt.Errorf("%w: %w", ErrUnavailable, err)
	case errors.Is(err, raftfsm.ErrNoSpace):
		return ErrNoSpace
	case errors.Is(err, raftfsm.ErrBadCommand):
		// Only sizes can break a command's limits here: too many chunks
		// or reservations for one blob.
		return fmt.Errorf("%w: %w", ErrTooLarge, err)
	case errors.Is(err, raftfsm.ErrPreconditionFailed):
		return ErrPreconditionFailed
	case errors.Is(err, raftfsm.ErrNotFound):
		return ErrNotFound
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		return err
	}
	return err
}

func info(b catalog.Blob) BlobInfo {
	return BlobInfo{
		Key: b.Key, Size: b.Size, Version: b.Version, ETag: ETag(b.Version),
		ContentType: b.ContentType, Created: time.Unix(0, b.Created).UTC(), Replicas: b.Replicas,
	}
}
