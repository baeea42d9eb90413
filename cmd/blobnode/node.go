package main

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sys/unix"

	"github.com/blobnode/blobnode/api"
	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/cluster"
	"github.com/blobnode/blobnode/raftfsm"
	"github.com/blobnode/blobnode/space"
	"github.com/blobnode/blobnode/store"
	"github.com/blobnode/blobnode/volume"
)

// Files inside the data directory.
const (
	volumeFile  = "volume.blob"
	catalogFile = "catalog.db"
	raftDir     = "raft"
	// lockFile is held (flock) by the one process using the directory.
	lockFile = "LOCK"
	// cleanFile exists only while the node is stopped after a clean
	// shutdown: the catalog and allocator were synced and can be trusted
	// as they are. It is removed at start, before anything changes.
	cleanFile = "clean-shutdown"
	// snapshotAtStopTimeout bounds the snapshot a clean stop takes (a
	// copy of the catalog: about a second with a million blobs).
	snapshotAtStopTimeout = 20 * time.Second
)

// storage is a node's opened local state.
type storage struct {
	lock    *os.File // flock on lockFile: one process per data directory
	vol     *volume.Volume
	alloc   *space.Allocator
	cat     *catalog.DB
	rebuild bool // the allocator must be rebuilt from the catalog
	// unclean: the last stop was not clean, so the catalog was discarded
	// and Raft must restore its snapshot and replay the log.
	unclean bool
	// pristine: the volume never held a blob (nothing allocated, no data
	// mark), so a Raft group may be bootstrapped over it.
	pristine bool
}

// ErrIncompleteDataDir: the data directory holds only part of a node's
// state; starting would lose or hide what is missing.
var ErrIncompleteDataDir = errors.New("incomplete data directory")

func (s *storage) close() error {
	var errs []error
	if s.cat != nil {
		errs = append(errs, s.cat.Close())
	}
	if s.vol != nil {
		errs = append(errs, s.vol.Close())
	}
	if s.lock != nil {
		errs = append(errs, s.lock.Close()) // releases the flock
	}
	return errors.Join(errs...)
}

// lockDir takes the data directory's lock, failing at once if another
// process holds it: two processes on one directory would each rewrite the
// other's state.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("data directory %s is in use by another blobnode process", dir)
		}
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return f, nil
}

