package store

import (
	"bytes"
	"context"
	"io"
	"sync/atomic"
	"testing"
	"time"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/raftfsm"
	"github.com/blobnode/blobnode/volume"
)

// pausedReader yields head, then blocks until release is closed, then
// yields tail. reached is closed when head has been read.
type pausedReader struct {
	head, tail []byte
	reached    chan struct{}
	release    chan struct{}
	paused     bool
}

func (p *pausedReader) Read(b []byte) (int, error) {
	if len(p.head) > 0 {
		n := copy(b, p.head)
		p.head = p.head[n:]
		return n, nil
	}
	if !p.paused {
		p.paused = true
		close(p.reached)
		<-p.release
	}
	if len(p.tail) == 0 {
		return 0, io.EOF
	}
	n := copy(b, p.tail)
	p.tail = p.tail[n:]
	return n, nil
}

// A slow but steady upload may outlast its reservation's TTL (the body
// timeout bounds only silence). The reaper must not free the pages of an
// upload that is still writing into them: another blob would be given
// them and then overwritten by the rest of the slow upload.
func TestReaperSparesReservationsOfLiveUploads(t *testing.T) {
	g := volume.Geometry{SpageShift: 12, LpageShift: 18, VolumeSize: 16 << 20}
	const ttl = time.Hour
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	s := newReviewStack(t, g, Config{
		ReservationTTL: ttl, ReapInterval: time.Millisecond,
		Now: func() time.Time { return time.Unix(0, now.Load()) },
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	slow := reviewBody(1, 512<<10)
	body := &pausedReader{head: slow[:ChunkSize], tail: slow[ChunkSize:], reached: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := s.st.Put(ctx, PutRequest{Key: "slow", Size: int64(len(slow)), Body: body})
		done <- err
	}()
	select {
	case <-body.reached:
	case err := <-done:
		t.Fatalf("slow PUT ended early: %v", err)
	}

	// An abandoned reservation, due before the slow upload's: once it is
	// gone, the reaper has run with the clock past both deadlines.
	const orphan = 77
	if _, err := s.node.Propose(ctx, &raftfsm.Command{Kind: raftfsm.KindReserve, ReservationID: orphan, Size: 4096, Deadline: now.Load() + 1}); err != nil {
		t.Fatal(err)
	}
	now.Add(int64(2 * ttl))
	for {
		var ok bool
		if err := s.fsm.View(func(tx *catalog.Tx) error {
			var err error
			_, ok, err = tx.GetReservation(orphan)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the reaper did not expire the abandoned reservation")
		}
		time.Sleep(time.Millisecond) // polling with a deadline
	}

	other := reviewBody(2, 512<<10)
	if err := s.put(ctx, "other", other); err != nil {
		t.Fatalf("PUT other: %v", err)
	}
	close(body.release)
	slowErr := <-done
	got, err := s.get(t, "other")
	if err != nil || !bytes.Equal(got, other) {
		t.Fatalf("blob other after the slow upload finished: %d bytes, %v (the slow upload wrote into its pages)", len(got), err)
	}
	if slowErr != nil {
		t.Fatalf("slow PUT: %v", slowErr)
	}
	if got, err := s.get(t, "slow"); err != nil || !bytes.Equal(got, slow) {
		t.Fatalf("GET slow: %d bytes, %v", len(got), err)
	}
}

// TestUploadRenewsItsLease: an upload that keeps making progress renews
// its reservations' deadline through Raft, so it is not expired under it
// by a reaper on another node (which knows nothing of it).
func TestUploadRenewsItsLease(t *testing.T) {
	g := volume.Geometry{SpageShift: 12, LpageShift: 18, VolumeSize: 16 << 20}
	const ttl = time.Hour
	var now atomic.Int64
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()
	now.Store(start)
	cfg := Config{
		ReservationTTL: ttl, ReapInterval: time.Hour,
		Now: func() time.Time { return time.Unix(0, now.Load()) },
	}
	s := newReviewStack(t, g, cfg)
	s.st.Close()
	counting := &renewCounter{Proposer: s.node}
	s.st = New(counting, s.fsm, s.vol, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	slow := reviewBody(3, 512<<10)
	body := &pausedReader{head: slow[:ChunkSize], tail: slow[ChunkSize:], reached: make(chan struct{}), release: make(chan struct{})}
	done := make(chan error, 1)
	go func() {
		_, err := s.st.Put(ctx, PutRequest{Key: "slow", Size: int64(len(slow)), Body: body})
		done <- err
	}()
	<-body.reached
	deadlines := func() []int64 {
		var ds []int64
		if err := s.fsm.View(func(tx *catalog.Tx) error {
			return tx.ForEachReservation(func(r catalog.Reservation) error {
				ds = append(ds, r.Deadline)
				return nil
			})
		}); err != nil {
			t.Fatal(err)
		}
		return ds
	}
	if ds := deadlines(); len(ds) != 1 || ds[0] != start+int64(ttl) {
		t.Fatalf("deadlines before the renewal: %v", ds)
	}
	now.Add(int64(ttl / 2)) // half the lease gone while the upload makes progress
	close(body.release)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	var renewed bool
	if err := s.fsm.View(func(tx *catalog.Tx) error {
		b, ok, err := tx.GetBlob("slow")
		renewed = ok && err == nil && b.Size == int64(len(slow))
		return err
	}); err != nil || !renewed {
		t.Fatalf("slow upload did not commit: %v", err)
	}
	if got := counting.renewals.Load(); got != 1 {
		t.Fatalf("%d renewals; want 1 (a quarter of the lease had passed once)", got)
	}
	if got := counting.lastDeadline.Load(); got != now.Load()+int64(ttl) {
		t.Fatalf("renewed to %d; want now+TTL = %d", got, now.Load()+int64(ttl))
	}
}

// renewCounter counts the Renew commands a store proposes.
type renewCounter struct {
	Proposer
	renewals     atomic.Int64
	lastDeadline atomic.Int64
}

func (r *renewCounter) Propose(ctx context.Context, c *raftfsm.Command) (raftfsm.Result, error) {
	if c.Kind == raftfsm.KindRenew {
		r.renewals.Add(1)
		r.lastDeadline.Store(c.Deadline)
	}
	return r.Proposer.Propose(ctx, c)
}
