package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
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

	"github.com/blobnode/blobnode/raftfsm"
)

// DefaultWriteTimeout bounds how long a write waits for a leader and its
// answer before it fails with raftfsm.ErrNotLeader (503 to the client).
const DefaultWriteTimeout = 10 * time.Second

// Config configures a Coordinator.
type Config struct {
	Node   *raftfsm.Node
	Secret []byte // the cluster secret
	// Client carries peer requests (nil: NewPeerClient over a clone of
	// http.DefaultTransport). It must have no Client.Timeout: that would
	// cut off every upload stream that lasts longer.
	Client *http.Client
	// Scheme of the peers' APIs: "http" (default) or "https".
	Scheme string
	// WriteTimeout bounds a proposal (0: DefaultWriteTimeout).
	WriteTimeout time.Duration
	Logger       *slog.Logger
}

// Coordinator is the store's proposer on a node of a group: it proposes
// on the leader from any node and makes reads linearizable on every node.
// It is safe for concurrent use.
type Coordinator struct {
	node    *raftfsm.Node
	fsm     *raftfsm.FSM
	sign    signer
	client  *http.Client
	scheme  string
	timeout time.Duration
	log     *slog.Logger
	// requestTimeout bounds a peer request sent whole (see send).
	requestTimeout time.Duration

	addrMu sync.Mutex
	apiOf  map[raft.ServerAddress]string // Raft address -> API address, from probes

	reads raftfsm.ReadIndexBatcher
	ids   requestIDs
	// frames holds the buffers upload streams copy chunks into, and
	// replicas read a stream's frames into to check their tags (*frame).
	frames sync.Pool
	// Counters for metrics: linearizable reads served here as a follower,
	// and the read-index round trips to the leader they shared.
	followerReads, readIndexTrips atomic.Uint64
}

// Stats are the Coordinator's counters.
type Stats struct {
	FollowerReads  uint64 // linearizable reads a follower served
	ReadIndexTrips uint64 // read-index round trips to the leader
	PeerRefused    uint64 // peer requests refused as not authenticated (401), replays included
}

// Stats returns the counters.
func (c *Coordinator) Stats() Stats {
	return Stats{FollowerReads: c.followerReads.Load(), ReadIndexTrips: c.readIndexTrips.Load(), PeerRefused: c.sign.refused.Load()}
}

// New returns a Coordinator over cfg.Node.
func New(cfg Config) *Coordinator {
	c := &Coordinator{
		node: cfg.Node, fsm: cfg.Node.FSM(), sign: newSigner(cfg.Secret), client: cfg.Client,
		scheme: cfg.Scheme, timeout: cfg.WriteTimeout, log: cfg.Logger, requestTimeout: PeerRequestTimeout,
		apiOf: map[raft.ServerAddress]string{},
	}
	if c.client == nil {
		c.client = NewPeerClient(http.DefaultTransport.(*http.Transport).Clone())
	}
	if c.scheme == "" {
		c.scheme = "http"
	}
	if c.timeout <= 0 {
		c.timeout = DefaultWriteTimeout
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.reads.Fetch = c.leaderReadIndex
	c.ids.start()
	return c
}

// IsLeader reports whether this node leads now.
func (c *Coordinator) IsLeader() bool { return c.node.IsLeader() }

// ReadOnly is this node's read-only state (its own disks).
func (c *Coordinator) ReadOnly() error { return c.node.ReadOnly() }

// Propose applies cmd through the leader and returns its result, within
// the write timeout. cmd gets a request id (unless it has one), so it can
// be sent again, unchanged, whatever happened to an earlier attempt: the
// state machine applies a request id at most once and answers a repeat
// with the first outcome. So a command that was never proposed (no
// leader, the one asked was not the leader) and one whose outcome is
// unknown (leadership lost, no answer) are both tried again until the
// timeout; only then does the caller get an error, which says whether
// the outcome is unknown.
func (c *Coordinator) Propose(ctx context.Context, cmd *raftfsm.Command) (raftfsm.Result, error) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	if cmd.RequestID == 0 {
		cmd.RequestID = c.ids.next()
	}
	wait := 5 * time.Millisecond
	renumbered := 0
	unknown := false // an attempt may have been appended
	for {
		res, err := c.proposeOnce(ctx, cmd)
		unknown = unknown || errors.Is(err, raftfsm.ErrOutcomeUnknown)
		if err == nil && errors.Is(res.Err, raftfsm.ErrRequestIDReused) && renumbered < maxRenumbers {
			// Another proposer's command holds the id (their prefixes
			// met): the state machine executed nothing for this entry,
			// and none of this command's attempts ever applied, or the
			// id would hold this command. A fresh random id is as safe as
			// the first, and the client never sees the collision.
			cmd.RequestID = raftfsm.RandomID()
			renumbered++
			continue
		}
		if err == nil && cmd.Kind != raftfsm.KindNoop {
			// On the leader: let the followers' reads of it, and an
			// upload's peers, learn soon that it committed.
			c.node.Announce(res.Index)
		}
		if !errors.Is(err, raftfsm.ErrNotLeader) {
			return res, keepUnknown(err, unknown)
		}
		if !c.backoff(ctx, &wait) {
			return raftfsm.Result{}, fmt.Errorf("no leader applied the command within %v: %w", c.timeout, keepUnknown(err, unknown))
		}
	}
}

