package cluster

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/blobnode/blobnode/store"
)

// Receiver is the store side of the peer data endpoint.
type Receiver interface {
	ReceiveReplica(ctx context.Context, w store.ReplicaWrite, body io.Reader) error
}

// stragglerGrace is how long a stream keeps sending to the peers that
// have not answered once a majority holds the bytes; those it then cuts
// off catch up through repair.
const stragglerGrace = 500 * time.Millisecond

// stragglerStall is how long a chunk may wait for a peer that does not
// take it (its link cut, its disk stalled) before the peer is cut off,
// while enough others remain for a majority.
const stragglerStall = 2 * time.Second

// maxManifest bounds the description that precedes a replica's bytes.
const maxManifest = 16 << 20

// streamDepth is how many chunks may be queued for one peer.
const streamDepth = 4

// Stream implements store.Replicator: it opens PUT /peer/data to every
// other voter, each fed by its own goroutine, so the upload's chunks go to
// every peer in parallel with the coordinator's own writes.
func (c *Coordinator) Stream(ctx context.Context, w store.ReplicaWrite) (store.ReplicaStream, error) {
	f := c.node.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	voters := 0
	var peers []raft.Server
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if s.ID != c.node.ID() {
			peers = append(peers, s)
		}
	}
	if len(peers) > 0 {
		// The peers write only once they have applied the Reserves.
		c.node.Announce(w.Index)
	}
	manifest, err := json.Marshal(w)
	if err != nil {
		return nil, err
	}
	head := binary.BigEndian.AppendUint32(nil, uint32(len(manifest)))
	salt := newStreamSalt()
	tags, err := c.sign.chunkTagger(manifest, salt)
	if err != nil {
		return nil, err
	}
	st := &stream{log: c.log, pool: &c.frames, tags: tags, need: voters/2 + 1 - 1, stall: stragglerStall, holders: []string{string(c.node.ID())}, results: make(chan *peerStream, len(peers))}
	for _, p := range peers {
		pctx, cancel := context.WithCancel(ctx)
		ps := &peerStream{id: p.ID, frames: make(chan *frame, streamDepth), cancel: cancel, done: make(chan struct{})}
		st.peers = append(st.peers, ps)
		go func() {
			defer close(ps.done)
			body := io.MultiReader(bytes.NewReader(head), bytes.NewReader(manifest), bytes.NewReader(salt), &frameReader{frames: ps.frames, ctx: pctx})
			ps.err = c.sendReplica(pctx, p.Address, body, manifest)
			if ps.err != nil {
				ps.err = fmt.Errorf("%s: %w", p.ID, ps.err)
			}
			st.results <- ps
		}()
	}
	return st, nil
}

// stream is one upload's replication to the other voters. Its methods are
// called by the upload's goroutine only.
type stream struct {
	log     *slog.Logger
	pool    *sync.Pool // of *frame
	tags    chunkTagger
	sent    int64         // chunks sent so far
	need    int           // peer acknowledgements needed, besides this node's copy
	stall   time.Duration // stragglerStall
	peers   []*peerStream
	holders []string // this node, then the peers that acknowledged
	results chan *peerStream
	errs    []error
	closed  bool
}

// peerStream is one peer's request: frames feeds its body.
type peerStream struct {
	id     raft.ServerID
	frames chan *frame
	cancel context.CancelFunc
	done   chan struct{} // closed once the request has ended; err is set
	err    error
	cut    bool // cut off (or failed): sent nothing more
}

func (st *stream) live() int {
	n := 0
	for _, p := range st.peers {
		if !p.cut {
			n++
		}
	}
	return n
}

// cutOff stops sending to p: its request is cancelled.
func (st *stream) cutOff(p *peerStream, why error) {
	if p.cut {
		return
	}
	p.cut = true
	p.cancel()
	st.errs = append(st.errs, fmt.Errorf("%s: %w", p.id, why))
}

// Send queues one chunk, preceded by its checksum and followed by its tag,
// to every live peer. A peer whose request ended, or that has not taken a
// chunk for stragglerStall while enough others remain, is cut off; Send
// fails once too few peers are left for a majority.
func (st *stream) Send(ctx context.Context, sum uint32, chunk []byte) error {
	f := getFrame(st.pool, 4+len(chunk)+chunkTagSize)
	f.b = f.buf[:4+len(chunk)]
	binary.BigEndian.PutUint32(f.b, sum)
	copy(f.b[4:], chunk)
	f.b = st.tags.appendTag(f.b, st.sent, f.b)
	st.sent++
	f.refs.Store(int32(st.live()) + 1) // the queues, and this loop
	defer f.release()
	for _, p := range st.peers {
		if p.cut {
			continue
		}
		queued, err := st.queue(ctx, p, f)
		if !queued {
			f.release()
		}
		if err != nil {
			return err
		}
	}
	if st.live() < st.need {
		return st.tooFew()
	}
	return nil
}

