package raftfsm

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	walmetrics "github.com/hashicorp/raft-wal/metrics"
	"github.com/hashicorp/raft-wal/segment"
)

// NodeConfig configures the Raft node that drives the FSM.
type NodeConfig struct {
	ID        string // unique, stable node id
	Dir       string // wal/ (log and stable store) and snapshots/
	BindAddr  string // TCP address for Raft traffic, e.g. 127.0.0.1:7000
	Advertise string // address peers dial; default BindAddr
	// Bootstrap a single-voter group when the node has no Raft state yet.
	Bootstrap bool
	// RequireState makes a start without Raft state an error
	// (ErrNoRaftState) instead of a bootstrap: the caller's data belongs to
	// a group whose log is gone.
	RequireState bool
	// RestoreSnapshot makes Raft restore its latest snapshot into the FSM
	// at start (after an unclean stop, when the FSM's own files are not
	// trusted). Otherwise the FSM's durable state is used as it is.
	RestoreSnapshot bool
	// SnapshotThreshold: entries since the last snapshot that trigger a new
	// one (default 8192). SnapshotInterval: how often to check (default 30s).
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	// CommitTimeout is how long an idle leader waits before it sends the
	// followers an AppendEntries that tells them the commit index (0:
	// hashicorp/raft's 50 ms). A follower that coordinates a write waits
	// for it to apply the entries the leader committed, so at low load
	// this bounds a forwarded write's latency; shorter costs idle CPU.
	CommitTimeout time.Duration
	TrailingLogs  uint64 // default 10240
	// HeartbeatTimeout is how long a follower hears nothing from a leader
	// before it campaigns, and the election timeout (0: hashicorp/raft's
	// 1 s; the leader lease is then at most half of it). A node that is its group's only voter campaigns at
	// start without waiting for it (see campaignAlone).
	HeartbeatTimeout time.Duration
	// LogSegmentSize is the size of the Raft log's segment files (0:
	// raft-wal's 64 MiB). The log is truncated behind a snapshot by whole
	// segments, so smaller ones free space sooner and send a lagging
	// follower a snapshot sooner.
	LogSegmentSize int
	Logger         *slog.Logger
	// PeerAuth secures Raft traffic: TLS (see PeerTLS), a cluster secret
	// handshake, both, or neither (plain TCP).
	PeerAuth PeerAuth
	// Peers are the initial voters of a new group, this node among them,
	// identical on every node; empty for a one-node group. A node without
	// Raft state forms the group with them, or rejoins it (see
	// decideFormation). Peers need PeerAuth.Secret.
	Peers []raft.Server
	// APIAddr is the host:port at which peers reach this node's HTTP API;
	// probes answer it (see PeerStatus).
	APIAddr string
}

// Node owns the *raft.Raft driving one FSM, and the background work a leader
// does for it. Stop it with Close.
type Node struct {
	raft *raft.Raft
	id   raft.ServerID
	fsm  *FSM
	logs *wal.WAL
	meta *metadb.BoltMetaDB // raft-wal's WAL.Close leaves it open
	walm *walmetrics.AtomicCollector
	// readTerm is the term in which this node, as leader, has applied an
	// entry of its own: only then is CommitIndex a valid read index.
	readTerm atomic.Uint64
	// Announce: the highest index asked for, and a kick for announce.
	announceMu   sync.Mutex
	announceWant uint64
	announceKick chan struct{} // buffered 1
	// soleLeading caches soleVoter for soleLeaderIndex (see there).
	soleLeading atomic.Pointer[soleVoterAt]
	reads       ReadIndexBatcher // of readIndexOnce
	trans       closingTransport
	stream      *PeerStreamLayer // nil without TLS or a secret
	log         *slog.Logger

	stop chan struct{}
	wg   sync.WaitGroup

	proposals    *proposer
	proposerDone chan struct{} // closed when proposals.run returns
	once         sync.Once
}

// ErrNotLeader is returned by Propose on a follower, and by reads that
// cannot confirm leadership. (Forwarding to the leader comes with peers.)
var ErrNotLeader = errors.New("raftfsm: not the leader")

