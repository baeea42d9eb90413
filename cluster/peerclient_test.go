package cluster

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// TestPeerRequestTimeouts: an upload stream to a peer that keeps taking
// bytes outlasts the bound on whole requests (a client-wide timeout would
// cut every upload longer than it), while a whole request to a peer that
// never answers fails once that bound has passed.
func TestPeerRequestTimeouts(t *testing.T) {
	const bound = 200 * time.Millisecond
	hung := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/peer/data":
			n, err := io.Copy(io.Discard, r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			writeJSON(w, http.StatusOK, struct{ N int64 }{n})
		case "/peer/readindex":
			<-r.Context().Done() // never answers; ends when the caller gives up
			close(hung)
		}
	}))
	defer srv.Close()
	c := &Coordinator{
		sign:           newSigner([]byte("the cluster secret, long enough")),
		client:         NewPeerClient(&http.Transport{}),
		scheme:         "http",
		log:            slog.New(slog.DiscardHandler),
		requestTimeout: bound,
		apiOf:          map[raft.ServerAddress]string{"peer:7000": strings.TrimPrefix(srv.URL, "http://")},
	}
	if c.client.Timeout != 0 {
		t.Fatalf("the peer client has a timeout of %v over every request, streams included", c.client.Timeout)
	}

	t.Run("a stream longer than the bound", func(t *testing.T) {
		pr, pw := io.Pipe()
		go func() {
			// Bytes keep coming until well past the bound.
			deadline := time.Now().Add(4 * bound)
			for time.Now().Before(deadline) {
				if _, err := pw.Write(make([]byte, 1024)); err != nil {
					return
				}
				time.Sleep(bound / 10)
			}
			pw.Close()
		}()
		start := time.Now()
		resp, err := c.sendStream(context.Background(), "peer:7000", http.MethodPut, "/peer/data", pr, nil)
		if err != nil {
			t.Fatalf("a stream of %v: %v", time.Since(start).Round(time.Millisecond), err)
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("answered %d", resp.StatusCode)
		}
		if d := time.Since(start); d < 4*bound {
			t.Fatalf("the stream took %v, not past the bound's %v: the test shows nothing", d, bound)
		}
	})

	t.Run("a whole request to a peer that never answers", func(t *testing.T) {
		start := time.Now()
		var out struct{}
		err := c.call(context.Background(), "peer:7000", http.MethodGet, "/peer/readindex", nil, &out)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("call: %v; want a deadline", err)
		}
		if d := time.Since(start); d > 20*bound {
			t.Fatalf("gave up after %v; the bound is %v", d, bound)
		}
		<-hung // the peer saw the request end
	})
}
