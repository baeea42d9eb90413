package api

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gorilla/mux"

	"github.com/blobnode/blobnode/store"
)

// Headers specific to this API.
const (
	headerCRC32C      = "X-Checksum-CRC32C"
	defaultMediaType  = "application/octet-stream"
	consistencyStale  = "stale"
	consistencyLinear = "linearizable"
)

// blobKey returns the validated key of a /blobs/{key} request: the escaped
// path variable, unescaped exactly once.
func blobKey(r *http.Request) (string, error) {
	raw := mux.Vars(r)["key"]
	key, err := url.PathUnescape(raw)
	if err != nil {
		return "", invalidKey("key has a malformed percent-encoding")
	}
	return key, ValidateKey(key)
}

// singleHeader returns the one value of header name and whether it was
// present, or an error when the header is repeated.
func singleHeader(h http.Header, name string) (v string, present bool, err error) {
	switch vs := h.Values(name); len(vs) {
	case 0:
		return "", false, nil
	case 1:
		return vs[0], true, nil
	default:
		return "", true, invalidArgument("header " + name + " must appear at most once")
	}
}

// singleQuery is singleHeader for a query parameter.
func singleQuery(q url.Values, name string) (string, error) {
	switch v := q[name]; len(v) {
	case 0:
		return "", nil
	case 1:
		return v[0], nil
	default:
		return "", invalidArgument("query parameter " + name + " must appear at most once")
	}
}

// query returns r's query parameters. A query string that does not parse
// (a malformed escape, a ';' separator) is refused rather than read in
// part, as url.URL.Query does: "?prefix=%zz" must not list every blob.
func query(r *http.Request) (url.Values, error) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, invalidArgument("malformed query string")
	}
	return q, nil
}

// readOptions decodes ?consistency=: absent, empty or "linearizable" is the
// default linearizable read, "stale" a local read.
func readOptions(r *http.Request) (store.ReadOptions, error) {
	q, err := query(r)
	if err != nil {
		return store.ReadOptions{}, err
	}
	v, err := singleQuery(q, "consistency")
	if err != nil {
		return store.ReadOptions{}, err
	}
	switch v {
	case "", consistencyLinear:
		return store.ReadOptions{}, nil
	case consistencyStale:
		return store.ReadOptions{Stale: true}, nil
	}
	return store.ReadOptions{}, invalidArgument(`consistency must be "linearizable" or "stale"`)
}

// writeCondition decodes If-Match / If-None-Match for PUT and DELETE. The
// store can express one entity-tag to match and "create only", so If-Match
// must be a single entity-tag and If-None-Match only "*" (PUT only).
func writeCondition(r *http.Request, allowNoneMatch bool) (store.Condition, error) {
	var cond store.Condition
	im, present, err := singleHeader(r.Header, "If-Match")
	if err != nil {
		return cond, err
	}
	if present {
		t, ok := parseETag(strings.Trim(im, " \t"))
		if !ok {
			return cond, invalidArgument("If-Match must be a single quoted entity-tag")
		}
		if t.weak {
			// A weak tag never matches strongly (RFC 9110 section 13.1.1).
			cond.IfMatch = "W/" + t.opaque
		} else {
			cond.IfMatch = t.opaque
		}
	}
	inm, present, err := singleHeader(r.Header, "If-None-Match")
	if err != nil {
		return cond, err
	}
	if present {
		if !allowNoneMatch {
			return cond, invalidArgument("If-None-Match is not supported on " + r.Method)
		}
		if strings.Trim(inm, " \t") != "*" {
			return cond, invalidArgument(`If-None-Match on PUT supports only "*"`)
		}
		cond.IfNoneMatchAny = true
	}
	return cond, nil
}

// parseCRC32C decodes the X-Checksum-CRC32C header: exactly 8 hex digits.
func parseCRC32C(h http.Header) (*uint32, error) {
	v, present, err := singleHeader(h, headerCRC32C)
	if err != nil || !present {
		return nil, err
	}
	var b [4]byte
	if len(v) != 8 {
		return nil, invalidArgument(headerCRC32C + " must be 8 hex digits")
	}
	if _, err := hex.Decode(b[:], []byte(v)); err != nil {
		return nil, invalidArgument(headerCRC32C + " must be 8 hex digits")
	}
	crc := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	return &crc, nil
}