// queue puts f on p's queue, or cuts p off; queued says whether p took
// it.
func (st *stream) queue(ctx context.Context, p *peerStream, f *frame) (queued bool, err error) {
	select {
	case p.frames <- f:
		return true, nil
	default:
	}
	stall := time.NewTimer(st.stall)
	defer stall.Stop()
	for {
		select {
		case p.frames <- f:
			return true, nil
		case <-p.done:
			st.cutOff(p, cmp.Or(p.err, errors.New("ended early")))
			return false, nil
		case <-ctx.Done():
			return false, ctx.Err()
		case <-stall.C:
			if st.live()-1 >= st.need {
				st.cutOff(p, fmt.Errorf("took no chunk for %v", st.stall))
				return false, nil
			}
			stall.Reset(st.stall) // it is needed: keep waiting, as long as ctx allows
		}
	}
}

func (st *stream) tooFew() error {
	return fmt.Errorf("cluster: only %d of the %d replicas needed can take the bytes: %w", st.live()+1, st.need+1, errors.Join(st.errs...))
}

// Finish ends every peer's body and waits until a majority of the voters,
// this node included (its copy is durable before Finish is called), holds
// the bytes durably; it returns their IDs. Stragglers get stragglerGrace
// more, then are cut off.
func (st *stream) Finish(ctx context.Context) ([]string, error) {
	st.close()
	defer st.Abort()
	if st.need <= 0 {
		return st.holders, nil
	}
	acked := 0
	pending := 0
	for _, p := range st.peers {
		if !p.cut {
			pending++
		}
	}
	var grace <-chan time.Time
	for pending > 0 {
		select {
		case p := <-st.results:
			if p.cut {
				continue // counted when it was cut off
			}
			pending--
			if p.err == nil {
				acked++
				st.holders = append(st.holders, string(p.id))
			} else {
				st.cutOff(p, p.err)
			}
		case <-grace:
			return st.holders, nil // a majority holds the bytes; the rest are cut off
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if acked >= st.need && grace == nil {
			t := time.NewTimer(stragglerGrace)
			defer t.Stop()
			grace = t.C
		}
		if acked+pending < st.need {
			return nil, st.tooFew()
		}
	}
	if acked < st.need {
		return nil, st.tooFew()
	}
	if len(st.errs) > 0 {
		st.log.Warn("a replica did not take an upload's bytes; repair will copy them", "err", errors.Join(st.errs...))
	}
	return st.holders, nil
}

// close ends the peers' bodies (their requests then wait for the answer).
func (st *stream) close() {
	if st.closed {
		return
	}
	st.closed = true
	for _, p := range st.peers {
		close(p.frames)
	}
}

// Abort cancels every peer's request and waits until each has ended. A
// peer that already wrote some chunks holds bytes for reservations that
// the upload aborts: nothing refers to them.
func (st *stream) Abort() {
	for _, p := range st.peers {
		p.cancel()
	}
	st.close()
	for _, p := range st.peers {
		<-p.done
	}
}

// frame is one chunk, preceded by its checksum and followed by its tag
// (see chunkTagger), shared by the peers' queues (a replica reading a
// stream also takes its buffer from the pool, for itself). refs counts who still holds it; the last to let go returns it to
// the pool. (A frame left in the queue of a peer cut off is never
// returned: the garbage collector takes it.)
type frame struct {
	buf  []byte // capacity 4 + ChunkSize + chunkTagSize
	b    []byte // buf's bytes in use
	refs atomic.Int32
	pool *sync.Pool
}

// getFrame returns a frame of pool whose buffer holds at least size bytes.
func getFrame(pool *sync.Pool, size int) *frame {
	f, _ := pool.Get().(*frame)
	if f == nil || cap(f.buf) < size {
		f = &frame{pool: pool, buf: make([]byte, size)}
	}
	return f
}

func (f *frame) release() {
	if f.refs.Add(-1) == 0 {
		f.pool.Put(f)
	}
}

// frameReader is a peer request's body after the manifest: the frames
// queued for it, until the channel is closed (then EOF) or ctx ends.
type frameReader struct {
	frames <-chan *frame
	ctx    context.Context
	cur    *frame
	off    int
}

func (r *frameReader) Read(p []byte) (int, error) {
	for r.cur == nil {
		select {
		case f, ok := <-r.frames:
			if !ok {
				return 0, io.EOF
			}
			r.cur, r.off = f, 0
		case <-r.ctx.Done():
			return 0, r.ctx.Err()
		}
	}
	n := copy(p, r.cur.b[r.off:])
	if r.off += n; r.off == len(r.cur.b) {
		r.cur.release()
		r.cur = nil
	}
	return n, nil
}

// sendReplica sends one peer the body: manifest (which the signature
// covers), then frames.
func (c *Coordinator) sendReplica(ctx context.Context, addr raft.ServerAddress, body io.Reader, manifest []byte) error {
	resp, err := c.sendStream(ctx, addr, http.MethodPut, "/peer/data", body, manifest)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var w wireError
		_ = json.NewDecoder(io.LimitReader(resp.Body, maxPeerAnswer)).Decode(&w)
		return fmt.Errorf("answered %d %s: %s", resp.StatusCode, w.Code, w.Message)
	}
	return nil
}

