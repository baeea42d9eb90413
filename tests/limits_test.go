package tests

import (
	"bufio"
	"errors"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
)

// TestLimits checks each size and concurrency limit of the real binary
// with the status a client sees.
func TestLimits(t *testing.T) {
	t.Parallel()
	n := newNode(t, "-max-header-bytes", "8KiB", "-max-concurrent-uploads", "1", "-max-blob-size", "2MiB")

	t.Run("HeaderBytes", func(t *testing.T) {
		// Go allows 4 KiB of slack over MaxHeaderBytes; 20 KiB is well over.
		r, ok := n.exchange(t, req("GET /blobs/x", "X-Big: "+strings.Repeat("b", 20<<10))+"\r\n")
		if !ok || r.status != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("20 KiB of headers: %v (answered %v), want 431", r, ok)
		}
		r, ok = n.exchange(t, req("GET /blobs/x", "X-Big: "+strings.Repeat("b", 4<<10))+"\r\n")
		if !ok || r.status != http.StatusNotFound || r.code() != "NotFound" {
			t.Fatalf("4 KiB of headers: %v, want 404 NotFound", r)
		}
	})

	t.Run("KeyLength", func(t *testing.T) {
		longest := strings.Repeat("k", 1024)
		n.put(t, longest, []byte("longest"))
		if r := n.do(t, http.MethodGet, blobPath(longest), nil); r.status != 200 || string(r.body) != "longest" {
			t.Fatalf("GET of a 1024-byte key: %v", r)
		}
		r := n.do(t, http.MethodPut, blobPath(longest+"k"), []byte("x"))
		if r.status != http.StatusBadRequest || r.code() != "InvalidKey" ||
			!strings.Contains(string(r.body), "1025 bytes, longer than the maximum of 1024") {
			t.Fatalf("PUT of a 1025-byte key: %v, want 400 InvalidKey naming the rule", r)
		}
	})

	t.Run("BlobSize", func(t *testing.T) {
		n.put(t, "size/at-limit", payload(1, 2<<20))
		r := n.do(t, http.MethodPut, blobPath("size/over"), payload(2, 2<<20+1))
		if r.status != http.StatusRequestEntityTooLarge || r.code() != "TooLarge" {
			t.Fatalf("PUT of max+1 bytes: %v, want 413 TooLarge", r)
		}
		n.requireAbsent(t, "size/over")
	})

	t.Run("ListLimit", func(t *testing.T) {
		if r := n.do(t, http.MethodGet, "/blobs?limit=1000", nil); r.status != http.StatusOK {
			t.Fatalf("limit=1000: %v", r)
		}
		// Over the maximum is refused, not clamped: a client asking for
		// more than it can get learns it from the status, not by paging.
		for _, l := range []string{"1001", "0", "100000000000000000000"} {
			r := n.do(t, http.MethodGet, "/blobs?limit="+l, nil)
			if r.status != http.StatusBadRequest || r.code() != "InvalidArgument" ||
				!strings.Contains(string(r.body), "limit must be an integer from 1 to 1000") {
				t.Fatalf("limit=%s: %v, want 400 InvalidArgument naming the range", l, r)
			}
		}
	})

	t.Run("ConcurrentUploads", func(t *testing.T) {
		base := n.heldBytes(t)
		// One upload holds the only slot, stopped mid-body.
		c := n.dialRaw(t)
		writeAll(t, c, putHead("conc/held", "Content-Length: 100000"))
		first := payload(3, 100000)
		writeAll(t, c, first[:40000])
		var held int64
		waitFor(t, abortTimeout, func() bool { held = n.heldBytes(t); return held > base },
			func() string { return "the held upload never reserved space" })

		r := n.do(t, http.MethodPut, blobPath("conc/refused"), payload(4, 1000))
		if r.status != http.StatusServiceUnavailable || r.code() != "TooManyUploads" || r.header.Get("Retry-After") != "1" {
			t.Fatalf("PUT while the slot is taken: %v (Retry-After %q), want 503 TooManyUploads with Retry-After: 1",
				r, r.header.Get("Retry-After"))
		}
		if !strings.Contains(string(n.do(t, http.MethodGet, "/metrics", nil).body), "blobnode_http_uploads_rejected_total 1\n") {
			t.Error("the rejection was not counted")
		}
		// Reads are not limited.
		if r := n.do(t, http.MethodGet, blobPath("size/at-limit"), nil); r.status != http.StatusOK {
			t.Fatalf("GET while uploads are full: %v", r)
		}

		writeAll(t, c, first[40000:])
		if r := readReply(t, c, http.MethodPut); r.status != http.StatusCreated {
			t.Fatalf("the held upload: %v", r)
		}
		n.requireAbsent(t, "conc/refused")
		n.put(t, "conc/after", []byte("the slot is free again"))
		n.requireBlob(t, "conc/held", int64(len(first)), sha256Of(first))
	})
}

