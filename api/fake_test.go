package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/blobnode/blobnode/store"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// fakeStore is an in-memory Blobs: a map of committed blobs that honours
// conditions, checks length and checksum, reads the body as a stream and
// stores nothing when the body fails. Faults are injected per operation.
type fakeStore struct {
	mu      sync.Mutex
	blobs   map[string]fakeBlob // guarded by mu
	version uint64              // guarded by mu; last version assigned
	fail    map[string]error    // guarded by mu; op ("put", "get", "delete", "list") -> error
	// failWriteAfter, when >= 0, makes WriteRange fail after writing that
	// many bytes. Guarded by mu.
	failWriteAfter int64
	// failWith is what such a WriteRange returns (nil: ErrCorruptData
	// wrapped around errInjectedRead). Guarded by mu.
	failWith error
	putCalls int               // guarded by mu
	lastRead store.ReadOptions // guarded by mu
	open     int               // guarded by mu; Objects not yet closed
	// gate, when set (before any request), holds every Put before it
	// reads the body: Put sends its key on gate.entered, then waits for
	// gate.release to be closed or its context to end.
	gate *putGate
	// beforeRead, when set, runs at the start of every WriteRange with the
	// store unlocked; a non-nil error is returned before any byte.
	// Guarded by mu.
	beforeRead func(key string) error
}

type putGate struct {
	entered chan string
	release chan struct{}
}

type fakeBlob struct {
	info store.BlobInfo
	data []byte // never modified after Put
}

// fakeEpoch is the fake clock: version v is created at fakeEpoch + v seconds.
var fakeEpoch = time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)

func newFakeStore() *fakeStore {
	return &fakeStore{blobs: map[string]fakeBlob{}, fail: map[string]error{}, failWriteAfter: -1}
}

func (f *fakeStore) setFail(op string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[op] = err
}

func (f *fakeStore) setBeforeRead(fn func(key string) error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.beforeRead = fn
}

func (f *fakeStore) setFailWriteAfter(n int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failWriteAfter = n
}

func (f *fakeStore) setFailWriteWith(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failWith = err
}

func (f *fakeStore) injected(op string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail[op]
}