// keepUnknown is err, the last attempt's, made to say that the outcome is
// unknown when an earlier attempt's was: refused now (no leader, the
// leader read-only), the command may still commit from that attempt.
func keepUnknown(err error, unknown bool) error {
	if err == nil || !unknown || errors.Is(err, raftfsm.ErrOutcomeUnknown) {
		return err
	}
	return fmt.Errorf("%w (and earlier: %w)", err, raftfsm.ErrOutcomeUnknown)
}

// requestIDs hands out the request ids of one Coordinator: a random
// prefix of requestIDPrefixBits chosen at start, then a counter that
// starts at a random value. Ids of different proposers differ in their
// prefix (two of the few proposers live within DedupWindow entries share
// one with odds of about 1 in 16 million, and then their counters must
// also overlap), and one proposer's ids never repeat within 2^40 of them.
//
// Why not 64 random bits: the state machine keys its request records by
// id. Random ids put every record on a random page of that B-tree, so each
// batch of entries dirtied (and the catalog rewrote) about two leaf pages
// per entry, one for the insert and one for the record pruned out of the
// window; one proposer's ids, ascending, insert at one edge of the tree
// and are pruned from the other.
type requestIDs struct {
	prefix  uint64
	counter atomic.Uint64
}

const requestIDPrefixBits = 24

// start draws the prefix and the counter's first value.
func (g *requestIDs) start() {
	var b [8]byte
	rand.Read(b[:])
	r := binary.LittleEndian.Uint64(b[:])
	g.prefix = r &^ (1<<(64-requestIDPrefixBits) - 1)
	g.counter.Store(r & (1<<(64-requestIDPrefixBits) - 1))
}

// maxRenumbers bounds how often Propose draws a new id for one command
// whose id another command holds.
const maxRenumbers = 3

// next returns a new request id, never 0.
func (g *requestIDs) next() uint64 {
	for {
		if id := g.prefix | g.counter.Add(1)&(1<<(64-requestIDPrefixBits)-1); id != 0 {
			return id
		}
	}
}

func (c *Coordinator) proposeOnce(ctx context.Context, cmd *raftfsm.Command) (raftfsm.Result, error) {
	addr, id := c.node.Raft().LeaderWithID()
	switch {
	case id == "":
		return raftfsm.Result{}, fmt.Errorf("cluster: no leader known: %w", raftfsm.ErrNotLeader)
	case id == c.node.ID():
		res, err := c.node.Propose(ctx, cmd)
		if errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown) {
			// Leadership lost with the command in flight: it may still
			// commit under the next leader.
			return res, fmt.Errorf("%w: %w", errUnknownOutcome, err)
		}
		return res, err
	}
	return c.forward(ctx, addr, cmd)
}

func (c *Coordinator) backoff(ctx context.Context, wait *time.Duration) bool {
	t := time.NewTimer(*wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		*wait = min(2**wait, 200*time.Millisecond)
		return true
	}
}

// forward sends cmd to the leader at Raft address addr.
func (c *Coordinator) forward(ctx context.Context, addr raft.ServerAddress, cmd *raftfsm.Command) (raftfsm.Result, error) {
	var w wireResult
	if err := c.call(ctx, addr, http.MethodPost, "/peer/propose", cmd.Encode(), &w); err != nil {
		return raftfsm.Result{}, err
	}
	return decodeResult(w)
}

// ReadBarrier makes a following read of this node's state linearizable:
// on the leader, its own barrier; elsewhere, a read index from the leader
// (shared by concurrent callers) and a wait until this node has applied
// it.
func (c *Coordinator) ReadBarrier(ctx context.Context) error {
	if c.node.IsLeader() {
		return c.node.ReadBarrier(ctx)
	}
	c.followerReads.Add(1)
	idx, err := c.reads.Index(ctx)
	if err != nil {
		return err
	}
	return c.fsm.WaitApplied(ctx, idx)
}

func (c *Coordinator) leaderReadIndex(ctx context.Context) (uint64, error) {
	addr, id := c.node.Raft().LeaderWithID()
	if id == "" {
		return 0, fmt.Errorf("cluster: no leader known: %w", raftfsm.ErrNotLeader)
	}
	if id == c.node.ID() {
		return c.node.ReadIndex(ctx)
	}
	var out struct {
		Index uint64 `json:"index"`
	}
	c.readIndexTrips.Add(1)
	if err := c.call(ctx, addr, http.MethodGet, "/peer/readindex", nil, &out); err != nil {
		return 0, err
	}
	return out.Index, nil
}

// apiAddr returns the API address of the node at Raft address addr.
func (c *Coordinator) apiAddr(ctx context.Context, addr raft.ServerAddress) (string, error) {
	c.addrMu.Lock()
	api, ok := c.apiOf[addr]
	c.addrMu.Unlock()
	if ok {
		return api, nil
	}
	st, err := c.node.Probe(ctx, addr)
	if err != nil {
		return "", fmt.Errorf("cluster: find the API of %s: %w", addr, err)
	}
	if st.APIAddr == "" {
		return "", fmt.Errorf("cluster: %s has no API address", addr)
	}
	c.addrMu.Lock()
	c.apiOf[addr] = st.APIAddr
	c.addrMu.Unlock()
	return st.APIAddr, nil
}

