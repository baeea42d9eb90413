package store

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"github.com/blobnode/blobnode/volume"
)

// onlyReader hides bytes.Reader's other methods, like a chunked HTTP body.
type onlyReader struct{ r io.Reader }

func (o onlyReader) Read(p []byte) (int, error) { return o.r.Read(p) }

// A chunked upload (Size -1) reserves one lpage whenever the next read
// does not fit, but reads ChunkSize (256 KiB) at a time: with an lpage
// below 256 KiB (allowed: lpage-shift >= spage-shift) a body longer than
// one lpage never fits in the reserved extents and the write fails.
func TestChunkedUploadSmallLpage(t *testing.T) {
	g := volume.Geometry{SpageShift: 12, LpageShift: 16, VolumeSize: 16 << 20} // 64 KiB lpages
	s := newReviewStack(t, g, Config{})
	body := reviewBody(1, 100<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := s.st.Put(ctx, PutRequest{Key: "k", Size: -1, Body: onlyReader{bytes.NewReader(body)}}); err != nil {
		t.Fatalf("chunked PUT of %d bytes with a 64 KiB lpage: %v", len(body), err)
	}
	got, err := s.get(t, "k")
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("GET: %d bytes, %v", len(got), err)
	}
}

// Control: the same upload with a known length works, and chunked uploads
// work with lpage >= ChunkSize (with trimTail), including via the pool.
func TestChunkedUploadControl(t *testing.T) {
	g := volume.Geometry{SpageShift: 12, LpageShift: 18, VolumeSize: 16 << 20}
	s := newReviewStack(t, g, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for i, n := range []int{0, 1, 5000, 256 << 10, 300 << 10, 600<<10 + 7} {
		body := reviewBody(uint64(i), n)
		key := string(rune('a' + i))
		if _, err := s.st.Put(ctx, PutRequest{Key: key, Size: -1, Body: onlyReader{bytes.NewReader(body)}}); err != nil {
			t.Fatalf("chunked PUT %d: %v", n, err)
		}
		got, err := s.get(t, key)
		if err != nil || !bytes.Equal(got, body) {
			t.Fatalf("GET %d: %d bytes, %v", n, len(got), err)
		}
	}
	if r := s.reservations(t); r != 0 {
		// Pool reservations may exist; only count is logged.
		t.Logf("%d open reservations (pool)", r)
	}
}
