package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// newTestStream is a stream to peers whose requests are played by the
// test: a peer's frames are consumed only if the test reads them, and
// finish(p, err) ends its request as the HTTP answer would.
func newTestStream(need int, ids ...string) *stream {
	tags, err := newSigner([]byte("the cluster secret, long enough")).chunkTagger([]byte("{}"), newStreamSalt())
	if err != nil {
		panic(err)
	}
	st := &stream{log: slog.New(slog.DiscardHandler), pool: &sync.Pool{}, tags: tags, need: need, stall: 100 * time.Millisecond,
		holders: []string{"self"}, results: make(chan *peerStream, len(ids))}
	for _, id := range ids {
		_, cancel := context.WithCancel(context.Background())
		st.peers = append(st.peers, &peerStream{id: raft.ServerID(id), frames: make(chan *frame, 1), cancel: cancel, done: make(chan struct{})})
	}
	return st
}

func finish(st *stream, p *peerStream, err error) {
	p.err = err
	close(p.done)
	st.results <- p
}

// drain consumes p's frames until its channel closes, then answers ok.
func drain(st *stream, p *peerStream) {
	go func() {
		for f := range p.frames {
			f.release()
		}
		finish(st, p, nil)
	}()
}

// TestStreamStragglers: a peer that takes no chunk is cut off once the
// others still make a majority, and the upload goes on; while it is
// needed, Send waits for it until the context ends; a peer whose request
// failed is cut off at once; Finish reports the peers that acknowledged.
func TestStreamStragglers(t *testing.T) {
	ctx := context.Background()
	chunk := make([]byte, 16)

	t.Run("a stalled peer is cut off when not needed", func(t *testing.T) {
		st := newTestStream(1, "a", "b")
		drain(st, st.peers[0]) // b never reads
		for range 3 {
			if err := st.Send(ctx, 1, chunk); err != nil {
				t.Fatalf("Send: %v", err)
			}
		}
		if !st.peers[1].cut || st.peers[0].cut {
			t.Fatalf("cut: a %v, b %v; want only b", st.peers[0].cut, st.peers[1].cut)
		}
		go finish(st, st.peers[1], context.Canceled) // its cancelled request ends
		got, err := st.Finish(ctx)
		if err != nil || !slices.Equal(got, []string{"self", "a"}) {
			t.Fatalf("Finish = %v, %v; want [self a]", got, err)
		}
	})

	t.Run("a stalled peer that is needed holds the upload", func(t *testing.T) {
		st := newTestStream(2, "a", "b")
		drain(st, st.peers[0])
		short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		var err error
		for i := 0; i < 3 && err == nil; i++ {
			err = st.Send(short, 1, chunk)
		}
		if !errors.Is(err, context.DeadlineExceeded) || st.peers[1].cut {
			t.Fatalf("Send to a needed, stalled peer: %v (cut %v); want a wait ended by the context", err, st.peers[1].cut)
		}
		go finish(st, st.peers[1], context.Canceled)
		st.Abort()
	})

	t.Run("a failed peer is cut off; too few left fails", func(t *testing.T) {
		st := newTestStream(1, "a", "b")
		for _, p := range st.peers {
			finish(st, p, errors.New("connection refused"))
		}
		// The frames channels hold one chunk each: the second Send finds
		// both requests ended.
		_ = st.Send(ctx, 1, chunk)
		if err := st.Send(ctx, 1, chunk); err == nil {
			t.Fatal("Send with every peer failed succeeded")
		}
		if _, err := st.Finish(ctx); err == nil {
			t.Fatal("Finish with every peer failed succeeded")
		}
	})
}

// TestFrameSharedUntilRead: one chunk's frame is shared by the peers'
// queues and let go (back to the pool) only once every peer's body has
// read all of it, so no body reads a buffer that holds the next chunk.
func TestFrameSharedUntilRead(t *testing.T) {
	st := newTestStream(1, "a", "b")
	chunk := []byte("sixteen bytes!!!")
	if err := st.Send(context.Background(), 7, chunk); err != nil {
		t.Fatal(err)
	}
	f := <-st.peers[0].frames
	if got := <-st.peers[1].frames; got != f {
		t.Fatal("the peers were given different frames")
	}
	readers := []*frameReader{{frames: oneFrame(f), ctx: context.Background()}, {frames: oneFrame(f), ctx: context.Background()}}
	for i, want := range []int32{1, 0} {
		b, err := io.ReadAll(readers[i])
		if err != nil || len(b) != 4+len(chunk)+chunkTagSize || string(b[4:4+len(chunk)]) != string(chunk) {
			t.Fatalf("body %d: %q, %v", i, b, err)
		}
		if got := f.refs.Load(); got != want {
			t.Fatalf("after body %d read the frame: %d holders, want %d", i, got, want)
		}
	}
}

func oneFrame(f *frame) <-chan *frame {
	ch := make(chan *frame, 1)
	ch <- f
	close(ch)
	return ch
}
