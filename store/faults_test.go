package store

import (
	"context"
	"io/fs"
	"log/slog"
	"slices"
	"sync"

	"github.com/blobnode/blobnode/volume"
)

// ReadFailDevice fails every ReadAt that touches [from, to) with err while
// err is set, as a disk with a bad region does; all else passes through.
// Exported for the external tests (store_test).
type ReadFailDevice struct {
	volume.Device
	mu       sync.Mutex // guards from, to, err
	from, to int64
	err      error
}

// Fail makes reads touching [from, to) fail with err; a nil err heals.
func (d *ReadFailDevice) Fail(from, to int64, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.from, d.to, d.err = from, to, err
}

func (d *ReadFailDevice) ReadAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	err := d.err
	if off >= d.to || off+int64(len(p)) <= d.from {
		err = nil
	}
	d.mu.Unlock()
	if err != nil {
		return 0, &fs.PathError{Op: "read", Path: "volume.blob", Err: err}
	}
	return d.Device.ReadAt(p, off)
}

// LogRecorder is a slog.Handler that keeps every record, so a test can
// count and inspect log lines. Exported for store_test.
type LogRecorder struct {
	mu    *sync.Mutex // guards *recs, shared with handlers from WithAttrs
	recs  *[]slog.Record
	attrs []slog.Attr // from WithAttrs, added to each record
}

func NewLogRecorder() *LogRecorder {
	return &LogRecorder{mu: &sync.Mutex{}, recs: &[]slog.Record{}}
}

func (h *LogRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *LogRecorder) Handle(_ context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(h.attrs...)
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.recs = append(*h.recs, r)
	return nil
}

func (h *LogRecorder) WithAttrs(as []slog.Attr) slog.Handler {
	return &LogRecorder{mu: h.mu, recs: h.recs, attrs: append(slices.Clip(h.attrs), as...)}
}

func (h *LogRecorder) WithGroup(string) slog.Handler { return h } // groups are not used here

// Reset forgets every record kept so far.
func (h *LogRecorder) Reset() {
	h.mu.Lock()
	defer h.mu.Unlock()
	*h.recs = nil
}

// AtLeast returns the records at level or above, in order.
func (h *LogRecorder) AtLeast(level slog.Level) []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []slog.Record
	for _, r := range *h.recs {
		if r.Level >= level {
			out = append(out, r)
		}
	}
	return out
}

// RecordAttrs returns r's attributes by key (values resolved).
func RecordAttrs(r slog.Record) map[string]slog.Value {
	m := map[string]slog.Value{}
	r.Attrs(func(a slog.Attr) bool {
		m[a.Key] = a.Value.Resolve()
		return true
	})
	return m
}
