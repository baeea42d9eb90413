package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/store"
	"github.com/blobnode/blobnode/volume"
)

// readFailDevice fails every ReadAt that touches [from, to) with err.
type readFailDevice struct {
	volume.Device
	from, to int64
	err      error
	mu       sync.Mutex // guards failed
	failed   int        // reads refused
}

func (d *readFailDevice) ReadAt(p []byte, off int64) (int, error) {
	if off < d.to && off+int64(len(p)) > d.from {
		d.mu.Lock()
		d.failed++
		d.mu.Unlock()
		return 0, &fs.PathError{Op: "read", Path: "volume.blob", Err: d.err}
	}
	return d.Device.ReadAt(p, off)
}

// TestFsckReadError: a chunk the device cannot read (EIO) is a problem
// of its blob, reported with key, chunk and device offset (exit 1, not
// "could not check"), while the other blob is clean; with the device
// healthy again the same directory checks clean: nothing was changed.
func TestFsckReadError(t *testing.T) {
	dir := t.TempDir()
	victim := bytes.Repeat([]byte("0123456789abcdef"), 600_000/16) // three chunks
	runNodeWith(t, dir, func(base string, c *http.Client) {
		putBlob(t, c, base, "fsck/victim", victim)
		putBlob(t, c, base, "fsck/bystander", []byte("small and healthy"))
	})
	var out bytes.Buffer
	if code := fsck(dir, &out, nil); code != 0 {
		t.Fatalf("fsck of a healthy directory: exit %d\n%s", code, &out)
	}

	b := blobRecord(t, dir, "fsck/victim")
	chunk1 := deviceOffset(t, b, store.ChunkSize) // chunk 1 lies in the blob's first extent
	dev := (*readFailDevice)(nil)
	wrap := func(d volume.Device) volume.Device {
		dev = &readFailDevice{Device: d, from: chunk1 + 1000, to: chunk1 + 1001, err: syscall.EIO}
		return dev
	}
	out.Reset()
	code := fsck(dir, &out, wrap)
	want := fmt.Sprintf(`problem: blob "fsck/victim" version %d chunk 1 at device offset %d: %v: read volume.blob: %v`,
		b.Version, chunk1, store.ErrReadFailed, syscall.EIO)
	if code != 1 || !strings.Contains(out.String(), want+"\n") || strings.Count(out.String(), "problem:") != 1 {
		t.Fatalf("fsck with chunk 1 of fsck/victim unreadable: exit %d, want 1 and only the problem\n%s\ngot:\n%s", code, want, &out)
	}
	if dev == nil || dev.failed == 0 {
		t.Fatal("fsck never read through the failing device")
	}

	out.Reset()
	if code := fsck(dir, &out, nil); code != 0 {
		t.Fatalf("fsck after the device recovered: exit %d\n%s", code, &out)
	}
}

// runNodeWith runs the daemon in this process on dir (a small volume,
// free loopback ports), calls use once it is ready, then stops it as
// SIGTERM would and waits for a clean exit.
func runNodeWith(t *testing.T, dir string, use func(base string, c *http.Client)) {
	t.Helper()
	httpAddr, raftAddr := freeAddr(t), freeAddr(t)
	cfg, err := parseConfig([]string{"-data-dir", dir, "-http-addr", httpAddr, "-raft-addr", raftAddr, "-volume-size", "64MiB"},
		func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg, slog.New(slog.DiscardHandler)) }()
	base := "http://" + httpAddr
	c := &http.Client{Timeout: 30 * time.Second}
	defer c.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := c.Get(base + "/readyz")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("node stopped before it was ready: %v", err)
		case <-time.After(10 * time.Millisecond): // polling with a deadline
		}
		if time.Now().After(deadline) {
			t.Fatalf("node not ready after 30s: %v", err)
		}
	}
	use(base, c)
	stop()
	if err := <-done; err != nil {
		t.Fatalf("node stopped with %v", err)
	}
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

func putBlob(t testing.TB, c *http.Client, base, key string, body []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPut, base+"/blobs/"+key, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusCreated {
		t.Fatalf("PUT %s: %d %s", key, resp.StatusCode, b)
	}
}

// blobRecord reads key's record from the stopped node's catalog.
func blobRecord(t testing.TB, dir, key string) catalog.Blob {
	t.Helper()
	db, err := catalog.Open(filepath.Join(dir, catalogFile), catalog.Options{Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var b catalog.Blob
	var ok bool
	if err := db.View(func(tx *catalog.Tx) error {
		var err error
		b, ok, err = tx.GetBlob(key)
		return err
	}); err != nil || !ok {
		t.Fatalf("catalog record of %q: found %v, %v", key, ok, err)
	}
	return b
}

// deviceOffset maps byte off of blob b to its device offset.
func deviceOffset(t testing.TB, b catalog.Blob, off int64) int64 {
	t.Helper()
	for _, x := range b.Extents {
		if off < x.Length {
			return x.Offset + off
		}
		off -= x.Length
	}
	t.Fatal(errors.New("offset beyond the blob's extents"))
	return -1
}