func (c *Coordinator) forgetAPI(addr raft.ServerAddress) {
	c.addrMu.Lock()
	delete(c.apiOf, addr)
	c.addrMu.Unlock()
}

// call sends a signed peer request to the node at Raft address addr and
// decodes its JSON answer into out. A request that could not be sent, or
// was refused before anything was done (NotLeader), wraps
// raftfsm.ErrNotLeader: nothing happened and it may be tried elsewhere.
// One whose answer was lost is errUnknownOutcome.
func (c *Coordinator) call(ctx context.Context, addr raft.ServerAddress, method, path string, body []byte, out any) error {
	resp, err := c.send(ctx, addr, method, path, body)
	var unsent *unsentError
	switch {
	case errors.As(err, &unsent):
		return fmt.Errorf("%w: %w", raftfsm.ErrNotLeader, err)
	case err != nil && body == nil:
		return fmt.Errorf("%w: %w", raftfsm.ErrNotLeader, err) // a read: nothing to be unsure about
	case err != nil:
		return fmt.Errorf("%w: %w", errUnknownOutcome, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxPeerAnswer))
	if resp.StatusCode != http.StatusOK {
		var w wireError
		if err := dec.Decode(&w); err != nil {
			w = wireError{Code: codeInternal, Message: err.Error()}
		}
		return errorFrom(resp.StatusCode, w)
	}
	if err := dec.Decode(out); err != nil {
		return fmt.Errorf("%w: decode the answer of %s: %w", errUnknownOutcome, addr, err)
	}
	return nil
}

// unsentError: a peer request was not sent (the peer's API address is not
// known), so nothing happened.
type unsentError struct{ err error }

func (e *unsentError) Error() string { return e.err.Error() }
func (e *unsentError) Unwrap() error { return e.err }

// send sends one signed peer request to the node at Raft address addr. It
// fails with an *unsentError when the node's API address cannot be found;
// any other error came from sending it (the cached address is then
// forgotten, so the next request asks again).
//
// body is the request's whole body (nil for none), which the signature
// covers. The request, to the end of its answer's body, is bounded by
// c.requestTimeout; closing the answer's body releases it. sendStream
// sends a streamed body.
func (c *Coordinator) send(ctx context.Context, addr raft.ServerAddress, method, path string, body []byte) (*http.Response, error) {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	ctx, cancel := context.WithTimeout(ctx, c.requestTimeout)
	resp, err := c.do(ctx, addr, method, path, r, body)
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = cancelOnClose{resp.Body, cancel}
	return resp, nil
}

// sendStream is send with a body read as it is sent, of which the
// signature covers signed, its head (see bodyDigestHeader). No time
// bounds the whole of it (an upload of gigabytes
// takes what it takes): the caller's context, the stream's stall rule
// (stragglerStall) and the transport's wait for the answer once the body
// is sent (PeerAnswerTimeout) do.
func (c *Coordinator) sendStream(ctx context.Context, addr raft.ServerAddress, method, path string, body io.Reader, signed []byte) (*http.Response, error) {
	return c.do(ctx, addr, method, path, body, signed)
}

// PeerRequestTimeout bounds a peer request sent whole (a forwarded
// command, a read index, a chunk for repair, a join or removal), to the
// end of its answer.
const PeerRequestTimeout = 30 * time.Second

// PeerAnswerTimeout bounds the wait for a peer's answer once a request's
// body has been sent: a replica answers an upload stream after making its
// copy durable.
const PeerAnswerTimeout = time.Minute

// NewPeerClient returns the HTTP client for peer requests over t, which
// it configures to wait at most PeerAnswerTimeout for an answer once a
// request is sent. The client has no overall timeout (see
// Config.Client).
func NewPeerClient(t *http.Transport) *http.Client {
	t.ResponseHeaderTimeout = PeerAnswerTimeout
	if t.TLSHandshakeTimeout == 0 {
		t.TLSHandshakeTimeout = 10 * time.Second
	}
	return &http.Client{Transport: t}
}

// cancelOnClose releases a request's context when its answer's body is
// closed.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b cancelOnClose) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

func (c *Coordinator) do(ctx context.Context, addr raft.ServerAddress, method, path string, body io.Reader, signed []byte) (*http.Response, error) {
	api, err := c.apiAddr(ctx, addr)
	if err != nil {
		return nil, &unsentError{err}
	}
	req, err := http.NewRequestWithContext(ctx, method, c.scheme+"://"+api+path, body)
	if err != nil {
		return nil, &unsentError{err}
	}
	c.sign.sign(req, signed)
	resp, err := c.client.Do(req)
	if err != nil {
		c.forgetAPI(addr)
		return nil, err
	}
	return resp, nil
}

// maxPeerAnswer bounds a peer's JSON answer.
const maxPeerAnswer = 64 << 20