// ErrOutcomeUnknown: a command was handed to Raft, and then leadership
// was lost (or the node shut down) before it was known to commit: it may
// still be applied under the next leader. Errors that wrap it also wrap
// ErrNotLeader, so a proposer retries; retried with its RequestID, the
// command applies at most once.
var ErrOutcomeUnknown = errors.New("raftfsm: the command's outcome is unknown")

// ErrNoRaftState: StartNode found no Raft state where NodeConfig.RequireState
// says there must be some.
var ErrNoRaftState = errors.New("raftfsm: no Raft state")

// closingTransport is a Raft transport the node closes at Close.
type closingTransport interface {
	raft.Transport
	Close() error
}

// StartNode starts Raft over TCP (TLS and a secret handshake as
// cfg.PeerAuth says) with a write-ahead log store (raft-wal: one fsync per
// append) and file snapshots. A node without Raft state and with
// cfg.Peers may wait (until ctx ends) for every peer before it forms the
// group; see decideFormation.
func StartNode(ctx context.Context, cfg NodeConfig, fsm *FSM) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("raftfsm: %w", err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.NoSnapshotRestoreOnStart = !cfg.RestoreSnapshot
	rc.BatchApplyCh = true
	rc.MaxAppendEntries = 256
	if cfg.CommitTimeout > 0 {
		rc.CommitTimeout = cfg.CommitTimeout
	}
	if cfg.HeartbeatTimeout > 0 {
		rc.HeartbeatTimeout = cfg.HeartbeatTimeout
		rc.ElectionTimeout = cfg.HeartbeatTimeout
		// Below the timeout, so that campaignAlone can shorten it.
		rc.LeaderLeaseTimeout = min(rc.LeaderLeaseTimeout, cfg.HeartbeatTimeout/2)
	}
	rc.SnapshotThreshold = orDefault(cfg.SnapshotThreshold, 8192)
	rc.TrailingLogs = orDefault(cfg.TrailingLogs, 10240)
	if cfg.SnapshotInterval > 0 {
		rc.SnapshotInterval = cfg.SnapshotInterval
	}
	rc.Logger = newHCLogger(cfg.Logger.With("component", "raft"))

	walDir := filepath.Join(cfg.Dir, "wal")
	if err := os.MkdirAll(walDir, 0o755); err != nil {
		return nil, fmt.Errorf("raftfsm: %w", err)
	}
	walm := walmetrics.NewAtomicCollector(wal.MetricDefinitions)
	meta := &metadb.BoltMetaDB{}
	segmentSize := cmp.Or(cfg.LogSegmentSize, wal.DefaultSegmentSize)
	store, err := wal.Open(walDir, wal.WithLogger(rc.Logger), wal.WithMetricsCollector(walm), wal.WithMetaStore(meta),
		wal.WithSegmentSize(segmentSize), wal.WithSegmentFiler(segment.NewFiler(walDir, newZeroAheadFS())))
	if err != nil {
		meta.Close()
		return nil, fmt.Errorf("raftfsm: open log store: %w", err)
	}
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.Dir, 2, rc.Logger)
	if err != nil {
		store.Close()
		meta.Close()
		return nil, fmt.Errorf("raftfsm: open snapshot store: %w", err)
	}
	adv := cfg.Advertise
	if adv == "" {
		adv = cfg.BindAddr
	}
	addr, err := advertiseAddr(adv, cfg.PeerAuth)
	if err != nil {
		store.Close()
		meta.Close()
		return nil, fmt.Errorf("raftfsm: advertise address %q: %w", adv, err)
	}
	if len(cfg.Peers) > 0 && cfg.PeerAuth.Secret == nil {
		store.Close()
		meta.Close()
		return nil, errors.New("raftfsm: a group with peers needs a cluster secret")
	}
	var trans *raft.NetworkTransport
	var stream *PeerStreamLayer
	if cfg.PeerAuth.TLS != nil || cfg.PeerAuth.Secret != nil {
		stream, err = NewPeerStreamLayer(cfg.BindAddr, addr, cfg.PeerAuth, cfg.Logger.With("component", "raft-transport"))
		if err != nil {
			store.Close()
			meta.Close()
			return nil, err // names the address already
		}
		trans = raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream: stream, MaxPool: 3, Timeout: 10 * time.Second, Logger: rc.Logger,
		})
	} else {
		trans, err = raft.NewTCPTransportWithLogger(cfg.BindAddr, addr, 3, 10*time.Second, rc.Logger)
		if err != nil {
			store.Close()
			meta.Close()
			return nil, fmt.Errorf("raftfsm: listen %s: %w", cfg.BindAddr, err)
		}
	}
	var transport closingTransport = trans
	fail := func(err error) (*Node, error) {
		transport.Close()
		store.Close()
		meta.Close()
		return nil, err
	}
	if stream != nil {
		stream.SetStatus(func() PeerStatus {
			st := PeerStatus{NodeID: cfg.ID, APIAddr: cfg.APIAddr, Applied: fsm.Applied()}
			st.HasState, _ = raft.HasExistingState(store, store, snaps)
			st.LastIndex, _ = store.LastIndex()
			st.Term, _ = store.GetUint64([]byte("CurrentTerm")) // hashicorp/raft's stable-store key
			return st
		})
	}
	if cfg.Bootstrap {
		has, err := raft.HasExistingState(store, store, snaps)
		if err != nil {
			return fail(fmt.Errorf("raftfsm: %w", err))
		}
		if !has && cfg.RequireState {
			return fail(fmt.Errorf("%w in %s", ErrNoRaftState, cfg.Dir))
		}
		conf := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: trans.LocalAddr()}}}
		form := formBootstrap
		if !has && len(cfg.Peers) > 0 {
			conf.Servers = cfg.Peers
			var fence uint64
			if form, fence, err = decideFormation(ctx, stream, rc.LocalID, cfg.Peers, cfg.Logger); err != nil {
				return fail(err)
			}
			if form == formRejoin {
				transport = newFencedTransport(trans, fence, cfg.Logger.With("component", "raft-transport"))
			}
		}
		if !has && form == formBootstrap {
			if err := raft.BootstrapCluster(rc, store, store, snaps, trans, conf); err != nil {
				return fail(fmt.Errorf("raftfsm: bootstrap: %w", err))
			}
		}
	}
	proposals := newProposer()
	r, err := raft.NewRaft(rc, fsm, newLogStore(store, fsm, proposals), store, snaps, transport)
	if err != nil {
		return fail(fmt.Errorf("raftfsm: start raft: %w", err))
	}
	proposals.raft = r
	n := &Node{raft: r, id: rc.LocalID, fsm: fsm, logs: store, meta: meta, walm: walm, trans: transport, stream: stream, log: cfg.Logger, stop: make(chan struct{}),
		proposals: proposals, proposerDone: make(chan struct{}), announceKick: make(chan struct{}, 1)}
	go func() {
		defer close(n.proposerDone)
		proposals.run()
	}()
	n.reads.Fetch = n.readIndexOnce
	if n.soleVoter() {
		n.campaignAlone(rc.LeaderLeaseTimeout)
	}
	n.wg.Add(3)
	go n.announce()
	go n.watchLeadership()
	go n.handOffWhileReadOnly()
	return n, nil
}

