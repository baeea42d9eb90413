package tests

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// mountTmpfs mounts a tmpfs of size bytes on a fresh directory and unmounts
// it in t.Cleanup (registered after the directory's removal, so it runs
// first). It skips the test when that is impossible (not root, no tmpfs).
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs for the disk-full test")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		t.Skipf("cannot mount a tmpfs for the disk-full test: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes zeros to path until the filesystem is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("create filler: %v", err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			return
		}
	}
}

// metric returns the value of an unlabelled metric from /metrics.
func (n *node) metric(t testing.TB, name string) string {
	t.Helper()
	r := n.do(t, http.MethodGet, "/metrics", nil)
	for line := range strings.SplitSeq(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	t.Fatalf("no metric %s", name)
	return ""
}

// metricValue is n's metric name as a number.
func (n *node) metricValue(t testing.TB, name string) float64 {
	t.Helper()
	v, err := strconv.ParseFloat(n.metric(t, name), 64)
	if err != nil {
		t.Fatalf("metric %s: %v", name, err)
	}
	return v
}

type readOnlyStatus struct {
	ReadOnly bool   `json:"read_only"`
	Reason   string `json:"read_only_reason"`
}

func (n *node) readOnlyStatus(t testing.TB) readOnlyStatus {
	t.Helper()
	var s readOnlyStatus
	n.status(t, &s)
	return s
}

// startExpectingExit starts the node's process and waits for it to exit
// (it must, within readyTimeout); it returns the exit code.
func (n *node) startExpectingExit(t *testing.T) int {
	t.Helper()
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, blobnodeBin, append([]string{
		"-data-dir", n.dir, "-http-addr", n.httpAddr, "-raft-addr", n.raftAddr}, n.flags...)...)
	cmd.Env = nodeEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	fmt.Fprintf(logf, "=== start (expected to exit) %s\n", strings.Join(cmd.Args, " "))
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || !ee.Exited() {
		t.Fatalf("start on a full disk: %v (want a non-zero exit)", err)
	}
	return ee.ExitCode()
}