// openStorage opens (or, on first start, formats) the volume, the allocator
// and the catalog. dev wraps the device (metrics); nil keeps it.
func openStorage(cfg config, log *slog.Logger, wrap func(volume.Device) volume.Device) (*storage, error) {
	if err := os.MkdirAll(cfg.dataDir, 0o755); err != nil {
		return nil, err
	}
	if wrap == nil {
		wrap = func(d volume.Device) volume.Device { return d }
	}
	path := filepath.Join(cfg.dataDir, volumeFile)
	st := &storage{}
	var err error
	if st.lock, err = lockDir(cfg.dataDir); err != nil {
		return nil, err
	}
	formatted := false
	_, statErr := os.Stat(path)
	if cfg.readOnly && statErr != nil {
		st.close()
		return nil, fmt.Errorf("no volume in %s: %w", cfg.dataDir, statErr)
	}
	if errors.Is(statErr, os.ErrNotExist) {
		if earlier := earlierState(cfg.dataDir); earlier != "" {
			st.close()
			return nil, fmt.Errorf("%w: no volume file %s, but %s from an earlier start is there: "+
				"refusing to format an empty volume under it (restore the volume file, or move the whole directory aside to start afresh)",
				ErrIncompleteDataDir, path, earlier)
		}
		if st.vol, err = formatVolume(cfg, path, wrap, log); err != nil {
			st.close()
			return nil, err
		}
		formatted = true
	} else {
		dev, err := volume.OpenFileDevice(path)
		if err != nil {
			st.close()
			return nil, err
		}
		if st.vol, err = volume.Open(wrap(dev), nil); err != nil {
			dev.Close()
			st.close()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
		if g := st.vol.Superblock().Geometry; g.VolumeSize != cfg.volumeSize {
			log.Info("using the volume's own size; -volume-size applies only at creation", "volume_size", g.VolumeSize)
		}
	}
	catPath := filepath.Join(cfg.dataDir, catalogFile)
	_, cleanErr := os.Stat(filepath.Join(cfg.dataDir, cleanFile))
	if !formatted && cleanErr != nil && !cfg.readOnly {
		// The catalog runs without fsync (the Raft log is the durable
		// record), so after a crash it is rebuilt from snapshot and log.
		// Decided by the marker alone: a start that crashed after setting
		// the catalog aside left none, and is just as unclean.
		log.Warn("the last stop was not clean: rebuilding the catalog and allocator from the Raft snapshot and log")
		if err := os.Rename(catPath, catPath+".unclean"); err != nil && !errors.Is(err, os.ErrNotExist) {
			st.close()
			return nil, err
		}
		st.unclean = true
	}
	if !cfg.readOnly {
		if err := removeDurably(filepath.Join(cfg.dataDir, cleanFile)); err != nil {
			st.close()
			return nil, err
		}
	}
	st.alloc, err = space.Open(st.vol)
	st.pristine = err == nil && st.alloc.Stats().UsedBytes == 0 && st.vol.DataMark() == 0
	if errors.Is(err, space.ErrNeedsRebuild) || (err == nil && st.unclean) {
		st.rebuild = true
	} else if err != nil {
		st.close()
		return nil, err
	}
	st.cat, err = catalog.Open(catPath, catalog.Options{Timeout: time.Second, NoSync: true})
	if errors.Is(err, syscall.ENOSPC) {
		st.close()
		return nil, fmt.Errorf("open catalog: the disk is full; free space and start again (nothing was lost): %w", err)
	}
	if err != nil {
		st.close()
		return nil, fmt.Errorf("open catalog (is another blobnode using %s?): %w", cfg.dataDir, err)
	}
	return st, nil
}

// earlierState names the catalog or Raft state in dir, if any.
func earlierState(dir string) string {
	for _, name := range []string{catalogFile, catalogFile + ".unclean", raftDir} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return name
		}
	}
	return ""
}

