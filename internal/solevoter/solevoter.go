// Package solevoter starts a one-node group over real parts, for the tests
// of the layers above raftfsm (store, cluster): a volume on the device the
// test gives, the space allocator, a bbolt catalog file (NoSync, as the
// daemon runs it), the state machine and Raft over loopback TCP.
package solevoter

import (
	"context"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/raftfsm"
	"github.com/blobnode/blobnode/space"
	"github.com/blobnode/blobnode/volume"
)

// Group is a started one-node group; the test's cleanup closes it.
type Group struct {
	Vol   *volume.Volume
	Alloc *space.Allocator
	Cat   *catalog.DB
	FSM   *raftfsm.FSM
	Node  *raftfsm.Node
}

// Start formats dev with geometry g, starts the group on it and returns
// once the node leads and has applied its log.
func Start(t testing.TB, g volume.Geometry, dev volume.Device) *Group {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	vol, err := space.FormatVolume(dev, volume.FormatOptions{Geometry: g})
	if err != nil {
		t.Fatalf("format: %v", err)
	}
	alloc, err := space.Open(vol)
	if err != nil {
		t.Fatalf("space.Open: %v", err)
	}
	cat, err := catalog.Open(filepath.Join(dir, "catalog.db"), catalog.Options{NoSync: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("catalog.Open: %v", err)
	}
	fsm, err := raftfsm.Open(context.Background(), cat, alloc, vol.Superblock().Placement(), log, false)
	if err != nil {
		t.Fatalf("raftfsm.Open: %v", err)
	}
	fsm.AttachData(vol)
	node, err := raftfsm.StartNode(context.Background(), raftfsm.NodeConfig{ID: "n1", Dir: filepath.Join(dir, "raft"), BindAddr: freeAddr(t), Bootstrap: true, Logger: log}, fsm)
	if err != nil {
		t.Fatalf("StartNode: %v", err)
	}
	t.Cleanup(func() {
		node.Close()
		cat.Close()
		vol.Close()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := node.WaitLeader(ctx); err != nil {
		t.Fatalf("no leader: %v", err)
	}
	if err := node.ReadBarrier(ctx); err != nil {
		t.Fatalf("ReadBarrier: %v", err)
	}
	return &Group{Vol: vol, Alloc: alloc, Cat: cat, FSM: fsm, Node: node}
}

func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