// handOffWhileReadOnly transfers leadership to a healthy voter whenever
// this node leads while read-only (its disk full or failing): a leader
// that refuses every write would hold the whole group read-only. It checks
// on every change of the read-only state and once a second (it may be
// elected again while still read-only).
func (n *Node) handOffWhileReadOnly() {
	defer n.wg.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		changed := n.fsm.ReadOnlyChanged()
		if ro := n.ReadOnly(); ro != nil && n.IsLeader() && !n.soleVoter() {
			n.log.Warn("handing leadership to another voter: this node is read-only", "err", ro)
			if err := n.waitFuture(context.Background(), n.raft.LeadershipTransfer()); err != nil {
				n.log.Warn("leadership transfer failed", "err", err)
			}
		}
		select {
		case <-n.stop:
			return
		case <-changed:
		case <-tick.C:
		}
	}
}

// campaignAlone makes a follower that is its group's only voter campaign
// now instead of after a heartbeat timeout: nobody else can lead, so the
// wait (1 to 2 s by default) would only delay every start. Campaigning
// early is always safe in Raft; it costs a term at most. hashicorp/raft
// has no call for it, but a reload that shortens HeartbeatTimeout fires a
// follower's heartbeat timer at once, and a node that has never heard from
// a leader then campaigns whatever the timeout. The timeout is put back
// at once, so nothing else changes: shortest is the leader lease, since a
// timeout may not be shorter than the lease.
func (n *Node) campaignAlone(lease time.Duration) {
	normal := n.raft.ReloadableConfig()
	if normal.HeartbeatTimeout <= lease {
		n.log.Warn("cannot campaign at once (the heartbeat timeout is the leader lease); waiting for it",
			"timeout", normal.HeartbeatTimeout)
		return
	}
	short := normal
	short.HeartbeatTimeout = lease
	if err := n.raft.ReloadConfig(short); err != nil {
		n.log.Warn("cannot campaign at once; waiting for the heartbeat timeout", "err", err)
		return
	}
	n.log.Info("campaigning at once: this node is its group's only voter")
	if err := n.raft.ReloadConfig(normal); err != nil {
		n.log.Warn("cannot restore the heartbeat timeout", "err", err, "timeout", short.HeartbeatTimeout)
	}
}