// formatVolume creates and formats the volume under a temporary name and
// renames it into place only once the format is durable, so a start that
// dies part-way leaves no volume file, never a half-formatted one; the
// leftover temporary file is removed by the next start.
func formatVolume(cfg config, path string, wrap func(volume.Device) volume.Device, log *slog.Logger) (*volume.Volume, error) {
	tmp := path + ".format"
	if err := os.Remove(tmp); err == nil {
		log.Warn("removed the volume of a format that did not finish", "path", tmp)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	g := volume.Geometry{SpageShift: uint8(cfg.spageShift), LpageShift: uint8(cfg.lpageShift), VolumeSize: cfg.volumeSize}
	log.Info("formatting a new volume", "path", path, "geometry", g.String())
	dev, err := volume.CreateFileDevice(tmp, cfg.volumeSize)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*volume.Volume, error) {
		dev.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("format %s: %w", path, err)
	}
	if cfg.zeroVolume {
		log.Info("writing zeros over the new volume", "bytes", cfg.volumeSize)
		if err := volume.ZeroFill(dev); err != nil {
			return fail(err)
		}
	}
	vol, err := space.FormatVolume(wrap(dev), volume.FormatOptions{Geometry: g})
	if err != nil {
		return fail(err)
	}
	// FormatVolume synced the file; the rename is what makes it the volume.
	if err := os.Rename(tmp, path); err != nil {
		vol.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("format %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		vol.Close()
		return nil, fmt.Errorf("format %s: %w", path, err)
	}
	// The device still goes by the temporary name, which every later
	// error of its I/O would give (a failed fsync stops the node with
	// one): reopen it by the volume's own.
	if err := vol.Close(); err != nil {
		return nil, fmt.Errorf("format %s: %w", path, err)
	}
	dev, err = volume.OpenFileDevice(path)
	if err != nil {
		return nil, fmt.Errorf("format %s: %w", path, err)
	}
	if vol, err = volume.Open(wrap(dev), &g); err != nil {
		dev.Close()
		return nil, fmt.Errorf("format %s: %w", path, err)
	}
	return vol, nil
}

// run serves until ctx ends (SIGTERM) or the state machine stops, then
// shuts down in order: HTTP (draining), store, Raft, catalog, volume.
func run(ctx context.Context, cfg config, log *slog.Logger) (runErr error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := newNodeMetrics(reg)

	// SIGHUP reloads the token file once serving. It is caught from the
	// start, even without a token file, so that a SIGHUP never kills the
	// node (its default action); one that arrives before serving waits.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	sec, err := loadSecurity(cfg, log)
	if err != nil {
		return err
	}
	st, err := openStorage(cfg, log, m.wrapDevice)
	if err != nil {
		return err
	}
	clean := false
	defer func() {
		if err := st.close(); err != nil {
			log.Error("close storage", "err", err)
			return
		}
		if clean {
			if err := createDurably(filepath.Join(cfg.dataDir, cleanFile)); err != nil {
				log.Error("mark clean shutdown", "err", err)
			}
		}
	}()
	layout := st.vol.Superblock().Placement()
	fsm, err := raftfsm.Open(ctx, st.cat, st.alloc, layout, log, st.rebuild)
	if err != nil {
		return err
	}
	fsm.AttachData(st.vol)
	var peers []raft.Server
	apiAddr := cfg.advertiseAddr
	if apiAddr == "" {
		apiAddr = cfg.httpAddr
	}
	raftAdvertise := joinAdvertise(cfg.raftAddr, apiAddr)
	if cfg.peers != "" {
		if peers, err = parsePeers(cfg.peers, cfg.nodeID); err != nil {
			return err
		}
		raftAdvertise = advertisedRaft(peers, cfg.nodeID)
	}
	grouped := len(peers) > 0 || cfg.join != ""
	node, err := raftfsm.StartNode(ctx, raftfsm.NodeConfig{
		ID: cfg.nodeID, Dir: filepath.Join(cfg.dataDir, raftDir), BindAddr: cfg.raftAddr,
		Advertise: raftAdvertise, Peers: peers, APIAddr: apiAddr,
		// A node that joins waits to be added; it never forms a group.
		Bootstrap: cfg.join == "", RestoreSnapshot: st.unclean, Logger: log,
		// A volume that holds data belongs to the group in this Raft log;
		// a new group over it would skip or misplace its blobs.
		RequireState:      !st.pristine,
		SnapshotThreshold: cfg.snapThreshold, SnapshotInterval: cfg.snapInterval, TrailingLogs: cfg.trailingLogs,
		LogSegmentSize: int(cfg.segmentSize), CommitTimeout: cfg.commitTimeout,
		HeartbeatTimeout: cfg.heartbeat,
		PeerAuth:         raftfsm.PeerAuth{TLS: sec.peerTLS, Secret: sec.clusterSecret},
	}, fsm)
	if errors.Is(err, raftfsm.ErrNoRaftState) {
		return fmt.Errorf("%w: the volume holds blobs but %w; refusing to start a new group over them "+
			"(restore %s, or move the whole directory aside to start afresh)", ErrIncompleteDataDir, err, raftDir)
	}
	if err != nil {
		return err
	}
	defer func() {
		if runErr == nil && fsm.Err() == nil && fsm.ReadOnly() == nil {
			// A clean stop leaves nothing to replay: Raft's next start
			// reads every entry after its latest snapshot twice (for
			// configuration changes, then to apply them), and with a
			// snapshot at the applied index there are none. Not while
			// read-only: the state machine may be holding entries until
			// the disk recovers, and a snapshot would wait for them.
			sctx, cancel := context.WithTimeout(context.Background(), snapshotAtStopTimeout)
			err := node.SnapshotNow(sctx)
			cancel()
			if err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
				log.Warn("snapshot at stop failed; the next start replays the log since the last one", "err", err)
			}
		}
		if err := node.Close(); err != nil {
			log.Error("close raft", "err", err)
			return
		}
		// Raft is stopped, so nothing applies any more: make the state
		// durable, and only then may the next start trust it.
		if err := fsm.Sync(context.Background()); err != nil {
			log.Error("sync state", "err", err)
			return
		}
		clean = runErr == nil && fsm.Err() == nil
	}()
	m.watch(node, st)

	if cfg.join != "" {
		jctx, jcancel := context.WithTimeout(ctx, time.Minute)
		err := cluster.Join(jctx, sec.peerClient(cfg), cfg.join, sec.clusterSecret, cluster.JoinRequest{
			ID: cfg.nodeID, RaftAddr: raftAdvertise, APIAddr: apiAddr, Layout: layout.String(),
		})
		jcancel()
		if err != nil {
			return fmt.Errorf("join: %w", err)
		}
		log.Info("member of the group", "through", cfg.join)
	}
	startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = initGroup(startCtx, node, layout.String())
	cancel()
	if ro := fsm.ReadOnly(); err != nil && ro != nil && !errors.Is(err, raftfsm.ErrReadOnly) {
		// E.g. restarted with the disk still full: replay cannot proceed.
		return fmt.Errorf("start: %w (%w)", ro, err)
	}
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}

	var oldMarks func(string) (uint64, bool)
	if grouped && st.unclean {
		if m, err := catalog.OpenLocalMarks(filepath.Join(cfg.dataDir, catalogFile+".unclean")); err != nil {
			log.Warn("unclean start: the verified marks of the old catalog cannot be read; every blob will be verified again", "err", err)
		} else if n, err := m.Len(); err != nil {
			m.Close()
			log.Warn("unclean start: the old catalog is torn; every blob will be verified again", "err", err)
		} else {
			defer m.Close()
			oldMarks = m.Version
			log.Info("unclean start: the old catalog's verified marks stand for blobs still current", "marks", n)
		}
	}
	var proposer store.Proposer = node
	var replicas store.Replicator
	var chunks store.ChunkSource
	var coord *cluster.Coordinator
	if grouped {
		scheme := "http"
		if sec.httpTLS != nil {
			scheme = "https"
		}
		coord = cluster.New(cluster.Config{Node: node, Secret: sec.clusterSecret, Scheme: scheme, Client: sec.peerClient(cfg), Logger: log})
		proposer, replicas, chunks = coord, coord, coord
		m.watchCoordinator(coord)
	}
	s := store.New(proposer, fsm, st.vol, store.Config{Replicas: replicas, Chunks: chunks, ScrubRate: cfg.scrubRate, OldMarks: oldMarks, ReservationTTL: cfg.reservationTTL, Logger: log, ObserveStage: m.observeStage})
	defer s.Close()
	m.watchStore(s)
	handler := api.NewHandler(s, api.Config{
		MaxBlobSize:          cfg.maxBlobSize,
		MaxConcurrentUploads: cfg.maxConcurrentUploads,
		BodyReadTimeout:      cfg.bodyReadTimeout,
		WriteTimeout:         cfg.writeTimeout,
		Logger:               log,
		Registerer:           reg,
		Gatherer:             reg,
		Ready: func() error {
			if err := fsm.Err(); err != nil {
				return err
			}
			if err := fsm.ReadOnly(); err != nil {
				var ro *raftfsm.ReadOnlyError
				if errors.As(err, &ro) {
					return errors.New("read-only: " + ro.Reason())
				}
				return err
			}
			if addr, _ := node.Raft().LeaderWithID(); addr == "" {
				return errors.New("no Raft leader")
			}
			return nil
		},
		Status:         func() any { return status(node, st, s, apiAddr) },
		Peer:           peerHandler(coord, s),
		RemoveNode:     removeNode(coord),
		Auth:           sec.auth(),
		ProtectMetrics: cfg.protectMetrics,
	})
	srv := newHTTPServer(cfg, handler, log)
	srv.TLSConfig = sec.httpTLS
	if cfg.pprofAddr != "" {
		_, stopPprof, err := startPprof(cfg.pprofAddr, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}
	ln, err := net.Listen("tcp", cfg.httpAddr)
	if err != nil {
		return err
	}
	scheme := "http"
	if sec.httpTLS != nil {
		scheme = "https"
	}
	log.Info("serving", "http", ln.Addr().String(), "scheme", scheme, "auth", sec.tokens != nil,
		"raft", cfg.raftAddr, "raft_tls", sec.peerTLS != nil, "raft_mtls", sec.peerTLS != nil && sec.peerTLS.Mutual,
		"data_dir", cfg.dataDir, "layout", layout.String())
	served := make(chan error, 1)
	go func() {
		if sec.httpTLS != nil {
			// The certificate is in srv.TLSConfig; ServeTLS adds HTTP/2.
			served <- srv.ServeTLS(ln, "", "")
			return
		}
		served <- srv.Serve(ln)
	}()

wait:
	for {
		select {
		case <-hup:
			if sec.tokens == nil {
				log.Warn("SIGHUP ignored: there is no -token-file to reload")
				continue
			}
			sec.tokens.reload(log)
		case <-ctx.Done():
			log.Info("shutting down: draining requests")
			break wait
		case <-fsm.Stopped():
			runErr = fsm.Err()
			break wait
		case <-st.vol.Failed():
			// Nothing written since can be made durable on this volume;
			// a restart recovers from the Raft log.
			runErr = fmt.Errorf("stopping: %w", st.vol.Err())
			break wait
		case err := <-served:
			runErr = err
			break wait
		}
	}
	sctx, scancel := context.WithTimeout(context.Background(), cfg.shutdownGrace)
	defer scancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown: requests still running were cut", "err", err)
	}
	return runErr
}

