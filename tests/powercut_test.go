package tests

import (
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/blobnode/blobnode/internal/powercutfs"
)

// powerMount is a powercutfs mount over a backing directory that outlives
// each mount: the disk under a node's data directory, which keeps only
// what was fsynced when the power goes.
type powerMount struct {
	t       *testing.T
	backing string
	dir     string // the mount point: the node's -data-dir
	fs      *powercutfs.FS
}

// newPowerMount mounts a fresh backing directory; the mount is unmounted
// in t.Cleanup (after the cleanup of a node started later stopped it).
func newPowerMount(t *testing.T) *powerMount {
	t.Helper()
	m := &powerMount{t: t, backing: t.TempDir(), dir: t.TempDir()}
	m.mount()
	t.Cleanup(func() {
		if err := m.fs.Unmount(); err != nil {
			t.Errorf("unmount %s: %v", m.dir, err)
		}
	})
	return m
}

func (m *powerMount) mount() {
	m.t.Helper()
	fs, err := powercutfs.Mount(m.backing, m.dir, powercutfs.Options{})
	if err != nil {
		m.t.Fatal(err)
	}
	m.fs = fs
}

// cut cuts the power (nothing may use the mount any more) and mounts what
// survived.
func (m *powerMount) cut(mode powercutfs.Mode, seed uint64) powercutfs.Report {
	m.t.Helper()
	rep, err := m.fs.Cut(mode, seed)
	if err != nil {
		m.t.Fatalf("power cut: %v", err)
	}
	m.mount()
	return rep
}

// powerCutSeed is POWERCUT_SEED, or a random seed.
func powerCutSeed(t *testing.T) uint64 {
	t.Helper()
	s := os.Getenv("POWERCUT_SEED")
	if s == "" {
		return rand.Uint64()
	}
	seed, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("POWERCUT_SEED=%q: %v", s, err)
	}
	return seed
}

// TestPowerCut runs the real binary on a data directory that really loses
// what was not fsynced: the Raft log, the catalog, the volume and the
// clean-shutdown marker all live on a powercutfs mount. Under concurrent
// PUTs (inline and streamed sizes, replacements) and DELETEs, the node is
// killed with SIGKILL and then the power is cut: every unsynced write is
// dropped, or a random subset kept, or some torn. After the remount and a
// restart every acknowledged write reads back byte for byte, no
// unacknowledged one is visible other than whole, the space of cut uploads
// is free again, and fsck finds the cleanly stopped node consistent. One
// cycle per cut mode, on one data directory; Raft snapshots are taken
// under load, so recovery restores one and the cuts also hit snapshot
// files and log compaction.
func TestPowerCut(t *testing.T) {
	if err := powercutfs.Available(); err != nil {
		t.Skipf("a power cut needs FUSE: %v", err)
	}
	seed := powerCutSeed(t)
	t.Logf("seed %d (POWERCUT_SEED=%d go test ./tests -run TestPowerCut replays the cuts' choices; what is unsynced at a cut depends on timing)", seed, seed)
	pm := newPowerMount(t)
	n := newNodeIn(t, pm.dir, "-reservation-ttl", "1h",
		"-snapshot-threshold", "200", "-snapshot-interval", "200ms", "-trailing-logs", "50")
	load := crashLoad{workers: 8, loadTime: time.Second, minAcked: 40, maxPerWork: 1000,
		// Cut only once a snapshot exists, so that recovery must restore one.
		ready: func() bool { return n.lastSnapshotIndex(t) > 0 }}
	known := map[string][]blobState{}

	for cycle, mode := range powercutfs.Modes() {
		if !n.running() {
			n.start()
		}
		var rep powercutfs.Report
		load.run(t, n, cycle, known, func() {
			if !n.running() {
				// Say why the node died, with the FS's own failure if any.
				_, err := pm.fs.Cut(mode, seed+uint64(cycle))
				t.Fatalf("cycle %d: blobnode exited under load before the cut: %v (powercutfs: %v)", cycle, n.waitErr, err)
			}
			n.kill()
			rep = pm.cut(mode, seed+uint64(cycle))
		})
		t.Logf("cycle %d: %v", cycle, rep)
		// The catalog is never fsynced while the node runs, so a cut under
		// load always finds unsynced writes; none means the node's writes
		// did not go through the model, and this test tested nothing.
		if rep.DataOps == 0 {
			t.Fatalf("cycle %d: nothing was unsynced at the cut", cycle)
		}
		if mode == powercutfs.DropAll && (rep.Dropped != rep.DataOps || rep.MetaKept != 0) {
			t.Fatalf("cycle %d: a drop-all cut kept something: %v", cycle, rep)
		}
		n.start()
		// The node recovered from a snapshot, not from the log alone.
		if idx := n.lastSnapshotIndex(t); idx == 0 {
			t.Fatalf("cycle %d: no Raft snapshot survived the cut", cycle)
		}
		checkCrashState(t, n, known, cycle)
		n.stop()
		n.requireFsckClean()
		if t.Failed() {
			t.FailNow()
		}
	}
}