func orDefault(v, d uint64) uint64 {
	if v == 0 {
		return d
	}
	return v
}

// watchLeadership proposes a no-op whenever this node becomes leader, so
// the FSM's applied index reaches the commit index (see KindNoop).
func (n *Node) watchLeadership() {
	defer n.wg.Done()
	ch := n.raft.LeaderCh()
	for {
		select {
		case <-n.stop:
			return
		case leader := <-ch:
			if !leader {
				continue
			}
			if _, err := n.propose(context.Background(), &Command{Kind: KindNoop}, 10*time.Second); err != nil {
				n.log.Warn("no-op after election failed", "err", err)
			}
		}
	}
}

// Probe asks the node whose Raft address is addr for its PeerStatus (its
// API address, how far it has applied). It needs a cluster secret.
func (n *Node) Probe(ctx context.Context, addr raft.ServerAddress) (PeerStatus, error) {
	if n.stream == nil {
		return PeerStatus{}, errors.New("raftfsm: probing peers needs a cluster secret")
	}
	return n.stream.Probe(ctx, string(addr))
}

// ID returns this node's Raft server id.
func (n *Node) ID() raft.ServerID { return n.id }

// FSM returns the node's state machine.
func (n *Node) FSM() *FSM { return n.fsm }

// Raft exposes the raft instance for status and metrics.
func (n *Node) Raft() *raft.Raft { return n.raft }

// LogAppends counts appends to the Raft log since start; each is one fsync.
func (n *Node) LogAppends() uint64 { return n.walm.Summary().Counters["log_appends"] }

// IsLeader reports whether this node is the leader now.
func (n *Node) IsLeader() bool { return n.raft.State() == raft.Leader }

