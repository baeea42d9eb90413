package main

import (
	"strconv"
	"time"

	"github.com/hashicorp/raft"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/blobnode/blobnode/cluster"
	"github.com/blobnode/blobnode/raftfsm"
	"github.com/blobnode/blobnode/store"
	"github.com/blobnode/blobnode/volume"
)

// nodeMetrics exports the storage layers' counters. Values are read when
// scraped (GaugeFunc/CounterFunc), except device sync latency, which a
// wrapper around the volume's device observes.
type nodeMetrics struct {
	reg       *prometheus.Registry
	syncSecs  prometheus.Histogram
	putStages *prometheus.HistogramVec
}

func newNodeMetrics(reg *prometheus.Registry) *nodeMetrics {
	m := &nodeMetrics{
		reg: reg,
		syncSecs: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "blobnode_volume_fsync_seconds",
			Help:    "Latency of fdatasync on the volume file (journal groups, checkpoints and data batches).",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
		}),
	}
	m.putStages = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "blobnode_put_stage_seconds",
		Help:    "Duration of each stage of a PUT: reserve (Raft), sync (data fdatasync), commit (Raft).",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2, 16),
	}, []string{"stage"})
	reg.MustRegister(m.syncSecs, m.putStages)
	return m
}

// timedDevice observes every Sync's latency.
type timedDevice struct {
	volume.Device
	h prometheus.Histogram
}

func (d timedDevice) Sync() error {
	start := time.Now()
	err := d.Device.Sync()
	d.h.Observe(time.Since(start).Seconds())
	return err
}

func (m *nodeMetrics) wrapDevice(d volume.Device) volume.Device { return timedDevice{d, m.syncSecs} }

func (m *nodeMetrics) watch(node *raftfsm.Node, st *storage) {
	gauge := func(name, help string, f func() float64) {
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	counter := func(name, help string, f func() float64) {
		m.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
	}
	j := st.vol.Journal()
	counter("blobnode_journal_commits_total", "Allocator transactions made durable.", func() float64 { return float64(j.Stats().Commits) })
	counter("blobnode_journal_groups_total", "Journal records (group commits), one fsync each.", func() float64 { return float64(j.Stats().Groups) })
	counter("blobnode_journal_fsyncs_total", "fsyncs issued by the journal.", func() float64 { return float64(j.Stats().Fsyncs) })
	counter("blobnode_journal_checkpoints_total", "Journal log resets.", func() float64 { return float64(j.Stats().Checkpoints) })
	counter("blobnode_data_syncs_total", "Batched fdatasyncs of blob data.", func() float64 { return float64(st.vol.SyncStats().Syncs) })
	counter("blobnode_data_sync_requests_total", "Requests for a data sync (many share one).", func() float64 { return float64(st.vol.SyncStats().Calls) })
	counter("blobnode_catalog_commits_total", "Catalog write transactions committed (the state machine's batches, local marks).", func() float64 { return float64(st.cat.Commits()) })

	gauge("blobnode_volume_free_bytes", "Free heap bytes.", func() float64 { return float64(st.alloc.Stats().FreeBytes) })
	gauge("blobnode_volume_used_bytes", "Allocated heap bytes.", func() float64 { return float64(st.alloc.Stats().UsedBytes) })
	gauge("blobnode_volume_fragmentation", "Share of free bytes not in whole free lpages.", func() float64 { return st.alloc.Stats().Fragmentation })
	m.reg.MustRegister(allocClassCollector{
		st:   st,
		free: prometheus.NewDesc("blobnode_alloc_class_free_bytes", "Free bytes in whole free pages of a class.", []string{"page_size"}, nil),
		used: prometheus.NewDesc("blobnode_alloc_class_used_bytes", "Bytes in allocated pages of a class.", []string{"page_size"}, nil),
	})

	counter("blobnode_raft_log_appends_total", "Appends to the Raft log, one fsync each.", func() float64 { return float64(node.LogAppends()) })
	r := node.Raft()
	gauge("blobnode_raft_leader", "1 when this node is the Raft leader.", func() float64 {
		if r.State() == raft.Leader {
			return 1
		}
		return 0
	})
	gauge("blobnode_read_only", "1 while the node refuses writes because a disk under its Raft log or catalog is full or failing.", func() float64 {
		if node.ReadOnly() != nil {
			return 1
		}
		return 0
	})
	gauge("blobnode_raft_state", "Raft state: 0 follower, 1 candidate, 2 leader, 3 shutdown.", func() float64 { return float64(r.State()) })
	gauge("blobnode_raft_commit_index", "Raft commit index.", func() float64 { return float64(r.CommitIndex()) })
	gauge("blobnode_raft_applied_index", "Index the state machine has applied.", func() float64 { return float64(node.FSM().Applied()) })
	counter("blobnode_raft_snapshot_installs_total", "Snapshots installed from the leader (the catalog replaced; the repairer then copies the blobs' bytes).", func() float64 { return float64(node.FSM().Restores()) })
	gauge("blobnode_raft_last_index", "Last index in the Raft log.", func() float64 { return float64(r.LastIndex()) })
	gauge("blobnode_raft_term", "Current Raft term.", func() float64 {
		t, _ := strconv.ParseFloat(r.Stats()["term"], 64)
		return t
	})
}

// watchStore exports the store's counts of chunk failures met by reads.
func (m *nodeMetrics) watchStore(s *store.Store) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "blobnode_chunks_corrupt_total",
			Help: "Blob chunks that failed checksum verification when read (each time one is met; each is logged at Error with key, chunk and device offset).",
		}, func() float64 { return float64(s.ChunkStats().Corrupt) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "blobnode_chunk_read_errors_total",
			Help: "Blob chunks the volume's device failed to read (I/O errors such as EIO; each time one is met; each is logged at Error with key, chunk and device offset).",
		}, func() float64 { return float64(s.ChunkStats().ReadErrors) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "blobnode_chunks_repaired_total",
			Help: "Blob chunks this node fetched from a replica, verified and wrote back (read repair and the repairer).",
		}, func() float64 { return float64(s.ChunkStats().Repaired) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "blobnode_repair_bytes_total",
			Help: "Bytes of the chunks counted by blobnode_chunks_repaired_total.",
		}, func() float64 { return float64(s.ChunkStats().RepairedBytes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "blobnode_repair_inherited_marks_total",
			Help: "Blobs marked held verified again after an unclean start from the old catalog's marks, without reading them.",
		}, func() float64 { return float64(s.ChunkStats().InheritedMarks) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "blobnode_replica_bytes_received_total",
			Help: "Bytes of uploads coordinated by other nodes that this node received, verified and wrote (before it acknowledged them).",
		}, func() float64 { return float64(s.ChunkStats().ReplicaBytes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "blobnode_scrubbed_bytes_total",
			Help: "Bytes of stored blobs the scrubber re-verified (-scrub-rate).",
		}, func() float64 { return float64(s.ChunkStats().ScrubbedBytes) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "blobnode_repair_backlog_blobs",
			Help: "Committed blobs this node has not verified it holds (under-replicated here), as of the repairer's last pass; -1 before its first, 0 on a one-node group.",
		}, func() float64 { return float64(s.ChunkStats().RepairBacklog) }),
	)
}

