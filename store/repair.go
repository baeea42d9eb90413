package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/raftfsm"
)

// Repair: every node of a group holds verified data for every committed
// blob. A read that finds a chunk missing or corrupt here fetches it from
// a replica that holds it (read repair); a background repairer walks the
// blobs this node has not verified yet (after downtime, a partition, a
// snapshot install, a wiped directory) and does the same for each. A
// chunk fetched from a peer is verified against the blob's checksum
// before it is written back or served, and it is written back only
// through a claim on the blob's pages (raftfsm.BeginBlobWrite): the
// version must be current in this node's applied state, and a delete
// that frees the pages meanwhile revokes the write.

// ChunkSource fetches a verified chunk of a blob from another replica
// (cluster.Coordinator implements it).
type ChunkSource interface {
	FetchChunk(ctx context.Context, b catalog.Blob, chunk int64) ([]byte, error)
}

// readRepair is given a chunk that failed here: it records the failure,
// fetches the chunk from a replica, verifies it, writes it back and
// returns it.
func (s *Store) readRepair(ctx context.Context, b catalog.Blob, ext *extents, ce *ChunkError) ([]byte, error) {
	s.chunkFailed(ce)
	data, err := s.fetchVerified(ctx, b, ce.Chunk)
	if err != nil {
		s.log.Warn("read repair failed", "key", b.Key, "version", b.Version, "chunk", ce.Chunk, "err", err)
		return nil, err
	}
	if err := s.writeBack(b, ext, map[int64][]byte{ce.Chunk: data}); err != nil {
		s.log.Warn("read repair: write back failed", "key", b.Key, "chunk", ce.Chunk, "err", err)
	}
	return data, nil
}

func (s *Store) fetchVerified(ctx context.Context, b catalog.Blob, c int64) ([]byte, error) {
	data, err := s.cfg.Chunks.FetchChunk(ctx, b, c)
	if err != nil {
		return nil, err
	}
	want := min(b.ChunkSize, b.Size-c*b.ChunkSize)
	if int64(len(data)) != want || chunkChecksum(b.ReservationID, c, data) != b.Checksums[c] {
		return nil, fmt.Errorf("%w: the replica's copy of chunk %d does not verify", ErrCorruptData, c)
	}
	return data, nil
}

// writeBack writes verified chunks of blob b into this node's copy.
func (s *Store) writeBack(b catalog.Blob, ext *extents, chunks map[int64][]byte) error {
	claim, err := s.fsm.BeginBlobWrite(b.Key, b.Version)
	if err != nil {
		return err
	}
	defer claim.End()
	for c, data := range chunks {
		err := ext.each(c*b.ChunkSize, int64(len(data)), func(dev int64, from, to int) error {
			return claim.WriteAt(s.vol, data[from:to], dev)
		})
		if err != nil {
			return err
		}
		s.repaired.Add(1)
		s.repairedBytes.Add(uint64(len(data)))
	}
	return nil
}

// ReadChunk returns chunk c of key's version, verified, for a peer that
// repairs its copy. It waits (within ctx) until this node has applied the
// version. ErrNotFound: the version is not current here; a *ChunkError:
// this node's copy fails too.
func (s *Store) ReadChunk(ctx context.Context, key string, version uint64, c int64) ([]byte, error) {
	if err := s.fsm.WaitApplied(ctx, version); err != nil {
		return nil, mapErr(err)
	}
	b, ok, err := s.lookup(key)
	if err != nil {
		return nil, err
	}
	if !ok || b.Version != version || c < 0 || c >= int64(len(b.Checksums)) {
		return nil, ErrNotFound
	}
	var ext extents
	ext.add(b.Extents...)
	return loadChunk(s.vol, b, &ext, chunkBuffer(b), c)
}

// repairBatch bounds the blobs one pass of the repairer looks at, and
// repairInterval is the pause between passes; a pass runs only when there
// may be work (see repairer), and at least every repairRescan.
const (
	repairBatch    = 256
	repairInterval = time.Second
	repairRescan   = time.Minute
)

// repairer verifies, one batch per pass, the blobs this node has not
// marked as held verified, repairs the chunks that fail from replicas,
// and marks them. A pass walks the whole catalog, so it runs only when
// there may be work: at start, while the last pass left a backlog, when
// the state machine committed or restored blobs without marking them
// (fsm.Unmarked changed), and every repairRescan. It runs until Close.
func (s *Store) repairer() {
	defer s.wg.Done()
	t := time.NewTicker(repairInterval)
	defer t.Stop()
	after, scrubbed := "", ""
	seen, first := uint64(0), true
	var lastPass time.Time
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		if u := s.fsm.Unmarked(); first || u != seen || after != "" || s.backlog.Load() > 0 || time.Since(lastPass) >= repairRescan {
			first, seen, lastPass = false, u, time.Now()
			next, err := s.repairPass(after)
			if err != nil && !errors.Is(err, raftfsm.ErrStopped) {
				s.log.Warn("repair pass", "err", err)
			}
			after = next
		}
		if s.cfg.ScrubRate > 0 && s.backlog.Load() == 0 {
			scrubbed = s.scrubPass(scrubbed, s.cfg.ScrubRate*int64(repairInterval/time.Second))
		}
	}
}