// WaitLeader blocks until some node is leader and this node knows it.
func (n *Node) WaitLeader(ctx context.Context) error {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for {
		if addr, _ := n.raft.LeaderWithID(); addr != "" {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// ReadOnly returns nil when the node accepts writes, otherwise a
// *ReadOnlyError saying why not (see ErrReadOnly).
func (n *Node) ReadOnly() error { return n.fsm.ReadOnly() }

// Propose replicates c and returns the FSM's result once applied here. A
// read-only node refuses at once, proposing nothing. If the node turns
// read-only while c is in flight, Propose returns the *ReadOnlyError
// without waiting: c may still take effect once the disk recovers (like a
// timeout, the outcome is unknown). A proposer that must learn such an
// outcome gives c a RequestID and retries the identical command: it then
// applies at most once, and the retry returns the first application's
// Result (see Command.RequestID and DedupWindow).
func (n *Node) Propose(ctx context.Context, c *Command) (Result, error) {
	if err := n.ReadOnly(); err != nil {
		return Result{}, err
	}
	timeout := 10 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
	}
	return n.propose(ctx, c, timeout)
}

func (n *Node) propose(ctx context.Context, c *Command, timeout time.Duration) (Result, error) {
	if err := c.Validate(); err != nil {
		return Result{}, err
	}
	if n.raft.State() != raft.Leader {
		return Result{}, ErrNotLeader
	}
	data := c.Encode()
	var direct <-chan Result
	if c.RequestID != 0 {
		var cancel func()
		direct, cancel = n.fsm.answers.await(c.RequestID, data)
		defer cancel()
	}
	var f raft.ApplyFuture
	pr, err := n.proposals.submit(data, time.Now().Add(timeout))
	if err == nil {
		f, err = n.waitTaken(ctx, pr)
	}
	var res Result
	answered := false
	if err == nil {
		res, answered, err = n.waitApply(f, direct)
	}
	if err != nil {
		switch {
		case errors.Is(err, ErrOutcomeUnknown):
			return Result{}, fmt.Errorf("%w: %w", ErrNotLeader, err)
		case f != nil && (errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrRaftShutdown)):
			// Raft took the command: it may commit under the next leader.
			return Result{}, fmt.Errorf("%w: %w: %w", ErrNotLeader, ErrOutcomeUnknown, err)
		case f != nil && errors.Is(err, ErrReadOnly):
			// Raft took the command before the disk failed: it may
			// commit, and apply here once the disk recovers (and on the
			// other replicas at once).
			return Result{}, fmt.Errorf("%w: %w", ErrOutcomeUnknown, err)
		case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrRaftShutdown), errors.Is(err, raft.ErrEnqueueTimeout):
			return Result{}, fmt.Errorf("%w: %w", ErrNotLeader, err)
		}
		return Result{}, err
	}
	if !answered {
		res, _ = f.Response().(Result)
		res.Index = f.Index()
	}
	if errors.Is(res.Err, ErrStopped) || errors.Is(res.Err, ErrClosed) {
		// Committed, and not applied here: it applies at the next start
		// (and, in a group, on the other replicas).
		return Result{}, fmt.Errorf("%w: %w", ErrOutcomeUnknown, res.Err)
	}
	return res, nil
}

// waitTaken waits until the proposer hands pr to Raft, and returns its
// future. It gives up, withdrawing pr so that it is never proposed, when
// ctx ends (raft.ErrEnqueueTimeout), the node turns read-only (its
// *ReadOnlyError) or closes; if the proposer took pr meanwhile, it waits
// for the future instead (raft.Apply is bounded by pr's deadline).
func (n *Node) waitTaken(ctx context.Context, pr *proposal) (raft.ApplyFuture, error) {
	for {
		changed := n.fsm.ReadOnlyChanged()
		if ro := n.ReadOnly(); ro != nil {
			if n.proposals.abandon(pr) {
				return nil, ro
			}
			return <-pr.taken, nil
		}
		select {
		case f := <-pr.taken:
			return f, nil
		case <-n.stop:
			if !n.proposals.abandon(pr) {
				// Handed to Raft meanwhile: it may be in the log.
				return nil, fmt.Errorf("%w: %w", ErrOutcomeUnknown, raft.ErrRaftShutdown)
			}
			return nil, raft.ErrRaftShutdown
		case <-ctx.Done():
			if n.proposals.abandon(pr) {
				return nil, raft.ErrEnqueueTimeout
			}
			return <-pr.taken, nil
		case <-changed:
		}
	}
}