// newHTTPServer returns the API's server with the client limits of cfg.
// There is deliberately no ReadTimeout or WriteTimeout: they would cap the
// total time of a large upload or download. The handler bounds each body
// read and each response write instead (api.Config), and ReadHeaderTimeout
// and IdleTimeout bound the time between requests. (The write deadline a
// handler leaves armed for the final flush is cleared by net/http once the
// response is finished; tests/limits_test.go checks it on an aged
// keep-alive connection.)
func newHTTPServer(cfg config, handler http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: cfg.readHeaderTimeout,
		IdleTimeout:       cfg.idleTimeout,
		MaxHeaderBytes:    int(cfg.maxHeaderBytes),
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// initGroup waits for a leader; the leader records the volume layout and,
// when it is the only voter, frees reservations left by uploads that a
// restart cut (no other node can be coordinating them).
func initGroup(ctx context.Context, node *raftfsm.Node, layout string) error {
	if err := node.WaitLeader(ctx); err != nil {
		return fmt.Errorf("no leader: %w", err)
	}
	if !node.IsLeader() {
		return nil
	}
	for {
		res, err := node.Propose(ctx, &raftfsm.Command{Kind: raftfsm.KindInit, Geometry: layout})
		if errors.Is(err, raftfsm.ErrNotLeader) && ctx.Err() == nil {
			time.Sleep(10 * time.Millisecond) // a fresh leader still settling
			continue
		}
		if err != nil {
			return err
		}
		if res.Err != nil {
			return res.Err
		}
		break
	}
	cf := node.Raft().GetConfiguration()
	if err := cf.Error(); err != nil {
		return err
	}
	if len(cf.Configuration().Servers) == 1 {
		if _, err := node.Propose(ctx, &raftfsm.Command{Kind: raftfsm.KindExpire, Now: math.MaxInt64}); err != nil {
			return err
		}
	}
	return nil
}

// removeNode backs DELETE /cluster/nodes/{id} (nil without peers).
func removeNode(coord *cluster.Coordinator) func(context.Context, string) (bool, error) {
	if coord == nil {
		return nil
	}
	return func(ctx context.Context, id string) (bool, error) {
		err := coord.RemoveNode(ctx, id)
		if errors.Is(err, cluster.ErrNoSuchNode) {
			return false, nil
		}
		return err == nil, err
	}
}

// peerHandler is the peer API of a node in a group (nil without peers).
func peerHandler(coord *cluster.Coordinator, s *store.Store) http.Handler {
	if coord == nil {
		return nil
	}
	return coord.PeerHandler(s)
}

func status(node *raftfsm.Node, st *storage, s *store.Store, apiAddr string) any {
	r := node.Raft()
	addr, id := r.LeaderWithID()
	a := st.alloc.Stats()
	reason := ""
	var ro *raftfsm.ReadOnlyError
	if errors.As(node.ReadOnly(), &ro) {
		reason = ro.Reason()
	}
	return map[string]any{
		// Writes are refused while a disk under the Raft log or catalog
		// is full or failing; read_only_reason says which and why.
		"read_only":        reason != "",
		"read_only_reason": reason,
		"state":            r.State().String(),
		"leader":           map[string]string{"id": string(id), "address": string(addr)},
		"commit_index":     r.CommitIndex(),
		"applied_index":    node.FSM().Applied(),
		"last_index":       r.LastIndex(),
		"last_snapshot_index": func() uint64 {
			v, _ := strconv.ParseUint(r.Stats()["last_snapshot_index"], 10, 64)
			return v
		}(),
		"term":           raftTerm(r),
		"nodes":          members(context.Background(), node, apiAddr),
		"repair_backlog": s.ChunkStats().RepairBacklog,
		"catalog":        catalogDigest(node),
		"volume": map[string]any{
			"total_bytes": a.TotalBytes, "free_bytes": a.FreeBytes, "used_bytes": a.UsedBytes,
			"largest_free": a.LargestFree, "fragmentation": a.Fragmentation,
			// Part of used_bytes: reservations made ahead for small uploads.
			"pooled_bytes": s.PooledBytes(),
			"geometry":     st.vol.Superblock().Geometry.String(),
			// Format version, geometry, journal and heap: what every
			// node of a group must share.
			"layout": st.vol.Superblock().Placement().String(),
		},
	}
}

// catalogDigest is /cluster's "catalog": the digest of the blob map
// (catalog.Tx.Digest) from one read transaction, with the applied index it
// reflects. Two nodes hold the same blobs iff their digests at one applied
// index agree. It reads every blob record (no data), so /cluster costs
// O(blobs): about 25 ms per 100,000 blobs (catalog BenchmarkDigest100k).
func catalogDigest(node *raftfsm.Node) map[string]any {
	var d catalog.Digest
	if err := node.FSM().View(func(tx *catalog.Tx) error {
		var err error
		d, err = tx.Digest()
		return err
	}); err != nil {
		return map[string]any{"error": err.Error()}
	}
	return map[string]any{
		"digest": hex.EncodeToString(d.SHA256[:]), "blobs": d.Blobs, "applied_index": d.AppliedIndex,
	}
}

// removeDurably removes path (if present) and syncs its directory.
func removeDurably(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return syncDir(filepath.Dir(path))
}

// createDurably creates an empty file and syncs it and its directory.
func createDurably(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := errors.Join(f.Sync(), f.Close()); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	return errors.Join(d.Sync(), d.Close())
}

// raftTerm is the current term as r knows it (its Stats carry it).
func raftTerm(r *raft.Raft) uint64 {
	v, _ := strconv.ParseUint(r.Stats()["term"], 10, 64)
	return v
}