// scrubPass re-verifies blobs this node holds verified, in key order
// after key after, reading at most budget bytes (at least one blob), and
// repairs what fails. It returns where the next pass starts ("" from
// the beginning): the scrubber walks the whole catalog at ScrubRate bytes
// a second.
func (s *Store) scrubPass(after string, budget int64) string {
	var todo []catalog.Blob
	var marked []bool
	var size int64
	_ = s.fsm.View(func(tx *catalog.Tx) error {
		blobs, _, err := tx.ListBlobs("", after, repairBatch)
		if err != nil {
			return err
		}
		for _, b := range blobs {
			if len(todo) > 0 && size+b.Size > budget {
				break
			}
			v, ok, err := tx.LocalVersion(b.Key)
			if err != nil {
				return err
			}
			todo = append(todo, b)
			marked = append(marked, ok && v == b.Version)
			size += b.Size
		}
		return nil
	})
	if len(todo) == 0 {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i, b := range todo {
		s.scrubbedBytes.Add(uint64(b.Size))
		if err := s.repairBlob(ctx, b, marked[i]); err != nil {
			s.log.Warn("scrub: a blob could not be repaired", "key", b.Key, "version", b.Version, "err", err)
		}
	}
	return todo[len(todo)-1].Key
}

// repairPass looks at up to repairBatch unverified blobs after key after
// and returns where the next pass starts ("" from the beginning).
func (s *Store) repairPass(after string) (string, error) {
	var todo []catalog.Blob
	backlog := 0
	last := ""
	err := s.fsm.View(func(tx *catalog.Tx) error {
		return tx.ForEachBlob(func(b catalog.Blob) error {
			v, ok, err := tx.LocalVersion(b.Key)
			if err != nil {
				return err
			}
			if ok && v == b.Version {
				return nil
			}
			backlog++
			if b.Key > after && len(todo) < repairBatch {
				todo = append(todo, b)
				last = b.Key
			}
			return nil
		})
	})
	s.backlog.Store(int64(backlog))
	if err != nil {
		return "", err
	}
	if len(todo) == 0 {
		return "", nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, b := range todo {
		select {
		case <-s.stop:
			return "", nil
		default:
		}
		if err := s.repairBlob(ctx, b, false); err != nil {
			s.log.Debug("repair blob", "key", b.Key, "version", b.Version, "err", err)
		}
	}
	if len(todo) < repairBatch {
		last = ""
	}
	return last, nil
}

// repairBlob verifies every chunk of b here, fetches and writes back the
// ones that fail, and marks b held verified once all do. marked says b's
// version already is: a blob the scrubber finds intact is then left as
// it is (a catalog write per scrubbed blob would cost the scrubber more
// than its reads).
func (s *Store) repairBlob(ctx context.Context, b catalog.Blob, marked bool) error {
	if b.Version > s.fsm.Applied() {
		return nil // its inline bytes may not be written yet
	}
	if s.cfg.OldMarks != nil && !marked { // the scrubber reads what it scrubs
		if v, ok := s.cfg.OldMarks(b.Key); ok && v == b.Version {
			err := s.fsm.MarkLocal(b.Key, b.Version)
			if err == nil {
				s.inherited.Add(1)
			}
			return err
		}
	}
	bad, err := Verify(s.vol, b)
	if err != nil {
		return err
	}
	if len(bad) == 0 && marked {
		return nil
	}
	if len(bad) > 0 && !s.stillCurrent(b) {
		// b was replaced or deleted since the pass listed it, and its
		// pages reused: nothing to repair (a new version is repaired on
		// its own).
		return nil
	}
	if len(bad) > 0 {
		if s.cfg.Chunks == nil {
			return fmt.Errorf("%d chunks fail and there is no replica to repair from", len(bad))
		}
		fixed := map[int64][]byte{}
		for _, ce := range bad {
			s.chunkFailed(ce)
			data, err := s.fetchVerified(ctx, b, ce.Chunk)
			if err != nil {
				return err
			}
			fixed[ce.Chunk] = data
		}
		var ext extents
		ext.add(b.Extents...)
		if err := s.writeBack(b, &ext, fixed); err != nil {
			return err
		}
	}
	// The mark outlives a crash (an unclean start inherits it without
	// reading the blob), so the bytes must be durable first: written back
	// just now, or found intact but perhaps only in the page cache (a
	// replica stream cut off in its sync, an unsynced write-back).
	if err := s.vol.SyncData(ctx); err != nil {
		return err
	}
	return s.fsm.MarkLocal(b.Key, b.Version)
}