// waitApply waits until the state machine answers on direct (answered:
// res is the entry's result; nil direct never answers), Raft answers f
// (its response is the result), the node turns read-only (the FSM may
// then hold f's entry until the disk recovers), or the node closes. The
// goroutine ends when Raft answers f, which it does for every entry it
// accepted: applied, refused by a closed FSM, or failed at shutdown.
func (n *Node) waitApply(f raft.ApplyFuture, direct <-chan Result) (res Result, answered bool, err error) {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	for {
		// Read the channel first: a change after the check closes it.
		changed := n.fsm.ReadOnlyChanged()
		if ro := n.ReadOnly(); ro != nil {
			select { // answered meanwhile: prefer the outcome
			case res := <-direct:
				return res, true, nil
			case err := <-done:
				return Result{}, false, err
			default:
				return Result{}, false, ro
			}
		}
		select {
		case res := <-direct:
			return res, true, nil
		case err := <-done:
			return Result{}, false, err
		case <-n.stop:
			return Result{}, false, raft.ErrRaftShutdown
		case <-changed:
		}
	}
}

// soleVoterAt is whether this node was its group's only voter when, as
// leader in term, its log ended at index last.
type soleVoterAt struct {
	term, last uint64
	sole       bool
}

// soleVoterLeading is soleVoter for a leader of term, without reading the
// configuration (a copy, allocated) while its log has not grown: a
// configuration changes only by an entry appended to the log, and a
// leader's log, within its term, only grows.
//
// hashicorp/raft appends a configuration's entry (StoreLogs, then the last
// index moves) a moment before it makes it the latest configuration, so a
// reader in between caches the new last index with the old answer, until
// the next append. That stale "sole" is safe: raft allows one uncommitted
// change at a time and a change adds one server, so the latest
// configuration then has this node and one other, and any election the
// other could win needs this node's vote, which moves its term
// (soleLeaderIndex reads the term before and after).
func (n *Node) soleVoterLeading(term uint64) bool {
	last := n.raft.LastIndex()
	if c := n.soleLeading.Load(); c != nil && c.term == term && c.last == last {
		return c.sole
	}
	sole := n.soleVoter()
	n.soleLeading.Store(&soleVoterAt{term: term, last: last, sole: sole})
	return sole
}

// soleVoter reports whether this node is the only voter of its group.
func (n *Node) soleVoter() bool {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return false
	}
	voters := 0
	self := false
	for _, s := range f.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			voters++
			self = self || s.ID == n.id
		}
	}
	return voters == 1 && self
}

// ReadBarrier makes a following read linearizable: it confirms this node is
// still the leader and waits until the FSM has applied everything committed
// at that moment (the ReadIndex pattern). A new leader's commit index is
// only known once it has committed an entry of its own term, so the first
// read of a term first commits a no-op.
//
// A read-only node that is the only voter of its group skips the barrier
// and reads its applied state: no other node can commit anything, and an
// entry committed but not yet applied here (the FSM may be waiting for the
// disk) has not been acknowledged to anyone, since a write is answered
// only once applied. The applied state therefore reflects every completed
// write and only grows, which is all a linearizable read needs; waiting
// instead could last as long as the disk stays full. With other voters a
// read-only node answers the *ReadOnlyError rather than wait.
func (n *Node) ReadBarrier(ctx context.Context) error {
	if err := n.ReadOnly(); err != nil {
		if n.soleVoter() {
			return nil
		}
		return err
	}
	err := n.readBarrier(ctx)
	if errors.Is(err, ErrReadOnly) && n.soleVoter() {
		return nil // turned read-only while waiting; see above
	}
	return err
}

func (n *Node) readBarrier(ctx context.Context) error {
	idx, err := n.ReadIndex(ctx)
	if err != nil {
		return err
	}
	return n.fsm.WaitApplied(ctx, idx)
}

// ReadIndex returns an index such that a state machine that has applied
// it reflects every write completed before the call: this node's commit
// index, once it has confirmed it is still the leader (a quorum round
// trip). Concurrent calls share confirmations: each waits for one that
// began after it did (see ReadIndexBatcher). Only a leader answers;
// others return ErrNotLeader.
func (n *Node) ReadIndex(ctx context.Context) (uint64, error) {
	idx, ok := n.soleLeaderIndex()
	if !ok {
		var err error
		if idx, err = n.reads.Index(ctx); err != nil {
			return 0, err
		}
	}
	return n.fsm.ReadPoint(idx), nil
}

// announceDelay is how long the leader waits, after an entry followers
// need to learn committed, for another entry to carry the news before it
// proposes a no-op to (see Announce).
const announceDelay = 2 * time.Millisecond

