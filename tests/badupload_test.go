package tests

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// abortTimeout bounds how long a node may take to free an aborted upload's
// space after the client is gone.
const abortTimeout = 15 * time.Second

// dialRaw opens a plain TCP connection to the node, with a deadline on
// every operation so a test can never hang on it.
func (n *node) dialRaw(t testing.TB) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", n.httpAddr, 5*time.Second)
	if err != nil {
		t.Fatalf("dial %s: %v", n.httpAddr, err)
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func writeAll(t testing.TB, c net.Conn, b []byte) {
	t.Helper()
	if _, err := c.Write(b); err != nil {
		t.Fatalf("write to the node: %v", err)
	}
}

func readReply(t testing.TB, c net.Conn, method string) reply {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(c), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read response body: %v", err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func putHead(key string, extra ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "PUT %s HTTP/1.1\r\nHost: 127.0.0.1\r\n", blobPath(key))
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return []byte(b.String())
}

// chunk frames p as one chunk of a chunked body.
func chunk(p []byte) []byte {
	return append(fmt.Appendf(nil, "%x\r\n", len(p)), append(p, '\r', '\n')...)
}

// TestBadUploads checks that uploads that do not complete leave no visible
// blob and give their space back, and that oversized uploads are refused.
func TestBadUploads(t *testing.T) {
	const maxBlob = 1 << 20
	n := newNode(t, "-max-blob-size", "1MiB")
	keep := payload(10, 5000)
	n.put(t, "bad/keep", keep) // something that must survive all of this
	base := allocSize(int64(len(keep)))
	n.waitHeld(t, base, settleTimeout)

	// settle waits until the node finished `want` PUTs and the space is back.
	putsDone := n.requestsDone(t, http.MethodPut)
	settle := func(t *testing.T, key string) {
		t.Helper()
		putsDone++
		waitFor(t, abortTimeout, func() bool { return n.requestsDone(t, http.MethodPut) >= putsDone },
			func() string { return "the node never finished the PUT of " + key })
		n.waitHeld(t, base, abortTimeout)
		n.requireAbsent(t, key)
		if p := n.listPage(t, key, "", 0); len(p.Blobs) != 0 {
			t.Fatalf("listing shows %+v after a failed upload", p.Blobs)
		}
	}
	// reserved waits until an upload holds space: the node is mid-upload.
	reserved := func(t *testing.T) {
		t.Helper()
		var u int64
		waitFor(t, abortTimeout, func() bool { u = n.heldBytes(t); return u > base },
			func() string { return fmt.Sprintf("held bytes stay %d: the upload never reserved space", u) })
	}

	// Uploads cut after part of their declared body, on each PUT path.
	// An inline upload reserves nothing while it reads its body, so there
	// is no event to wait for: the close may land before or during the
	// read, and either way the PUT must fail and leave nothing.
	for _, tc := range []struct {
		name         string
		length, sent int64
		waitReserved bool
	}{
		{"TruncatedThenClosed", 100000, 40000, true}, // streamed
		{"TruncatedSmall", 50000, 20000, true},       // a pooled reservation
		{"TruncatedInline", 9000, 3000, false},       // inline in its Raft entry
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "bad/" + strings.ToLower(tc.name)
			c := n.dialRaw(t)
			writeAll(t, c, putHead(key, fmt.Sprintf("Content-Length: %d", tc.length)))
			writeAll(t, c, payload(seedOf(key), tc.sent))
			if tc.waitReserved {
				reserved(t)
			}
			c.Close()
			settle(t, key)
		})
	}

	t.Run("ChunkedClientDisconnects", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		pr, pw := io.Pipe()
		req, err := http.NewRequestWithContext(ctx, http.MethodPut, n.base+blobPath("bad/chunked"), pr)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = -1
		done := make(chan error, 1)
		go func() {
			resp, err := n.client.Do(req)
			if err == nil {
				resp.Body.Close()
				err = fmt.Errorf("got a response (%s) to an upload that never ended", resp.Status)
			}
			done <- err
		}()
		// Half the limit: more than one 256 KiB chunk, so the node has
		// reserved space and written some of it.
		if _, err := pw.Write(payload(12, maxBlob/2)); err != nil {
			t.Fatalf("write body: %v", err)
		}
		reserved(t)
		cancel() // the client goes away mid-body
		pw.CloseWithError(errors.New("client gave up"))
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Logf("client: %v", err)
			}
		case <-time.After(abortTimeout):
			t.Fatal("the cancelled request did not return")
		}
		settle(t, "bad/chunked")
	})

	t.Run("ShortBody", func(t *testing.T) {
		// The client sends less than Content-Length, half-closes, and waits
		// for the answer.
		c := n.dialRaw(t)
		writeAll(t, c, putHead("bad/short", "Content-Length: 100000"))
		writeAll(t, c, payload(13, 40000))
		reserved(t)
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		r := readReply(t, c, http.MethodPut)
		if r.status != http.StatusBadRequest || r.code() != "IncompleteBody" {
			t.Fatalf("short body: %v, want 400 IncompleteBody", r)
		}
		settle(t, "bad/short")
	})

	t.Run("ChunkedMalformed", func(t *testing.T) {
		c := n.dialRaw(t)
		writeAll(t, c, putHead("bad/malformed", "Transfer-Encoding: chunked"))
		writeAll(t, c, chunk(payload(14, 300<<10)))
		reserved(t)
		writeAll(t, c, []byte("zz\r\nnot a chunk\r\n"))
		r := readReply(t, c, http.MethodPut)
		if r.status != http.StatusBadRequest || r.code() != "IncompleteBody" {
			t.Fatalf("malformed chunked body: %v, want 400 IncompleteBody", r)
		}
		settle(t, "bad/malformed")
	})

	t.Run("TooLargeContentLength", func(t *testing.T) {
		c := n.dialRaw(t)
		// Refused from the headers alone: the body is never sent.
		writeAll(t, c, putHead("bad/toolarge", fmt.Sprintf("Content-Length: %d", maxBlob+1)))
		r := readReply(t, c, http.MethodPut)
		if r.status != http.StatusRequestEntityTooLarge || r.code() != "TooLarge" {
			t.Fatalf("PUT of max+1 bytes: %v, want 413 TooLarge", r)
		}
		settle(t, "bad/toolarge")
	})

	t.Run("TooLargeChunked", func(t *testing.T) {
		c := n.dialRaw(t)
		writeAll(t, c, putHead("bad/toolarge-chunked", "Transfer-Encoding: chunked"))
		wrote := make(chan struct{})
		go func() {
			// Past the limit by 64 KiB; the node may stop reading and
			// close first, so write errors are expected.
			defer close(wrote)
			piece := payload(15, 64<<10)
			for range maxBlob/len(piece) + 1 {
				if _, err := c.Write(chunk(piece)); err != nil {
					return
				}
			}
		}()
		r := readReply(t, c, http.MethodPut)
		c.Close()
		<-wrote
		if r.status != http.StatusRequestEntityTooLarge || r.code() != "TooLarge" {
			t.Fatalf("chunked PUT over the limit: %v, want 413 TooLarge", r)
		}
		settle(t, "bad/toolarge-chunked")
	})

	t.Run("AtTheLimit", func(t *testing.T) {
		// Exactly -max-blob-size is allowed; the space then is the blob's.
		body := payload(16, maxBlob)
		n.put(t, "bad/at-limit", body)
		n.waitHeld(t, base+allocSize(maxBlob), settleTimeout)
		putsDone++
		if r := n.do(t, http.MethodDelete, blobPath("bad/at-limit"), nil); r.status != http.StatusNoContent {
			t.Fatalf("DELETE: %v", r)
		}
		n.waitHeld(t, base, abortTimeout)
	})

	if p := n.listAll(t, "", 100); len(p) != 1 || p[0].Key != "bad/keep" {
		t.Fatalf("after the failed uploads the listing is %+v, want only bad/keep", p)
	}
	n.requireBlob(t, "bad/keep", int64(len(keep)), sha256Of(keep))
	n.stop()
	n.requireFsckClean()
}