// putResponse is the JSON body of a successful PUT.
type putResponse struct {
	Key     string `json:"key"`
	Size    int64  `json:"size"`
	ETag    string `json:"etag"`
	Version uint64 `json:"version"`
}

func (s *server) putBlob(w http.ResponseWriter, r *http.Request) {
	key, err := blobKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	chunked := slices.Contains(r.TransferEncoding, "chunked")
	size := r.ContentLength
	if !chunked && r.ProtoMajor < 2 && r.Header.Get("Content-Length") == "" {
		s.writeError(w, r, &apiError{http.StatusLengthRequired, CodeLengthRequired,
			"a Content-Length or a chunked body is required"})
		return
	}
	if size > s.maxSize {
		// Refused before reading: do not keep the connection to drain it.
		w.Header().Set("Connection", "close")
		s.writeError(w, r, fmt.Errorf("%w: Content-Length %d exceeds %d", store.ErrTooLarge, size, s.maxSize))
		return
	}
	crc, err := parseCRC32C(r.Header)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	cond, err := writeCondition(r, true)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	contentType := r.Header.Get("Content-Type")
	if contentType == "" {
		contentType = defaultMediaType
	}
	if !s.uploads.tryAcquire() {
		// Refused before a byte of the body is read; the response closes
		// the connection rather than drain the body (see statusRecorder).
		s.writeError(w, r, errTooManyUploads)
		return
	}
	defer s.uploads.release()
	body := &uploadBody{r: r.Body, remaining: s.maxSize, max: s.maxSize}
	info, err := s.blobs.Put(r.Context(), store.PutRequest{
		Key:         key,
		ContentType: contentType,
		Size:        size,
		Body:        body,
		CRC32C:      crc,
		Cond:        cond,
	})
	s.metrics.blobBytesIn().Add(float64(body.n))
	if err != nil {
		if body.err != nil {
			// The body's own failure is the cause, whatever the store
			// made of it (it may have seen a cancelled context first).
			err = body.err
		}
		if errors.Is(err, store.ErrTooLarge) || errors.Is(err, store.ErrIncompleteBody) {
			w.Header().Set("Connection", "close")
		}
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", info.ETag)
	writePutResponse(w, putResponse{Key: info.Key, Size: info.Size, ETag: info.ETag, Version: info.Version})
}

// uploadBody is a PUT body as the store reads it: at most max bytes, with
// every failure translated to the store error that describes it. Errors are
// sticky. It is used by one goroutine at a time (the store's reader).
type uploadBody struct {
	r         io.Reader
	max       int64
	remaining int64 // bytes still allowed before ErrTooLarge
	n         int64 // bytes delivered to the store
	err       error // first failure: wraps ErrTooLarge or ErrIncompleteBody
}

func (b *uploadBody) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	// Read at most one byte past the limit: enough to know it was crossed.
	if int64(len(p)) > b.remaining {
		p = p[:b.remaining+1]
	}
	n, err := b.r.Read(p)
	if int64(n) > b.remaining {
		n = int(b.remaining)
		b.n += int64(n)
		b.remaining = 0
		b.err = fmt.Errorf("%w: body exceeds %d bytes", store.ErrTooLarge, b.max)
		return n, b.err
	}
	b.remaining -= int64(n)
	b.n += int64(n)
	if err != nil && err != io.EOF {
		// io.ErrUnexpectedEOF (shorter than Content-Length), a broken
		// connection, a malformed chunk: the client did not send the body.
		b.err = fmt.Errorf("%w: after %d bytes: %w", store.ErrIncompleteBody, b.n, err)
		return n, b.err
	}
	return n, err
}

// readAttempts bounds how often a GET starts over because the version it
// was reading was deleted or replaced mid-read (store.ErrBlobChanged)
// before any of the response was sent.
const readAttempts = 3

func (s *server) getBlob(w http.ResponseWriter, r *http.Request) {
	s.getBlobAttempt(w, r, readAttempts)
}