// Announce asks that the followers soon learn that entry index committed.
// A follower learns a commit index only from an AppendEntries that carries
// entries (hashicorp/raft's heartbeats carry none), which an idle leader
// sends every CommitTimeout (50 ms by default); until then a follower's
// read of a write just answered waits, and so do a streamed upload's
// peers. If this node leads a group and, announceDelay later, nothing was
// appended after index, the announcer proposes a no-op, whose replication
// carries the commit index. Under load the next entries do it, and no
// no-op is made. It never blocks.
func (n *Node) Announce(index uint64) {
	if n.raft.State() != raft.Leader || n.soleVoterLeading(n.currentTerm()) {
		return // nobody to tell
	}
	n.announceMu.Lock()
	n.announceWant = max(n.announceWant, index)
	n.announceMu.Unlock()
	select {
	case n.announceKick <- struct{}{}:
	default: // a kick is pending; it reads the latest index
	}
}

// announce is the goroutine behind Announce.
func (n *Node) announce() {
	defer n.wg.Done()
	t := time.NewTimer(time.Hour)
	t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-n.announceKick:
		}
		t.Reset(announceDelay)
		select {
		case <-n.stop:
			t.Stop()
			return
		case <-t.C:
		}
		n.announceMu.Lock()
		want := n.announceWant
		n.announceMu.Unlock()
		if n.raft.State() != raft.Leader || n.raft.LastIndex() > want || n.soleVoterLeading(n.currentTerm()) {
			continue
		}
		// Nobody waits: the proposer hands it to Raft and drops its future.
		_, _ = n.proposals.submit((&Command{Kind: KindNoop}).Encode(), time.Now().Add(time.Second))
	}
}

// soleLeaderIndex is ReadIndex without a confirmation, for a leader that
// is the only voter of its latest configuration (ok false otherwise). No
// other node can then commit anything: every configuration it could hold
// needs this node's vote to elect it, and voting for it would move this
// node's term, which is read before and after. hashicorp/raft's own
// VerifyLeader answers such a leader without asking anyone too, but
// through a round trip to its leader loop, which may be in the middle of
// an fsync. The commit index is only this term's once its first entry
// has committed (readIndexOnce commits a no-op for that).
func (n *Node) soleLeaderIndex() (uint64, bool) {
	term := n.currentTerm()
	if n.readTerm.Load() != term || n.raft.State() != raft.Leader || !n.soleVoterLeading(term) {
		return 0, false
	}
	idx := n.raft.CommitIndex()
	if n.currentTerm() != term || n.raft.State() != raft.Leader {
		return 0, false
	}
	return idx, true
}

// readIndexOnce is one confirmation for ReadIndex. A new leader's commit index is only known once it has committed
// an entry of its own term, so the first call of a term first commits a
// no-op. The term is checked again after the confirmation: a node that
// lost leadership and won it back in between may have read its commit
// index as a leader of the old term, which a newer leader could have
// overtaken.
func (n *Node) readIndexOnce(ctx context.Context) (uint64, error) {
	term := n.currentTerm()
	if n.readTerm.Load() != term {
		if _, err := n.Propose(ctx, &Command{Kind: KindNoop}); err != nil {
			return 0, err
		}
		n.readTerm.Store(term)
	}
	idx := n.raft.CommitIndex()
	if err := n.waitFuture(ctx, n.raft.VerifyLeader()); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNotLeader, err)
	}
	if now := n.currentTerm(); now != term {
		return 0, fmt.Errorf("%w: the term changed from %d to %d while confirming leadership", ErrNotLeader, term, now)
	}
	return idx, nil
}

// currentTerm is Raft's current term. It is read twice by every
// linearizable read on the leader, so it must be cheap: raft.Stats, which
// holds the same number, builds a map and formats the whole configuration
// on each call.
func (n *Node) currentTerm() uint64 { return n.raft.CurrentTerm() }