func (f *fakeStore) Put(ctx context.Context, req store.PutRequest) (store.BlobInfo, error) {
	f.mu.Lock()
	f.putCalls++
	f.mu.Unlock()
	if g := f.gate; g != nil {
		g.entered <- req.Key
		select {
		case <-g.release:
		case <-ctx.Done():
			return store.BlobInfo{}, ctx.Err()
		}
	}
	if err := f.injected("put"); err != nil {
		return store.BlobInfo{}, err
	}
	if err := ValidateKey(req.Key); err != nil {
		return store.BlobInfo{}, err
	}
	// Stream the body through a fixed buffer, as the real store does into
	// its extents; the bytes kept are the fake's "volume".
	var data bytes.Buffer
	h := crc32.New(castagnoli)
	n, err := io.CopyBuffer(io.MultiWriter(&data, h), req.Body, make([]byte, 4096))
	if err != nil {
		return store.BlobInfo{}, fmt.Errorf("fake put %q: %w", req.Key, err)
	}
	if req.Size >= 0 && n != req.Size {
		return store.BlobInfo{}, fmt.Errorf("fake put: got %d of %d bytes: %w", n, req.Size, store.ErrIncompleteBody)
	}
	sum := h.Sum32()
	if req.CRC32C != nil && *req.CRC32C != sum {
		return store.BlobInfo{}, store.ErrBadDigest
	}
	if err := ctx.Err(); err != nil {
		return store.BlobInfo{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	old, exists := f.blobs[req.Key]
	if req.Cond.IfNoneMatchAny && exists {
		return store.BlobInfo{}, store.ErrPreconditionFailed
	}
	if req.Cond.IfMatch != "" && (!exists || old.info.ETag != req.Cond.IfMatch) {
		return store.BlobInfo{}, store.ErrPreconditionFailed
	}
	f.version++
	info := store.BlobInfo{
		Key:         req.Key,
		Size:        n,
		Version:     f.version,
		ETag:        fmt.Sprintf(`"%x-%08x"`, f.version, sum),
		ContentType: req.ContentType,
		Created:     fakeEpoch.Add(time.Duration(f.version) * time.Second),
	}
	f.blobs[req.Key] = fakeBlob{info: info, data: data.Bytes()}
	return info, nil
}

func (f *fakeStore) Get(ctx context.Context, key string, opts store.ReadOptions) (store.Object, error) {
	if err := f.injected("get"); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastRead = opts
	b, ok := f.blobs[key]
	if !ok {
		return nil, store.ErrNotFound
	}
	f.open++
	failWith := f.failWith
	if failWith == nil {
		failWith = fmt.Errorf("%w: %w", store.ErrCorruptData, errInjectedRead)
	}
	return &fakeObject{store: f, blob: b, failAfter: f.failWriteAfter, failWith: failWith}, nil
}

func (f *fakeStore) Delete(ctx context.Context, key string, cond store.Condition) error {
	if err := f.injected("delete"); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.blobs[key]
	if !ok {
		return store.ErrNotFound
	}
	if cond.IfMatch != "" && cond.IfMatch != b.info.ETag {
		return store.ErrPreconditionFailed
	}
	delete(f.blobs, key)
	return nil
}

func (f *fakeStore) List(ctx context.Context, req store.ListRequest) (store.ListPage, error) {
	if err := f.injected("list"); err != nil {
		return store.ListPage{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var keys []string
	for k := range f.blobs {
		if strings.HasPrefix(k, req.Prefix) && k > req.StartAfter {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var page store.ListPage
	if len(keys) > req.Limit {
		keys = keys[:req.Limit]
		page.Truncated = true
		page.NextStartAfter = keys[len(keys)-1]
	}
	for _, k := range keys {
		page.Blobs = append(page.Blobs, f.blobs[k].info)
	}
	return page, nil
}

// snapshot returns the stored keys and their data.
func (f *fakeStore) snapshot() map[string][]byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := make(map[string][]byte, len(f.blobs))
	for k, b := range f.blobs {
		m[k] = b.data
	}
	return m
}

func (f *fakeStore) info(key string) (store.BlobInfo, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	b, ok := f.blobs[key]
	return b.info, ok
}

func (f *fakeStore) puts() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.putCalls
}

func (f *fakeStore) readOptions() store.ReadOptions {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastRead
}

func (f *fakeStore) openObjects() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.open
}

// errInjectedRead is what a failing fakeObject returns.
var errInjectedRead = errors.New("injected read failure at /dev/secret-volume offset 4096")

type fakeObject struct {
	store     *fakeStore
	blob      fakeBlob
	failAfter int64 // < 0: never fail
	failWith  error // the failure
	closed    bool
}

func (o *fakeObject) Info() store.BlobInfo { return o.blob.info }

// WriteRange writes in small pieces so a failure can land mid-body.
func (o *fakeObject) WriteRange(ctx context.Context, w io.Writer, off, n int64) error {
	if off < 0 || n < 0 || off+n > int64(len(o.blob.data)) {
		return fmt.Errorf("fake: range [%d, %d) outside %d bytes", off, off+n, len(o.blob.data))
	}
	o.store.mu.Lock()
	hook := o.store.beforeRead
	o.store.mu.Unlock()
	if hook != nil {
		if err := hook(o.blob.info.Key); err != nil {
			return err
		}
	}
	data := o.blob.data[off : off+n]
	for sent := int64(0); len(data) > 0; {
		if err := ctx.Err(); err != nil {
			return err
		}
		piece := data[:min(len(data), 1024)]
		if o.failAfter >= 0 && sent+int64(len(piece)) > o.failAfter {
			if _, err := w.Write(piece[:o.failAfter-sent]); err != nil {
				return err
			}
			return o.failWith
		}
		if _, err := w.Write(piece); err != nil {
			return err
		}
		sent += int64(len(piece))
		data = data[len(piece):]
	}
	return nil
}

func (o *fakeObject) Close() error {
	o.store.mu.Lock()
	defer o.store.mu.Unlock()
	if o.closed {
		return errors.New("fake: object closed twice")
	}
	o.closed = true
	o.store.open--
	return nil
}