func (s *server) getBlobAttempt(w http.ResponseWriter, r *http.Request, attempts int) {
	key, err := blobKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	opts, err := readOptions(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	obj, err := s.blobs.Get(r.Context(), key, opts)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer func() {
		if err := obj.Close(); err != nil {
			s.log.Warn("close blob", "key", key, "err", err)
		}
	}()
	info := obj.Info()
	current, ok := parseETag(info.ETag)
	if !ok {
		// Conditions cannot match a tag that does not parse; serve the
		// blob unconditionally rather than fail the read.
		s.log.Warn("store returned a malformed ETag", "key", key, "etag", info.ETag)
	}

	var hdr heldHeader
	hdr.set("Accept-Ranges", "bytes")
	if info.ETag != "" {
		hdr.set("Etag", info.ETag)
	}
	if !info.Created.IsZero() {
		hdr.set("Last-Modified", info.Created.UTC().Format(http.TimeFormat))
	}
	if len(info.Replicas) > 0 {
		hdr.set("Blobnode-Replicas", strings.Join(info.Replicas, ","))
	}

	switch evalReadConditions(r.Header, current, info.Created) {
	case preconditionNotModified:
		hdr.writeTo(w.Header())
		w.WriteHeader(http.StatusNotModified)
		return
	case preconditionFailed:
		s.writeError(w, r, store.ErrPreconditionFailed)
		return
	}

	status := http.StatusOK
	rng := byteRange{start: 0, length: info.Size}
	// Range is for GET only. It is ignored, and the whole blob served, when
	// If-Range does not hold, when it appears more than once (it is not a
	// list header, so there is no one value to honour), or when parseRange
	// says so (another unit, several ranges); see "Reads" in doc.go.
	if ranges := r.Header.Values("Range"); r.Method == http.MethodGet && len(ranges) == 1 &&
		ifRangeHolds(r.Header, current, info.Created) {
		br, err := parseRange(ranges[0], info.Size)
		switch {
		case errors.Is(err, errRangeIgnored):
			// Served as if absent: 200 with the whole blob.
		case err != nil:
			// Malformed (nginx's answer) or outside the blob: 416 either way.
			w.Header().Set("Content-Range", fmt.Sprintf("bytes */%d", info.Size))
			s.writeError(w, r, &apiError{http.StatusRequestedRangeNotSatisfiable, CodeRangeNotSatisfiable,
				fmt.Sprintf("Range %q against a blob of %d bytes: %v", ranges[0], info.Size, err)})
			return
		default:
			status, rng = http.StatusPartialContent, br
			hdr.set("Content-Range", rng.contentRange(info.Size))
		}
	}
	contentType := info.ContentType
	if contentType == "" {
		contentType = defaultMediaType
	}
	hdr.set("Content-Type", contentType)
	hdr.set("Content-Length", strconv.FormatInt(rng.length, 10))

	resp := &deferredResponse{w: w, status: status, header: &hdr}
	if r.Method == http.MethodHead || rng.length == 0 {
		resp.commit()
		return
	}
	err = obj.WriteRange(r.Context(), resp, rng.start, rng.length)
	if err == nil && resp.n != rng.length {
		err = fmt.Errorf("store wrote %d bytes of a %d-byte range", resp.n, rng.length)
	}
	if err == nil {
		return
	}
	if !resp.committed {
		// Nothing sent yet: the failure can still be answered properly,
		// and a read that lost a race with a delete or a replace can
		// start over and answer from the key's current state (headers
		// are held in hdr until the first byte, so none leak across).
		if errors.Is(err, store.ErrBlobChanged) && attempts > 1 {
			s.getBlobAttempt(w, r, attempts-1)
			return
		}
		s.writeError(w, r, err)
		return
	}
	var ce *store.ChunkError
	switch {
	case errors.As(err, &ce):
		// The store logged the chunk at Error; this is the request's side.
		s.log.Debug("chunk failed after the response started; aborting it",
			"key", key, "sent", resp.n, "want", rng.length, "err", err)
	case r.Context().Err() == nil:
		s.log.Error("read failed after the response started; aborting it",
			"key", key, "sent", resp.n, "want", rng.length, "err", err)
	}
	// The status line promised the whole range; only a broken connection
	// tells the client that what it got is not it.
	panic(http.ErrAbortHandler)
}

// heldHeader holds a response's header fields until the response is
// committed, then adds them to the response's header with one allocation
// for all of their values (http.Header.Set makes one per field). Names
// must be in canonical form (textproto.CanonicalMIMEHeaderKey: "Etag").
type heldHeader struct {
	names, values [8]string
	n             int
}

func (h *heldHeader) set(name, value string) {
	for i := range h.n {
		if h.names[i] == name {
			h.values[i] = value
			return
		}
	}
	h.names[h.n], h.values[h.n] = name, value
	h.n++
}

func (h *heldHeader) writeTo(dst http.Header) {
	vals := make([]string, h.n)
	copy(vals, h.values[:h.n])
	for i := range h.n {
		dst[h.names[i]] = vals[i : i+1 : i+1]
	}
}

// deferredResponse holds the status line and headers of a response until
// its first body byte, so a read that fails before producing any byte can
// still be answered with an error status instead of a truncated success.
type deferredResponse struct {
	w         http.ResponseWriter
	status    int
	header    *heldHeader
	committed bool
	n         int64 // body bytes written
}

func (d *deferredResponse) commit() {
	d.header.writeTo(d.w.Header())
	d.w.WriteHeader(d.status)
	d.committed = true
}

func (d *deferredResponse) Write(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if !d.committed {
		d.commit()
	}
	n, err := d.w.Write(p)
	d.n += int64(n)
	return n, err
}

func (s *server) deleteBlob(w http.ResponseWriter, r *http.Request) {
	key, err := blobKey(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	cond, err := writeCondition(r, false)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if err := s.blobs.Delete(r.Context(), key, cond); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// listResponse is the JSON body of GET /blobs.
type listResponse struct {
	Blobs          []listEntry `json:"blobs"`
	Truncated      bool        `json:"truncated"`
	NextStartAfter string      `json:"next_start_after"`
}

type listEntry struct {
	Key         string    `json:"key"`
	Size        int64     `json:"size"`
	ETag        string    `json:"etag"`
	Version     uint64    `json:"version"`
	ContentType string    `json:"content_type"`
	Created     time.Time `json:"created"`
}

func (s *server) listBlobs(w http.ResponseWriter, r *http.Request) {
	q, err := query(r)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	req, err := s.listRequest(q)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	page, err := s.blobs.List(r.Context(), req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	resp := listResponse{
		Blobs:          make([]listEntry, len(page.Blobs)),
		Truncated:      page.Truncated,
		NextStartAfter: page.NextStartAfter,
	}
	for i, b := range page.Blobs {
		resp.Blobs[i] = listEntry{
			Key: b.Key, Size: b.Size, ETag: b.ETag, Version: b.Version,
			ContentType: b.ContentType, Created: b.Created.UTC(),
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

// listRequest decodes ?prefix=&start-after=&limit=. prefix and start-after
// are key fragments (valid UTF-8, at most MaxKeyLen bytes) but need not be
// valid keys themselves ("photos/" is a fine prefix).
func (s *server) listRequest(q url.Values) (store.ListRequest, error) {
	req := store.ListRequest{Limit: s.maxList}
	var err error
	for _, p := range []struct {
		name string
		dst  *string
	}{{"prefix", &req.Prefix}, {"start-after", &req.StartAfter}} {
		if *p.dst, err = singleQuery(q, p.name); err != nil {
			return req, err
		}
		if len(*p.dst) > MaxKeyLen || !utf8.ValidString(*p.dst) {
			return req, invalidArgument(fmt.Sprintf("%s must be valid UTF-8 of at most %d bytes", p.name, MaxKeyLen))
		}
	}
	v, err := singleQuery(q, "limit")
	if err != nil {
		return req, err
	}
	if v != "" || q["limit"] != nil {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > s.maxList {
			return req, invalidArgument(fmt.Sprintf("limit must be an integer from 1 to %d", s.maxList))
		}
		req.Limit = n
	}
	return req, nil
}
