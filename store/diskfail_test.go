package store

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blobnode/blobnode/volume"
)

// heapFailDevice fails writes at or above from (the heap) with err while
// err is set; the journal and allocator state below it keep working, as
// when only blob data hits a bad or full region.
type heapFailDevice struct {
	volume.Device
	mu   sync.Mutex // guards from, err
	from int64
	err  error
}

func (d *heapFailDevice) set(from int64, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.from, d.err = from, err
}

func (d *heapFailDevice) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	err := d.err
	if off < d.from {
		err = nil
	}
	d.mu.Unlock()
	if err != nil {
		return 0, &fs.PathError{Op: "write", Path: "volume.blob", Err: err}
	}
	return d.Device.WriteAt(p, off)
}

// TestDataWriteFailureFreesReservation: when writing a blob's bytes fails
// (disk full or failing under the volume), the PUT fails with that error
// (not a refusal: the node is not read-only, the API answers 500), nothing
// is stored, its reservation is freed at once, and a later PUT succeeds.
func TestDataWriteFailureFreesReservation(t *testing.T) {
	for _, tt := range []struct {
		name  string
		errno syscall.Errno
	}{
		{"disk full", syscall.ENOSPC},
		{"disk failing", syscall.EIO},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := volume.Geometry{SpageShift: 12, LpageShift: 18, VolumeSize: 16 << 20}
			dev := &heapFailDevice{Device: volume.NewMemDevice(g.VolumeSize, 1)}
			s := newReviewStackOn(t, g, Config{}, dev)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			kept := reviewBody(1, 300<<10) // above the pooled sizes: reserved per upload
			if err := s.put(ctx, "kept", kept); err != nil {
				t.Fatalf("PUT kept: %v", err)
			}
			used, open := s.alloc.Stats().UsedBytes, s.reservations(t)

			dev.set(s.vol.Superblock().Layout.HeapOffset, tt.errno)
			body := reviewBody(2, 300<<10)
			err := s.put(ctx, "k", body)
			if !errors.Is(err, tt.errno) || errors.Is(err, ErrReadOnly) || errors.Is(err, ErrNoSpace) {
				t.Fatalf("PUT with failing data writes = %v; want %v, not a refusal", err, tt.errno)
			}
			if ro := s.node.ReadOnly(); ro != nil {
				t.Fatalf("a data write error made the node read-only: %v", ro)
			}
			if got := s.alloc.Stats().UsedBytes; got != used {
				t.Errorf("used bytes %d after the failed PUT, want %d (reservation not freed)", got, used)
			}
			if got := s.reservations(t); got != open {
				t.Errorf("%d open reservations after the failed PUT, want %d", got, open)
			}
			if _, err := s.get(t, "k"); !errors.Is(err, ErrNotFound) {
				t.Errorf("GET after the failed PUT = %v; want ErrNotFound", err)
			}

			dev.set(0, nil)
			if err := s.put(ctx, "k", body); err != nil {
				t.Fatalf("PUT after the disk recovered: %v", err)
			}
			s.requireBlobs(t, map[string][]byte{"kept": kept, "k": body})
		})
	}
}

// TestInlineWriteFailureKeepsNodeUp: a small blob's bytes are written by
// the state machine (KindCommitInline). When that write fails (disk full
// or failing under the volume), the node must not stop: it is read-only
// while the write fails, keeps serving reads, and once the disk recovers
// it finishes the entry and takes writes again.
func TestInlineWriteFailureKeepsNodeUp(t *testing.T) {
	for _, tt := range []struct {
		name  string
		errno syscall.Errno
	}{
		{"disk full", syscall.ENOSPC},
		{"disk failing", syscall.EIO},
	} {
		t.Run(tt.name, func(t *testing.T) {
			g := volume.Geometry{SpageShift: 12, LpageShift: 18, VolumeSize: 16 << 20}
			dev := &heapFailDevice{Device: volume.NewMemDevice(g.VolumeSize, 1)}
			s := newReviewStackOn(t, g, Config{}, dev)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			kept := reviewBody(1, 3000)
			if err := s.put(ctx, "kept", kept); err != nil {
				t.Fatalf("PUT kept: %v", err)
			}

			dev.set(s.vol.Superblock().Layout.HeapOffset, tt.errno)
			body := reviewBody(2, 4000)
			if err := s.put(ctx, "k", body); err == nil {
				t.Fatal("inline PUT succeeded while data writes fail")
			}
			if err := s.fsm.Err(); err != nil {
				t.Fatalf("a failed inline data write stopped the state machine: %v", err)
			}
			if ro := s.node.ReadOnly(); !errors.Is(ro, tt.errno) {
				t.Fatalf("ReadOnly() = %v while inline data writes fail; want it to match %v", ro, tt.errno)
			}
			if got, err := s.get(t, "kept"); err != nil || !bytes.Equal(got, kept) {
				t.Fatalf("GET kept while read-only: %d bytes, %v", len(got), err)
			}

			dev.set(0, nil)
			s.waitWritable(t, ctx)
			body2 := reviewBody(3, 5000)
			if err := s.put(ctx, "k", body2); err != nil {
				t.Fatalf("PUT after the disk recovered: %v", err)
			}
			s.requireBlobs(t, map[string][]byte{"kept": kept, "k": body2})
		})
	}
}

// TestGetInlineNotYetWritten: an inline blob is in the catalog from its
// batch's catalog commit, but its bytes reach the heap only afterwards
// (and, while the volume refuses writes, not until it recovers). A GET in
// between must not read the unwritten pages and report corruption: it is
// refused as read-only (or waits until the bytes are written), and once
// the disk recovers it returns the blob.
func TestGetInlineNotYetWritten(t *testing.T) {
	g := volume.Geometry{SpageShift: 12, LpageShift: 18, VolumeSize: 16 << 20}
	dev := &heapFailDevice{Device: volume.NewMemDevice(g.VolumeSize, 1)}
	s := newReviewStackOn(t, g, Config{}, dev)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	dev.set(s.vol.Superblock().Layout.HeapOffset, syscall.EIO)
	body := reviewBody(2, 4000)
	if err := s.put(ctx, "k", body); err == nil {
		t.Fatal("inline PUT succeeded while data writes fail")
	}
	for _, stale := range []bool{false, true} {
		o, err := s.st.Get(ctx, "k", ReadOptions{Stale: stale})
		if err == nil {
			var buf bytes.Buffer
			err = o.WriteRange(ctx, &buf, 0, o.Info().Size)
			o.Close()
		}
		if errors.Is(err, ErrCorruptData) {
			t.Fatalf("GET (stale %v) of an inline blob whose bytes are not written yet: %v", stale, err)
		}
		if !errors.Is(err, ErrReadOnly) {
			t.Fatalf("GET (stale %v) while its bytes wait for the disk: %v, want ErrReadOnly", stale, err)
		}
	}

	dev.set(0, nil)
	s.waitWritable(t, ctx)
	if got, err := s.get(t, "k"); err != nil || !bytes.Equal(got, body) {
		t.Fatalf("GET k after the disk recovered: %d bytes, %v", len(got), err)
	}
}
