package tests

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"strconv"
	"testing"
)

// stored is what a test expects a key to read back as.
type stored struct {
	size        int64
	sum         [32]byte
	contentType string
	etag        string
}

func storedOf(body []byte, contentType, etag string) stored {
	return stored{size: int64(len(body)), sum: sha256.Sum256(body), contentType: contentType, etag: etag}
}

// TestEndToEnd drives the whole public API of a real node, then restarts it
// on the same data directory and checks that everything reads back and that
// fsck finds the stopped node clean.
func TestEndToEnd(t *testing.T) {
	n := newNode(t)
	want := map[string]stored{} // every key that must exist, and only those
	// held checks that blobs hold exactly what the model says, plus extra.
	held := func(t *testing.T, extra int64) {
		t.Helper()
		n.waitHeld(t, usedOf(want)+extra, settleTimeout)
	}
	held(t, 0)

	t.Run("PutGetHead", func(t *testing.T) {
		body := []byte("hello, blobnode\n")
		r := n.do(t, http.MethodPut, blobPath("docs/readme.txt"), body, "Content-Type", "text/plain; charset=utf-8")
		if r.status != http.StatusCreated {
			t.Fatalf("PUT: %v", r)
		}
		etag := r.header.Get("ETag")
		if etag == "" || !bytes.Contains(r.body, []byte(`"size":16`)) {
			t.Fatalf("PUT: ETag %q, body %s", etag, r.body)
		}
		want["docs/readme.txt"] = storedOf(body, "text/plain; charset=utf-8", etag)

		g := n.do(t, http.MethodGet, blobPath("docs/readme.txt"), nil)
		if g.status != http.StatusOK || !bytes.Equal(g.body, body) {
			t.Fatalf("GET: %v", g)
		}
		if ct := g.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
			t.Errorf("GET Content-Type %q, want the one stored", ct)
		}
		if g.header.Get("ETag") != etag || g.header.Get("Content-Length") != "16" {
			t.Errorf("GET ETag %q Content-Length %q, want %q 16", g.header.Get("ETag"), g.header.Get("Content-Length"), etag)
		}
		h := n.do(t, http.MethodHead, blobPath("docs/readme.txt"), nil)
		if h.status != http.StatusOK || len(h.body) != 0 || h.header.Get("Content-Length") != "16" ||
			h.header.Get("ETag") != etag || h.header.Get("Content-Type") != "text/plain; charset=utf-8" {
			t.Errorf("HEAD: %v headers %v", h, h.header)
		}
		// No Content-Type: the default media type.
		bin := []byte{0, 1, 2, 3}
		etag2 := n.put(t, "docs/bin", bin)
		want["docs/bin"] = storedOf(bin, "application/octet-stream", etag2)
		if ct := n.do(t, http.MethodGet, blobPath("docs/bin"), nil).header.Get("Content-Type"); ct != "application/octet-stream" {
			t.Errorf("GET of a blob stored without Content-Type: %q", ct)
		}
		n.requireAbsent(t, "docs/missing")
	})

	t.Run("Conditional", func(t *testing.T) {
		key := "cond/a"
		v1 := []byte("version one")
		e1 := n.put(t, key, v1)
		if r := n.do(t, http.MethodGet, blobPath(key), nil, "If-None-Match", e1); r.status != http.StatusNotModified || len(r.body) != 0 || r.header.Get("ETag") != e1 {
			t.Fatalf("GET If-None-Match current: %v, want 304 with ETag", r)
		}
		if r := n.do(t, http.MethodHead, blobPath(key), nil, "If-None-Match", e1); r.status != http.StatusNotModified {
			t.Fatalf("HEAD If-None-Match current: %v, want 304", r)
		}
		if r := n.do(t, http.MethodGet, blobPath(key), nil, "If-None-Match", `"ffffff"`); r.status != http.StatusOK || !bytes.Equal(r.body, v1) {
			t.Fatalf("GET If-None-Match other: %v, want 200", r)
		}
		// If-Match with a stale tag on PUT: 412, nothing changes.
		if r := n.do(t, http.MethodPut, blobPath(key), []byte("lost update"), "If-Match", `"ffffff"`); r.status != http.StatusPreconditionFailed || r.code() != "PreconditionFailed" {
			t.Fatalf("PUT If-Match stale: %v, want 412", r)
		}
		if r := n.do(t, http.MethodGet, blobPath(key), nil); !bytes.Equal(r.body, v1) || r.header.Get("ETag") != e1 {
			t.Fatalf("after a refused PUT: %v etag %q, want version one %q", r, r.header.Get("ETag"), e1)
		}
		// If-Match with the current tag: replaced.
		v2 := []byte("version two, longer")
		r := n.do(t, http.MethodPut, blobPath(key), v2, "If-Match", e1)
		if r.status != http.StatusCreated {
			t.Fatalf("PUT If-Match current: %v, want 201", r)
		}
		e2 := r.header.Get("ETag")
		if e2 == e1 || e2 == "" {
			t.Fatalf("replacement ETag %q, old %q", e2, e1)
		}
		if r := n.do(t, http.MethodGet, blobPath(key), nil, "If-None-Match", e1); r.status != http.StatusOK || !bytes.Equal(r.body, v2) {
			t.Fatalf("GET If-None-Match old tag: %v, want 200 version two", r)
		}
		// DELETE with a stale tag: 412, still there.
		if r := n.do(t, http.MethodDelete, blobPath(key), nil, "If-Match", e1); r.status != http.StatusPreconditionFailed || r.code() != "PreconditionFailed" {
			t.Fatalf("DELETE If-Match stale: %v, want 412", r)
		}
		n.requireBlob(t, key, int64(len(v2)), sha256.Sum256(v2))
		if r := n.do(t, http.MethodDelete, blobPath(key), nil, "If-Match", e2); r.status != http.StatusNoContent {
			t.Fatalf("DELETE If-Match current: %v, want 204", r)
		}
		n.requireAbsent(t, key)
		if r := n.do(t, http.MethodDelete, blobPath(key), nil); r.status != http.StatusNotFound {
			t.Fatalf("second DELETE: %v, want 404", r)
		}
		// If-Match on a missing key never holds.
		if r := n.do(t, http.MethodPut, blobPath(key), v1, "If-Match", e2); r.status != http.StatusPreconditionFailed {
			t.Fatalf("PUT If-Match on a deleted key: %v, want 412", r)
		}
		n.requireAbsent(t, key)

		// If-None-Match: * creates only.
		first := []byte("first writer wins")
		r = n.do(t, http.MethodPut, blobPath("cond/create-only"), first, "If-None-Match", "*")
		if r.status != http.StatusCreated {
			t.Fatalf("PUT If-None-Match * on a new key: %v, want 201", r)
		}
		want["cond/create-only"] = storedOf(first, "application/octet-stream", r.header.Get("ETag"))
		if r := n.do(t, http.MethodPut, blobPath("cond/create-only"), []byte("second"), "If-None-Match", "*"); r.status != http.StatusPreconditionFailed {
			t.Fatalf("second PUT If-None-Match *: %v, want 412", r)
		}
		n.requireBlob(t, "cond/create-only", int64(len(first)), sha256.Sum256(first))
		held(t, 0) // the refused uploads freed their space
	})

	t.Run("Range", func(t *testing.T) {
		// Larger than one 256 KiB checksum chunk, so a range can span two.
		key := "range/blob"
		body := payload(1, 300_000)
		want[key] = storedOf(body, "application/octet-stream", n.put(t, key, body))
		size := len(body)
		for _, c := range []struct {
			hdr        string
			start, end int // inclusive
		}{
			{"bytes=10-19", 10, 19},
			{"bytes=262100-262200", 262100, 262200},
			{"bytes=-5", size - 5, size - 1},
			{"bytes=299990-", 299990, size - 1},
			{"bytes=0-9999999", 0, size - 1},
		} {
			r := n.do(t, http.MethodGet, blobPath(key), nil, "Range", c.hdr)
			cr := fmt.Sprintf("bytes %d-%d/%d", c.start, c.end, size)
			if r.status != http.StatusPartialContent || r.header.Get("Content-Range") != cr || !bytes.Equal(r.body, body[c.start:c.end+1]) {
				t.Errorf("Range %s: %d Content-Range %q, %d bytes; want 206 %q, %d bytes", c.hdr, r.status, r.header.Get("Content-Range"), len(r.body), cr, c.end-c.start+1)
			}
		}
		r := n.do(t, http.MethodGet, blobPath(key), nil, "Range", fmt.Sprintf("bytes=%d-", size))
		if r.status != http.StatusRequestedRangeNotSatisfiable || r.header.Get("Content-Range") != fmt.Sprintf("bytes */%d", size) || r.code() != "RangeNotSatisfiable" {
			t.Errorf("Range past the end: %v Content-Range %q, want 416 bytes */%d", r, r.header.Get("Content-Range"), size)
		}
	})

	t.Run("Checksum", func(t *testing.T) {
		body := payload(2, 70_000)
		crc := fmt.Sprintf("%08x", crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli)))
		r := n.do(t, http.MethodPut, blobPath("crc/good"), body, "X-Checksum-CRC32C", crc)
		if r.status != http.StatusCreated {
			t.Fatalf("PUT with a matching CRC32C: %v, want 201", r)
		}
		want["crc/good"] = storedOf(body, "application/octet-stream", r.header.Get("ETag"))
		n.requireBlob(t, "crc/good", int64(len(body)), sha256.Sum256(body))
		held(t, 0)

		bad := fmt.Sprintf("%08x", crc32.Checksum(body, crc32.MakeTable(crc32.Castagnoli))^1)
		r = n.do(t, http.MethodPut, blobPath("crc/bad"), body, "X-Checksum-CRC32C", bad)
		if r.status != http.StatusBadRequest || r.code() != "BadDigest" {
			t.Fatalf("PUT with a wrong CRC32C: %v, want 400 BadDigest", r)
		}
		n.requireAbsent(t, "crc/bad")
		held(t, 0)
		// A mismatching replacement leaves the old version in place.
		r = n.do(t, http.MethodPut, blobPath("crc/good"), []byte("other"), "X-Checksum-CRC32C", "00000000")
		if r.status != http.StatusBadRequest || r.code() != "BadDigest" {
			t.Fatalf("replacement with a wrong CRC32C: %v, want 400 BadDigest", r)
		}
		n.requireBlob(t, "crc/good", int64(len(body)), sha256.Sum256(body))
		held(t, 0)
	})

	t.Run("ChunkedUpload", func(t *testing.T) {
		const size = 20<<20 + 12345 // not a multiple of the 16 MiB lpage
		key := "chunked/big"
		pr, pw := io.Pipe()
		sum := make(chan [32]byte, 1)
		go func() {
			// Odd write sizes, so chunk boundaries fall anywhere.
			h := sha256.New()
			buf := make([]byte, 1<<20+7)
			_, err := io.CopyBuffer(io.MultiWriter(pw, h), newGen(3, size), buf)
			var s [32]byte
			copy(s[:], h.Sum(nil))
			sum <- s
			pw.CloseWithError(err)
		}()
		req, err := http.NewRequest(http.MethodPut, n.base+blobPath(key), pr)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = -1 // HTTP/1.1 sends an unknown length chunked
		req.Header.Set("Content-Type", "video/mp4")
		resp, err := n.client.Do(req)
		if err != nil {
			t.Fatalf("chunked PUT: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated || !bytes.Contains(b, []byte(`"size":`+strconv.Itoa(size))) {
			t.Fatalf("chunked PUT: %d %s", resp.StatusCode, b)
		}
		s := <-sum
		want[key] = stored{size: size, sum: s, contentType: "video/mp4", etag: resp.Header.Get("ETag")}
		n.requireBlob(t, key, size, s)
		// The unknown-length upload must end up as tightly packed as a
		// sized one: one lpage plus the tail in spages, nothing more.
		held(t, 0)
	})

	t.Run("EmptyBlob", func(t *testing.T) {
		r := n.do(t, http.MethodPut, blobPath("empty"), []byte{})
		if r.status != http.StatusCreated {
			t.Fatalf("PUT empty: %v", r)
		}
		want["empty"] = storedOf(nil, "application/octet-stream", r.header.Get("ETag"))
		g := n.do(t, http.MethodGet, blobPath("empty"), nil)
		if g.status != http.StatusOK || len(g.body) != 0 || g.header.Get("Content-Length") != "0" {
			t.Fatalf("GET empty: %v Content-Length %q", g, g.header.Get("Content-Length"))
		}
		if h := n.do(t, http.MethodHead, blobPath("empty"), nil); h.status != http.StatusOK || h.header.Get("Content-Length") != "0" {
			t.Fatalf("HEAD empty: %v", h)
		}
		held(t, 0) // an empty blob takes no space
		// A chunked upload of nothing is an empty blob too.
		req, _ := http.NewRequest(http.MethodPut, n.base+blobPath("empty-chunked"), io.MultiReader())
		req.ContentLength = -1
		resp, err := n.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("chunked PUT of nothing: %d", resp.StatusCode)
		}
		want["empty-chunked"] = storedOf(nil, "application/octet-stream", resp.Header.Get("ETag"))
		n.requireBlob(t, "empty-chunked", 0, sha256.Sum256(nil))
		held(t, 0)
	})

	t.Run("ReplaceFreesSpace", func(t *testing.T) {
		key := "replace/x"
		big := payload(4, 5<<20+100)
		n.put(t, key, big)
		held(t, allocSize(int64(len(big))))
		small := payload(5, 10_000)
		etag := n.put(t, key, small)
		held(t, allocSize(int64(len(small)))) // the old version was freed
		n.requireBlob(t, key, int64(len(small)), sha256.Sum256(small))
		// Same size again: space stays the same.
		again := payload(6, 10_000)
		etag2 := n.put(t, key, again)
		if etag2 == etag {
			t.Fatalf("replacement kept ETag %q", etag)
		}
		held(t, allocSize(int64(len(again))))
		// A small blob replaced by a large one.
		n.put(t, key, big)
		held(t, allocSize(int64(len(big))))
		if r := n.do(t, http.MethodDelete, blobPath(key), nil); r.status != http.StatusNoContent {
			t.Fatalf("DELETE: %v", r)
		}
		held(t, 0)
	})

	t.Run("Keys", func(t *testing.T) {
		keys := []string{"dir/sub/file.txt", "unicode/héllo wörld ✓ 日本語", "odd/100% sure?#&=+", "odd/sp ace"}
		for _, k := range keys {
			body := []byte(fmt.Sprintf("body of %q", k))
			want[k] = storedOf(body, "application/octet-stream", n.put(t, k, body))
			n.requireBlob(t, k, int64(len(body)), sha256.Sum256(body))
		}
		// %2F in the path is a '/' inside the key: the same key as a/b.
		body := []byte("escaped slash")
		r := n.do(t, http.MethodPut, "/blobs/esc%2Fa%2Fb", body)
		if r.status != http.StatusCreated {
			t.Fatalf("PUT esc%%2Fa%%2Fb: %v", r)
		}
		want["esc/a/b"] = storedOf(body, "application/octet-stream", r.header.Get("ETag"))
		if g := n.do(t, http.MethodGet, "/blobs/esc/a/b", nil); g.status != http.StatusOK || !bytes.Equal(g.body, body) {
			t.Fatalf("GET esc/a/b of a key stored as esc%%2Fa%%2Fb: %v", g)
		}
		if g := n.do(t, http.MethodGet, "/blobs/esc%2Fa/b", nil); g.status != http.StatusOK || !bytes.Equal(g.body, body) {
			t.Fatalf("GET esc%%2Fa/b: %v", g)
		}
		if p := n.listPage(t, "esc/", "", 0); len(p.Blobs) != 1 || p.Blobs[0].Key != "esc/a/b" {
			t.Fatalf("list esc/: %+v, want the one key esc/a/b", p.Blobs)
		}
		for _, bad := range []string{"/blobs/a//b", "/blobs/a/./b", "/blobs/a%00b", "/blobs/trailing/"} {
			if r := n.do(t, http.MethodPut, bad, []byte("x")); r.status != http.StatusBadRequest || r.code() != "InvalidKey" {
				t.Errorf("PUT %s: %v, want 400 InvalidKey", bad, r)
			}
		}
	})

	t.Run("ListPagination", func(t *testing.T) {
		var keys []string
		for i := range 23 {
			k := fmt.Sprintf("list/k%02d", i)
			keys = append(keys, k)
			body := []byte(k)
			want[k] = storedOf(body, "text/x-list", n.put(t, k, body, "Content-Type", "text/x-list"))
		}
		var got []string
		after := ""
		pages := 0
		for range 10 {
			p := n.listPage(t, "list/", after, 5)
			pages++
			if len(p.Blobs) > 5 {
				t.Fatalf("page of %d with limit 5", len(p.Blobs))
			}
			for _, b := range p.Blobs {
				got = append(got, b.Key)
				w := want[b.Key]
				if b.Size != w.size || b.ETag != w.etag || b.ContentType != "text/x-list" {
					t.Errorf("list entry %+v, want size %d etag %s", b, w.size, w.etag)
				}
			}
			if !p.Truncated {
				break
			}
			after = p.NextStartAfter
		}
		if pages != 5 || fmt.Sprint(got) != fmt.Sprint(keys) {
			t.Fatalf("%d pages listing %v, want 5 pages listing %v", pages, got, keys)
		}
		if p := n.listPage(t, "list/k1", "", 0); len(p.Blobs) != 10 || p.Truncated {
			t.Fatalf("list prefix list/k1: %d blobs truncated=%v, want 10", len(p.Blobs), p.Truncated)
		}
		if p := n.listPage(t, "list/", "list/k20", 0); len(p.Blobs) != 2 || p.Blobs[0].Key != "list/k21" {
			t.Fatalf("list after list/k20: %+v", p.Blobs)
		}
	})

	if t.Failed() {
		t.FailNow()
	}
	checkAll := func(when string) {
		t.Helper()
		all := n.listAll(t, "", 7)
		if len(all) != len(want) {
			t.Errorf("%s: listing has %d blobs, want %d", when, len(all), len(want))
		}
		for i, b := range all {
			w, ok := want[b.Key]
			if !ok {
				t.Errorf("%s: unexpected blob %q in the listing", when, b.Key)
				continue
			}
			if i > 0 && all[i-1].Key >= b.Key {
				t.Errorf("%s: listing out of order: %q then %q", when, all[i-1].Key, b.Key)
			}
			if b.Size != w.size || b.ETag != w.etag || b.ContentType != w.contentType {
				t.Errorf("%s: list entry %+v, want size %d etag %s type %q", when, b, w.size, w.etag, w.contentType)
			}
		}
		for k, w := range want {
			n.requireBlob(t, k, w.size, w.sum)
			h := n.do(t, http.MethodHead, blobPath(k), nil)
			if h.header.Get("ETag") != w.etag || h.header.Get("Content-Type") != w.contentType {
				t.Errorf("%s: HEAD %q: ETag %q type %q, want %q %q", when, k, h.header.Get("ETag"), h.header.Get("Content-Type"), w.etag, w.contentType)
			}
		}
		n.waitHeld(t, usedOf(want), settleTimeout)
	}
	checkAll("before restart")

	n.stop()
	n.start()
	checkAll("after restart")
	n.stop()
	n.requireFsckClean()
}

// usedOf is the heap space the blobs in want occupy.
func usedOf(want map[string]stored) int64 {
	var u int64
	for _, w := range want {
		u += allocSize(w.size)
	}
	return u
}