// waitFuture waits for f without trusting it to ever answer: after
// Shutdown hashicorp/raft may leave a VerifyLeader request unanswered.
func (n *Node) waitFuture(ctx context.Context, f raft.Future) error {
	done := make(chan error, 1)
	go func() { done <- f.Error() }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-n.stop:
		return raft.ErrRaftShutdown
	}
}

// Snapshot asks Raft for a snapshot now (tests and operators).
func (n *Node) Snapshot() error { return n.SnapshotNow(context.Background()) }

// SnapshotNow asks Raft for a snapshot now and waits for it until ctx
// ends. raft.ErrNothingNewToSnapshot says the newest one is current.
func (n *Node) SnapshotNow(ctx context.Context) error { return n.waitFuture(ctx, n.raft.Snapshot()) }

// Close stops the background work and shuts Raft down; the FSM's stores are
// the caller's to close afterwards.
func (n *Node) Close() error {
	var err error
	n.once.Do(func() {
		close(n.stop)
		n.proposals.stop()
		n.fsm.Close() // a batch waiting for the disk must not hold Shutdown
		n.wg.Wait()
		err = n.raft.Shutdown().Error()
		<-n.proposerDone // an Apply it was in returned at Shutdown
		err = errors.Join(err, n.trans.Close(), n.logs.Close(), n.meta.Close())
	})
	return err
}

var _ io.Closer = (*Node)(nil)

// logCacheEntries is how many of the latest log entries Raft reads back
// from memory. Raft reads every entry again after appending it: the
// leader to send it to each follower (and the entry before it, for its
// term), every node to apply it. From raft-wal each read is a pread and a
// decode; the cache serves the entries in flight. At most 512 entries of
// at most MaxInlineSize bytes each are held.
const logCacheEntries = 512

// newLogStore is the log store Raft uses: store, watched for failed
// appends (watchedLogStore, which sees each error as store returned it),
// behind a write-through cache of the latest entries. An entry enters the
// cache only once store has appended it durably, and a deleted range
// (compaction, a follower's conflicting suffix) empties the cache.
func newLogStore(store raft.LogStore, fsm *FSM, appends *proposer) raft.LogStore {
	c, err := raft.NewLogCache(logCacheEntries, &watchedLogStore{LogStore: store, fsm: fsm, appends: appends})
	if err != nil {
		panic(err) // only for a capacity below 1
	}
	m, ok := store.(raft.MonotonicLogStore)
	return cachedLogStore{LogCache: c, monotonic: ok && m.IsMonotonic()}
}

// cachedLogStore is the cache, saying whether the store beneath it is
// monotonic (raft.MonotonicLogStore), as raft-wal is: after a follower
// installs a snapshot, hashicorp/raft empties a monotonic store but only
// compacts another, and the wrappers must not hide which it is. Compacted,
// raft-wal keeps its old tail, refuses every append after the snapshot
// ("non-monotonic log entries"), and the follower asks for the snapshot
// again, forever.
type cachedLogStore struct {
	*raft.LogCache
	monotonic bool
}

func (s cachedLogStore) IsMonotonic() bool { return s.monotonic }

// watchedLogStore turns the node read-only when an append to the Raft log
// fails, and writable again when one succeeds. hashicorp/raft answers a
// failed append on the leader by stepping down; a single voter then
// re-elects itself and its first act as leader is to append a no-op, so
// Raft itself retries the log after each election and the first append
// that succeeds ends the read-only state.
type watchedLogStore struct {
	raft.LogStore
	fsm     *FSM
	appends *proposer // told when each append starts and ends
}

func (s *watchedLogStore) StoreLog(l *raft.Log) error {
	return s.StoreLogs([]*raft.Log{l})
}

func (s *watchedLogStore) StoreLogs(logs []*raft.Log) error {
	s.appends.appendStarted()
	err := s.LogStore.StoreLogs(logs)
	s.appends.appendDone()
	if err != nil {
		err = fmt.Errorf("append entries %d..%d: %w", logs[0].Index, logs[len(logs)-1].Index, err)
		s.fsm.setReadOnly(whereRaftLog, err)
		return err
	}
	s.fsm.clearReadOnly(whereRaftLog)
	return nil
}
