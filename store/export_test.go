package store

import (
	"testing"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/volume"
)

// TestStack is the review stack (a single-node store over real parts) for
// the external tests, which put the HTTP API in front of it.
type TestStack struct {
	Store *Store
	Vol   *volume.Volume
	s     *reviewStack
}

// NewTestStack is newReviewStackOn for store_test.
func NewTestStack(t testing.TB, g volume.Geometry, cfg Config, dev volume.Device) *TestStack {
	t.Helper()
	s := newReviewStackOn(t, g, cfg, dev)
	return &TestStack{Store: s.st, Vol: s.vol, s: s}
}

// DeviceOffset returns the device offset of byte off of key's current
// version.
func (ts *TestStack) DeviceOffset(t testing.TB, key string, off int64) int64 {
	t.Helper()
	return ts.s.deviceOffset(t, key, off)
}

// Blob returns key's current catalog record.
func (ts *TestStack) Blob(t testing.TB, key string) catalog.Blob {
	t.Helper()
	return ts.s.blob(t, key)
}