// serveData is PUT /peer/data: a big-endian u32 length, that many bytes of
// JSON store.ReplicaWrite (the manifest, which the signature covers), the
// stream's salt, then the upload's chunks in blob order, each preceded by
// its checksum (big-endian u32) and followed by its tag (see
// chunkTagger). A chunk is handed to the store only once its tag checked.
func (c *Coordinator) serveData(rcv Receiver) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var n [4]byte
		if _, err := io.ReadFull(r.Body, n[:]); err != nil {
			writeJSON(w, http.StatusBadRequest, wireError{Code: codeBadCommand, Message: err.Error()})
			return
		}
		size := binary.BigEndian.Uint32(n[:])
		if size > maxManifest {
			writeJSON(w, http.StatusBadRequest, wireError{Code: codeBadCommand, Message: fmt.Sprintf("manifest of %d bytes", size)})
			return
		}
		manifest := make([]byte, size)
		if _, err := io.ReadFull(r.Body, manifest); err != nil {
			writeJSON(w, http.StatusBadRequest, wireError{Code: codeBadCommand, Message: err.Error()})
			return
		}
		if err := checkSigned(r, manifest); err != nil {
			c.sign.refuse(w, r, c.log, err)
			return
		}
		var m store.ReplicaWrite
		if err := json.Unmarshal(manifest, &m); err != nil {
			writeJSON(w, http.StatusBadRequest, wireError{Code: codeBadCommand, Message: err.Error()})
			return
		}
		salt := make([]byte, streamSaltSize)
		if _, err := io.ReadFull(r.Body, salt); err != nil {
			writeJSON(w, http.StatusBadRequest, wireError{Code: codeBadCommand, Message: "the stream's salt: " + err.Error()})
			return
		}
		tags, err := c.sign.chunkTagger(manifest, salt)
		if err != nil {
			writeJSON(w, http.StatusInternalServerError, wireError{Code: codeUnavailable, Message: err.Error()})
			return
		}
		f := getFrame(&c.frames, 4+store.ChunkSize+chunkTagSize) // this request's alone
		defer c.frames.Put(f)
		body := &taggedChunks{r: r.Body, tags: tags, size: m.Size, buf: f.buf}
		err = rcv.ReceiveReplica(r.Context(), m, body)
		switch {
		case errors.Is(err, ErrPeerAuth):
			c.sign.refuse(w, r, c.log, err)
		case err == nil:
			writeJSON(w, http.StatusOK, struct{}{})
		case errors.Is(err, store.ErrGone):
			writeJSON(w, http.StatusGone, wireError{Code: "Gone", Message: err.Error()})
		case errors.Is(err, store.ErrInvalidArgument), errors.Is(err, store.ErrBadDigest), errors.Is(err, store.ErrIncompleteBody):
			writeJSON(w, http.StatusBadRequest, wireError{Code: codeBadCommand, Message: err.Error()})
		default:
			c.log.Warn("receiving a replica failed", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, wireError{Code: codeUnavailable, Message: err.Error()})
		}
	}
}
