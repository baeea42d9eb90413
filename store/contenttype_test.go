package store

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/blobnode/blobnode/volume"
)

// countingReader counts the bytes read from it.
type countingReader struct {
	r *bytes.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// A Content-Type longer than a command may carry can never commit. The
// store must refuse it as an invalid argument before reserving or reading
// anything, for streamed and inline uploads alike, not stream the whole
// body and then blame its size (ErrTooLarge, 413).
func TestPutRefusesOverlongContentTypeEarly(t *testing.T) {
	g := volume.Geometry{SpageShift: 12, LpageShift: 18, VolumeSize: 16 << 20}
	s := newReviewStack(t, g, Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	long := "text/plain; x=" + strings.Repeat("a", MaxContentTypeLen)
	for _, n := range []int{100, 1 << 20} {
		body := &countingReader{r: bytes.NewReader(reviewBody(uint64(n), n))}
		_, err := s.st.Put(ctx, PutRequest{Key: "k", ContentType: long, Size: int64(n), Body: body})
		if !errors.Is(err, ErrInvalidArgument) || errors.Is(err, ErrTooLarge) {
			t.Errorf("PUT of %d bytes with a %d-byte Content-Type: %v; want ErrInvalidArgument", n, len(long), err)
		}
		if body.n != 0 {
			t.Errorf("PUT of %d bytes with a %d-byte Content-Type read %d body bytes before refusing", n, len(long), body.n)
		}
	}
	if r := s.reservations(t); r != 0 {
		t.Errorf("%d reservations left after refused PUTs", r)
	}
	ok := "text/plain; x=" + strings.Repeat("a", MaxContentTypeLen-len("text/plain; x="))
	if _, err := s.st.Put(ctx, PutRequest{Key: "k", ContentType: ok, Size: 3, Body: strings.NewReader("abc")}); err != nil {
		t.Fatalf("PUT with a %d-byte Content-Type: %v", len(ok), err)
	}
}
