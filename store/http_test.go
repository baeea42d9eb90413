package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/blobnode/blobnode/api"
	"github.com/blobnode/blobnode/store"
	"github.com/blobnode/blobnode/volume"
)

// TestHTTPCorruptOrReadErrorChunk puts the public API in front of a real store
// whose volume has a bad chunk (a flipped byte, or a range the device
// cannot read): found before the first body byte, the GET answers 500
// with code Corrupt or ReadError and the project's JSON error, and no
// success headers; found later, the response is cut (the client sees a
// truncated body, never a complete-looking one). Either way the failure
// is counted exactly once, in the right counter, and logged as exactly
// one Error record (store and API together) naming key, chunk and device
// offset; other blobs still read, and once the fault is gone the blob
// reads whole.
func TestHTTPCorruptOrReadErrorChunk(t *testing.T) {
	g := volume.Geometry{SpageShift: 12, LpageShift: 18, VolumeSize: 16 << 20}
	dev := &store.ReadFailDevice{Device: volume.NewMemDevice(g.VolumeSize, 1)}
	logs := store.NewLogRecorder()
	log := slog.New(logs)
	ts := store.NewTestStack(t, g, store.Config{Logger: log}, dev)
	srv := httptest.NewServer(api.NewHandler(ts.Store, api.Config{Logger: log, Registerer: prometheus.NewRegistry()}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const size = 600_000 // chunks 0 and 1 are whole lpages, chunk 2 the tail
	put := func(key string, body []byte) {
		t.Helper()
		if _, err := ts.Store.Put(ctx, store.PutRequest{Key: key, Size: int64(len(body)), Body: bytes.NewReader(body)}); err != nil {
			t.Fatalf("PUT %s: %v", key, err)
		}
	}
	bystander := body(99, size)
	put("bystander", bystander)

	const aborted = 0
	for i, tc := range []struct {
		name   string
		eio    bool  // else a flipped byte
		at     int64 // blob byte of the fault
		rng    string
		status int // aborted: the response started, then was cut
		code   string
	}{
		{"corrupt first chunk", false, 1000, "", http.StatusInternalServerError, api.CodeCorrupt},
		{"corrupt chunk first in range", false, 300_000, "bytes=290000-290099", http.StatusInternalServerError, api.CodeCorrupt},
		{"corrupt later chunk", false, 300_000, "", aborted, ""},
		{"unreadable first chunk", true, 1000, "", http.StatusInternalServerError, api.CodeReadError},
		{"unreadable chunk first in range", true, 530_000, "bytes=530000-", http.StatusInternalServerError, api.CodeReadError},
		{"unreadable later chunk", true, 530_000, "", aborted, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := fmt.Sprintf("victim-%d", i)
			data := body(uint64(i), size)
			put(key, data)
			chunk := tc.at / store.ChunkSize
			at := ts.DeviceOffset(t, key, tc.at)
			wantOffset := ts.DeviceOffset(t, key, chunk*store.ChunkSize) // each fault is in the chunk's first extent
			var heal func()
			if tc.eio {
				dev.Fail(at, at+1, syscall.EIO)
				heal = func() { dev.Fail(0, 0, nil) }
			} else {
				flip(t, ts.Vol, at)
				heal = func() { flip(t, ts.Vol, at) }
			}
			before := ts.Store.ChunkStats()
			logs.Reset()

			resp := get(t, srv, key, tc.rng)
			if tc.status == aborted {
				if resp.status != http.StatusOK || resp.readErr == nil {
					t.Fatalf("GET: %d, read error %v, %d bytes; want 200 cut short", resp.status, resp.readErr, len(resp.body))
				}
				if n := chunk * store.ChunkSize; int64(len(resp.body)) > n || !bytes.Equal(resp.body, data[:len(resp.body)]) {
					t.Errorf("the cut response carried %d bytes (matching what was stored: %v); at most the %d before chunk %d",
						len(resp.body), bytes.Equal(resp.body, data[:min(len(resp.body), len(data))]), n, chunk)
				}
			} else {
				if resp.readErr != nil || resp.status != tc.status || resp.code() != tc.code {
					t.Errorf("GET: %d %q (read error %v): %s; want %d %s", resp.status, resp.code(), resp.readErr, resp.body, tc.status, tc.code)
				}
				if h := resp.header; h.Get("Content-Type") != "application/json" || h.Get("ETag") != "" || h.Get("Content-Range") != "" {
					t.Errorf("error response has headers %v; want JSON and no success headers", h)
				}
			}

			wantStats := before
			if tc.eio {
				wantStats.ReadErrors++
			} else {
				wantStats.Corrupt++
			}
			if got := ts.Store.ChunkStats(); got != wantStats {
				t.Errorf("ChunkStats %+v after one GET, was %+v; want %+v", got, before, wantStats)
			}
			requireOneError(t, logs, key, chunk, wantOffset)

			if r := get(t, srv, "bystander", ""); r.status != http.StatusOK || !bytes.Equal(r.body, bystander) {
				t.Fatalf("GET bystander: %d, %d bytes, %v", r.status, len(r.body), r.readErr)
			}
			heal()
			if r := get(t, srv, key, ""); r.status != http.StatusOK || r.readErr != nil || !bytes.Equal(r.body, data) {
				t.Fatalf("GET %s after the fault is gone: %d, %d bytes, %v", key, r.status, len(r.body), r.readErr)
			}
		})
	}
}

func body(seed uint64, n int) []byte {
	b := make([]byte, n)
	x := seed*0x9e3779b97f4a7c15 + 1
	for i := range b {
		x ^= x << 13
		x ^= x >> 7
		x ^= x << 17
		b[i] = byte(x)
	}
	return b
}

// flip inverts one bit of the byte at device offset off.
func flip(t testing.TB, vol *volume.Volume, off int64) {
	t.Helper()
	b := make([]byte, 1)
	if _, err := vol.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := vol.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

type reply struct {
	status  int
	header  http.Header
	body    []byte
	readErr error
}

func (r reply) code() string {
	var e struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(r.body, &e) != nil || e.Error.Message == "" {
		return ""
	}
	return e.Error.Code
}

func get(t testing.TB, srv *httptest.Server, key, rng string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, srv.URL+"/blobs/"+key, nil)
	if err != nil {
		t.Fatal(err)
	}
	if rng != "" {
		req.Header.Set("Range", rng)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", key, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Logf("GET %s: body: %v", key, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b, readErr: err}
}

// requireOneError fails unless logs hold exactly one record at Error or
// above, naming key, chunk and device offset.
func requireOneError(t testing.TB, logs *store.LogRecorder, key string, chunk, offset int64) {
	t.Helper()
	errs := logs.AtLeast(slog.LevelError)
	if len(errs) != 1 {
		var msgs []string
		for _, r := range errs {
			msgs = append(msgs, r.Message)
		}
		t.Fatalf("%d Error log records %q; want exactly one", len(errs), msgs)
	}
	a := store.RecordAttrs(errs[0])
	if a["key"].String() != key || a["chunk"].Kind() != slog.KindInt64 || a["chunk"].Int64() != chunk ||
		a["offset"].Kind() != slog.KindInt64 || a["offset"].Int64() != offset {
		t.Errorf("Error record %q: key=%v chunk=%v offset=%v; want key=%s chunk=%d offset=%d",
			errs[0].Message, a["key"], a["chunk"], a["offset"], key, chunk, offset)
	}
}