// TestDiskFullReadOnlyAndRecovery puts a node's data directory on a small
// tmpfs and fills it. The node must turn read-only with a clear error
// (never stop or lose anything), keep serving every acknowledged blob,
// report itself not ready, and recover on its own when space returns. A
// restart while the disk is full fails cleanly and works once it is not;
// fsck finds the directory clean.
func TestDiskFullReadOnlyAndRecovery(t *testing.T) {
	// The Raft log preallocates 64 MiB segments; the rest holds the 8 MiB
	// volume, the catalog and the filler.
	mnt := mountTmpfs(t, 96<<20)
	n := newNodeIn(t, filepath.Join(mnt, "data"), "-volume-size", "8MiB", "-lpage-shift", "20")
	filler := filepath.Join(mnt, "filler")

	type blob struct {
		key  string
		size int64
		sum  [32]byte
	}
	var acked []blob
	putUntilReadOnly := func(prefix string) reply {
		t.Helper()
		for i := range 5000 {
			key := fmt.Sprintf("%s/%04d", prefix, i)
			size := int64(1000 + (i*7919)%20000)
			body := payload(seedOf(key), size)
			r := n.do(t, http.MethodPut, blobPath(key), body)
			if r.status != http.StatusCreated {
				return r
			}
			acked = append(acked, blob{key, size, sha256Of(body)})
		}
		t.Fatal("no PUT failed after 5000 on a full disk")
		return reply{}
	}
	requireAll := func() {
		t.Helper()
		for _, b := range acked {
			n.requireBlob(t, b.key, b.size, b.sum)
		}
	}
	// refusal is the answer of a write refused as read-only: the PUT that
	// finds the disk full is refused (507 ReadOnly), unless Raft had
	// already taken it, which then answers 503 OutcomeUnknown (it applies
	// once the disk recovers); the next write is refused at once.
	probes := 0
	refusal := func(r reply) reply {
		t.Helper()
		if r.status != http.StatusServiceUnavailable || r.code() != "OutcomeUnknown" {
			return r
		}
		probes++
		return n.do(t, http.MethodPut, blobPath(fmt.Sprintf("probe/%d", probes)), payload(2, 100))
	}

	for i := range 5 { // some blobs while the disk has room
		key := fmt.Sprintf("before/%d", i)
		body := payload(seedOf(key), 5000)
		n.put(t, key, body)
		acked = append(acked, blob{key, 5000, sha256Of(body)})
	}
	fillDisk(t, filler)
	r := refusal(putUntilReadOnly("full"))
	const want = "node is read-only: "
	var e struct {
		Error struct{ Code, Message string } `json:"error"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || r.status != http.StatusInsufficientStorage ||
		e.Error.Code != "ReadOnly" || !strings.HasPrefix(e.Error.Message, want) ||
		!strings.HasSuffix(e.Error.Message, ": no space left on device") {
		t.Fatalf("PUT on a full disk: %v; want 507 ReadOnly %q...: no space left on device", r, want)
	}
	t.Logf("read-only after %d blobs: %s", len(acked), e.Error.Message)

	// Read-only: every acknowledged blob reads back; writes are refused.
	requireAll()
	if got := len(n.listAll(t, "", 100)); got < len(acked) {
		t.Fatalf("listing has %d blobs, want at least %d", got, len(acked))
	}
	if r := n.do(t, http.MethodGet, "/readyz", nil); r.status != http.StatusServiceUnavailable || !strings.Contains(string(r.body), "read-only") {
		t.Fatalf("/readyz while read-only: %v", r)
	}
	if v := n.metric(t, "blobnode_read_only"); v != "1" {
		t.Fatalf("blobnode_read_only = %s while read-only", v)
	}
	if s := n.readOnlyStatus(t); !s.ReadOnly || !strings.HasSuffix(s.Reason, "no space left on device") {
		t.Fatalf("/cluster while read-only: %+v", s)
	}
	if r := n.do(t, http.MethodPut, blobPath("refused"), payload(1, 100)); r.status != http.StatusInsufficientStorage || r.code() != "ReadOnly" {
		t.Fatalf("PUT while read-only: %v", r)
	}
	if r := n.do(t, http.MethodDelete, blobPath(acked[0].key), nil); r.status != http.StatusInsufficientStorage || r.code() != "ReadOnly" {
		t.Fatalf("DELETE while read-only: %v", r)
	}
	n.requireBlob(t, acked[0].key, acked[0].size, acked[0].sum)

	// Space returns: the node recovers by itself.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, readyTimeout, func() bool {
		return n.do(t, http.MethodGet, "/readyz", nil).status == http.StatusOK
	}, func() string { return fmt.Sprintf("still not ready: %+v", n.readOnlyStatus(t)) })
	if v := n.metric(t, "blobnode_read_only"); v != "0" {
		t.Fatalf("blobnode_read_only = %s after recovery", v)
	}
	for i := range 5 {
		key := fmt.Sprintf("after/%d", i)
		body := payload(seedOf(key), 7000)
		n.put(t, key, body)
		acked = append(acked, blob{key, 7000, sha256Of(body)})
	}
	requireAll()

	// Full again, then a restart: it must fail cleanly while the disk is
	// full, and find everything once it is not.
	fillDisk(t, filler)
	if r := refusal(putUntilReadOnly("again")); r.status != http.StatusInsufficientStorage || r.code() != "ReadOnly" {
		t.Fatalf("PUT on a full disk (second time): %v", r)
	}
	n.stop()
	if code := n.startExpectingExit(t); code == 0 {
		t.Fatal("start on a full disk exited 0")
	}
	log := tailFile(n.logPath, 20)
	if !strings.Contains(log, "no space left on device") {
		t.Fatalf("start on a full disk did not say why:\n%s", log)
	}
	t.Logf("start on a full disk: %s", log[strings.LastIndex(log, "\n")+1:])
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	n.start()
	requireAll()
	n.put(t, "restarted", payload(2, 3000))
	n.stop()
	n.requireFsckClean()
}
