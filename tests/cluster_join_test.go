package tests

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bncluster "github.com/blobnode/blobnode/cluster"
	"github.com/blobnode/blobnode/volume"
)

// setFlag replaces (or adds) -name value in flags; an empty value removes it.
func setFlag(flags []string, name, value string) []string {
	out := []string{}
	for i := 0; i < len(flags); i++ {
		if flags[i] == name && i+1 < len(flags) {
			i++
			continue
		}
		out = append(out, flags[i])
	}
	if value != "" {
		out = append(out, name, value)
	}
	return out
}

// members returns the ids of the group's configuration as node i sees it.
func (c *cluster) members(t *testing.T, i int) []string {
	t.Helper()
	var s struct {
		Nodes []struct {
			ID string `json:"id"`
		} `json:"nodes"`
	}
	c.nodes[i].status(t, &s)
	var ids []string
	for _, n := range s.Nodes {
		ids = append(ids, n.ID)
	}
	slices.Sort(ids)
	return ids
}

// refusesLayoutOnly asks the group to admit nodes whose volumes have the
// group's geometry (page sizes, volume size) but another format version,
// journal size or heap: each would put allocations at other offsets, so
// each is refused, naming both layouts, and the members stay want.
func refusesLayoutOnly(t *testing.T, c *cluster, want []string) {
	t.Helper()
	head := make([]byte, 4096)
	f, err := os.Open(filepath.Join(c.nodes[0].dir, "volume.blob"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadFull(f, head)
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	sb, err := volume.DecodeSuperblock(head)
	if err != nil {
		t.Fatal(err)
	}
	group := sb.Placement()
	secret, err := os.ReadFile(c.secret)
	if err != nil {
		t.Fatal(err)
	}
	secret = bytes.TrimSpace(secret) // as blobnode reads it
	for _, tc := range []struct {
		name   string
		change func(*volume.Placement)
	}{
		{"format version", func(p *volume.Placement) { p.Version-- }},
		{"journal size", func(p *volume.Placement) { p.JournalSize *= 2 }},
		{"heap", func(p *volume.Placement) { p.HeapOffset += 8192; p.HeapSize -= 8192 }},
	} {
		node := group
		tc.change(&node)
		if node.Geometry != group.Geometry {
			t.Fatalf("%s: the change altered the geometry", tc.name)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		err := bncluster.Join(ctx, http.DefaultClient, c.nodes[0].base, secret, bncluster.JoinRequest{
			ID: "n9", RaftAddr: "127.0.0.1:1", APIAddr: "127.0.0.1:2", Layout: node.String(),
		})
		cancel()
		if !errors.Is(err, bncluster.ErrJoinRefused) || !strings.Contains(err.Error(), group.String()) || !strings.Contains(err.Error(), node.String()) {
			t.Fatalf("join with another %s (%s): %v; want a refusal naming both layouts (the group's: %s)", tc.name, node, err, group)
		}
		if got := c.members(t, 0); !slices.Equal(got, want) {
			t.Fatalf("%s: members %v after a refused join; want %v", tc.name, got, want)
		}
	}
}

// TestClusterJoinAndRemove: a fourth node joins a running group with
// -join; one with another volume layout, or with Raft state of its own,
// is refused with a clear error and nothing changes; DELETE
// /cluster/nodes/{id} removes a member.
func TestClusterJoinAndRemove(t *testing.T) {
	c := prepareCluster(t, 4)
	var peers []string
	for i := range 3 {
		peers = append(peers, c.ids[i]+"="+c.raftProxy[i])
	}
	for i := range 3 {
		c.nodes[i].flags = setFlag(c.nodes[i].flags, "-peers", strings.Join(peers, ","))
	}
	j := c.nodes[3]
	j.flags = setFlag(j.flags, "-peers", "")
	joinFlags := setFlag(j.flags, "-join", "http://"+c.apiProxy[0])
	for i := range 3 {
		c.launch(i)
	}
	for i := range 3 {
		c.nodes[i].waitReady()
	}
	c.waitLeader(0, 1, 2)
	want := []string{"n1", "n2", "n3"}

	refused := func(why string, flags []string) {
		t.Helper()
		j.flags = flags
		if code := j.startExpectingExit(t); code == 0 {
			t.Fatalf("%s: the joining node exited 0", why)
		}
		log, _ := os.ReadFile(j.logPath)
		if !strings.Contains(string(log), "join refused") {
			t.Fatalf("%s: the log does not say the join was refused:\n%s", why, tailFile(j.logPath, 5))
		}
		if got := c.members(t, 0); !slices.Equal(got, want) {
			t.Fatalf("%s: members %v after a refused join; want %v", why, got, want)
		}
	}
	refused("another volume layout", setFlag(joinFlags, "-volume-size", "128MiB"))
	c.wipe(3)
	refusesLayoutOnly(t, c, want)

	// A node that bootstrapped a group of its own.
	j.flags = setFlag(j.flags, "-join", "")
	j.start()
	j.stop()
	refused("Raft state of its own", joinFlags)
	c.wipe(3)

	j.flags = joinFlags
	j.start()
	want = []string{"n1", "n2", "n3", "n4"}
	waitFor(t, readyTimeout, func() bool { return slices.Equal(c.members(t, 1), want) },
		func() string { return "n4 is not in the configuration" })
	body := bytes.Repeat([]byte("joined "), 50000) // streamed: to a majority of four
	j.put(t, "join/big", body)
	for i := range 4 {
		if r := c.nodes[i].do(t, http.MethodGet, blobPath("join/big"), nil); r.status != 200 || !bytes.Equal(r.body, body) {
			t.Fatalf("%s: GET after the join: %v", c.ids[i], r)
		}
	}

	if r := c.nodes[1].do(t, http.MethodDelete, "/cluster/nodes/n4", nil); r.status != http.StatusNoContent {
		t.Fatalf("DELETE /cluster/nodes/n4: %v", r)
	}
	// The leader has committed the removal; a follower applies the new
	// configuration once the entry reaches it, a moment later.
	want = []string{"n1", "n2", "n3"}
	waitFor(t, readyTimeout, func() bool { return slices.Equal(c.members(t, 0), want) },
		func() string { return fmt.Sprintf("members after the removal: %v", c.members(t, 0)) })
	if r := c.nodes[1].do(t, http.MethodDelete, "/cluster/nodes/n9", nil); r.status != http.StatusNotFound {
		t.Fatalf("DELETE of a node that is not a member: %v; want 404", r)
	}
}