// watchCoordinator exports the counters of a node in a group.
func (m *nodeMetrics) watchCoordinator(c *cluster.Coordinator) {
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "blobnode_follower_reads_total",
			Help: "Linearizable reads this node served as a follower (each waits for a read index from the leader).",
		}, func() float64 { return float64(c.Stats().FollowerReads) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "blobnode_read_index_round_trips_total",
			Help: "Read-index round trips to the leader; concurrent follower reads share one.",
		}, func() float64 { return float64(c.Stats().ReadIndexTrips) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "blobnode_peer_requests_refused_total",
			Help: "Peer requests (/peer/...) refused with 401: no or a wrong signature (another cluster secret?), a clock too far off, a body or chunk other than the one signed, or a replay.",
		}, func() float64 { return float64(c.Stats().PeerRefused) }),
	)
}

// allocClassCollector exports free and used bytes per page class.
type allocClassCollector struct {
	st         *storage
	free, used *prometheus.Desc
}

func (c allocClassCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.free; ch <- c.used }

func (c allocClassCollector) Collect(ch chan<- prometheus.Metric) {
	for _, cs := range c.st.alloc.Stats().Classes {
		size := strconv.FormatInt(cs.PageSize, 10)
		ch <- prometheus.MustNewConstMetric(c.free, prometheus.GaugeValue, float64(cs.FreePages)*float64(cs.PageSize), size)
		ch <- prometheus.MustNewConstMetric(c.used, prometheus.GaugeValue, float64(cs.UsedPages)*float64(cs.PageSize), size)
	}
}

func (m *nodeMetrics) observeStage(stage string, d time.Duration) {
	m.putStages.WithLabelValues(stage).Observe(d.Seconds())
}