// TestSlowClients checks the timeouts for slow clients against the real
// binary with one-second limits: a connection dribbling its headers is
// closed, an upload whose body stalls fails and leaves nothing, a download
// nobody reads is aborted, and an upload or a connection that is slow but
// alive is not cut.
func TestSlowClients(t *testing.T) {
	t.Parallel()
	const limit = time.Second
	n := newNode(t, "-read-header-timeout", "1s", "-body-read-timeout", "1s", "-write-timeout", "1s",
		"-idle-timeout", "30s", "-max-blob-size", "64MiB")
	n.put(t, "slow/keep", []byte("keep"))
	base := allocSize(4)
	n.waitHeld(t, base, settleTimeout)

	t.Run("DribbledHeaders", func(t *testing.T) {
		c := n.dialRaw(t)
		writeAll(t, c, []byte("GET /blobs/slow/keep HTTP/1.1\r\nHost: x\r\n"))
		stop := make(chan struct{})
		dribbled := make(chan struct{})
		go func() {
			// One header byte every 100 ms, never the blank line: each
			// byte arrives well within any per-read timeout.
			defer close(dribbled)
			tick := time.NewTicker(100 * time.Millisecond)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := c.Write([]byte("X")); err != nil {
					return
				}
			}
		}()
		defer func() { close(stop); <-dribbled }()
		start := time.Now()
		if err := c.SetReadDeadline(time.Now().Add(15 * time.Second)); err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(c) // whatever the node says, then its close
		took := time.Since(start)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("the node kept a connection dribbling its headers for %v", took)
		}
		if took < limit*9/10 {
			t.Fatalf("closed after %v, before the header timeout (%q, %v)", took, b, err)
		}
		// Go's server may say why before it closes (400 or 408).
		if len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 400 ") && !strings.HasPrefix(string(b), "HTTP/1.1 408 ") {
			t.Fatalf("answered %q", b)
		}
	})

	t.Run("StalledBody", func(t *testing.T) {
		c := n.dialRaw(t)
		writeAll(t, c, putHead("slow/stalled", "Content-Length: 100000"))
		writeAll(t, c, payload(5, 40000))
		// The client stays connected and silent.
		r := readReply(t, c, http.MethodPut)
		if r.status != http.StatusBadRequest || r.code() != "IncompleteBody" {
			t.Fatalf("stalled upload: %v, want 400 IncompleteBody", r)
		}
		if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !isReset(err) {
			t.Fatalf("connection not closed after the stalled upload: %v", err)
		}
		n.waitHeld(t, base, abortTimeout) // the reservation is freed
		n.requireAbsent(t, "slow/stalled")
	})

	t.Run("SteadyUpload", func(t *testing.T) {
		// Three times the timeout in all, a piece every quarter of it.
		pr, pw := io.Pipe()
		const pieces = 12
		stop := make(chan struct{})
		defer close(stop)
		body := payload(6, pieces*4096)
		go func() {
			tick := time.NewTicker(limit / 4)
			defer tick.Stop()
			for i := range pieces {
				select {
				case <-stop:
					pw.CloseWithError(errors.New("test ended"))
					return
				case <-tick.C:
				}
				if _, err := pw.Write(body[i*4096 : (i+1)*4096]); err != nil {
					return
				}
			}
			pw.Close()
		}()
		req, err := http.NewRequest(http.MethodPut, n.base+blobPath("slow/steady"), pr)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = int64(len(body))
		start := time.Now()
		resp, err := n.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("steady upload: %s", resp.Status)
		}
		if took := time.Since(start); took < 2*limit {
			t.Fatalf("the upload took only %v; the test proves nothing", took)
		}
		n.requireBlob(t, "slow/steady", int64(len(body)), sha256Of(body))
		base += allocSize(int64(len(body)))
	})

	t.Run("StalledDownload", func(t *testing.T) {
		const size = 32 << 20 // more than loopback socket buffers hold
		big := payload(7, size)
		n.put(t, "slow/big", big)
		done := n.requestsDone(t, http.MethodGet)
		c := n.dialRaw(t)
		writeAll(t, c, []byte("GET /blobs/slow/big HTTP/1.1\r\nHost: x\r\n\r\n"))
		// Read nothing until the node has given up on this response.
		waitFor(t, 15*time.Second, func() bool { return n.requestsDone(t, http.MethodGet) > done },
			func() string { return "the node never gave up on a download nobody reads" })
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("read response: %v", err)
		}
		got, err := io.Copy(io.Discard, resp.Body)
		if err == nil || got >= size {
			t.Fatalf("read %d of %d bytes (%v): want a truncated body", got, size, err)
		}
		// The blob itself is fine.
		n.requireBlob(t, "slow/big", size, sha256Of(big))
		if r := n.do(t, http.MethodDelete, blobPath("slow/big"), nil); r.status != http.StatusNoContent {
			t.Fatalf("DELETE: %v", r)
		}
	})

	t.Run("AgedKeepAlive", func(t *testing.T) {
		// A keep-alive connection idle for longer than the write timeout
		// still gets answers: no deadline of an earlier response is left
		// armed, not even for the server's own error answers.
		c := n.dialRaw(t)
		br := bufio.NewReader(c)
		get := func(extra string) int {
			writeAll(t, c, []byte("GET /healthz HTTP/1.1\r\nHost: x\r\n"+extra+"\r\n"))
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("read response on the aged connection: %v", err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			return resp.StatusCode
		}
		if s := get(""); s != http.StatusOK {
			t.Fatalf("GET /healthz: %d", s)
		}
		// Let the connection age past the write timeout: the condition
		// under test is the passage of time itself.
		<-time.After(limit * 3 / 2)
		if s := get(""); s != http.StatusOK {
			t.Fatalf("GET /healthz after idling: %d", s)
		}
		<-time.After(limit * 3 / 2)
		if s := get("X-Big: " + strings.Repeat("b", 80<<10) + "\r\n"); s != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("oversized headers after idling: %d, want 431", s)
		}
	})

	n.requireBlob(t, "slow/keep", 4, sha256Of([]byte("keep")))
	n.stop()
	n.requireFsckClean()
}
