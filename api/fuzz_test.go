package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/blobnode/blobnode/store"
)

// FuzzListQuery: any query string either decodes to a listing request that
// obeys the limits and says exactly what the query said, or is refused
// with 400 InvalidArgument; an accepted request, encoded again as a client
// would, decodes to itself.
func FuzzListQuery(f *testing.F) {
	for _, q := range []string{
		"", "prefix=photos/&limit=100", "start-after=a%2Fb&limit=1", "limit=1000", "limit=1001", "limit=0",
		"limit=-1", "limit=+5", "limit=05", "limit=99999999999999999999", "limit=1&limit=2", "prefix=%ff",
		"prefix=%zz", "prefix=a;limit=2", "prefix=&start-after=", "limit=", "prefix=" + strings.Repeat("p", 1025),
		"start-after=%E6%97%A5", "frobnicate=1", "prefix=a+b&start-after=c%26d",
	} {
		f.Add(q)
	}
	const maxList = 1000
	s := &server{maxList: maxList}
	f.Fuzz(func(t *testing.T, raw string) {
		r := &http.Request{URL: &url.URL{RawQuery: raw}}
		q, err := query(r)
		var req struct {
			prefix, after string
			limit         int
		}
		if err == nil {
			var got store.ListRequest
			got, err = s.listRequest(q)
			req.prefix, req.after, req.limit = got.Prefix, got.StartAfter, got.Limit
		}
		if err != nil {
			var ae *apiError
			if !errors.As(err, &ae) || ae.status != http.StatusBadRequest || ae.code != CodeInvalidArgument {
				t.Fatalf("query %q: error %v is not 400 InvalidArgument", raw, err)
			}
			return
		}
		if req.limit < 1 || req.limit > maxList {
			t.Fatalf("query %q: limit %d outside [1, %d]", raw, req.limit, maxList)
		}
		for _, v := range []string{req.prefix, req.after} {
			if len(v) > MaxKeyLen || !utf8.ValidString(v) {
				t.Fatalf("query %q: accepted a fragment of %d bytes (valid UTF-8: %v)", raw, len(v), utf8.ValidString(v))
			}
		}
		// It says what the query said.
		parsed, _ := url.ParseQuery(raw)
		if parsed.Get("prefix") != req.prefix || parsed.Get("start-after") != req.after {
			t.Fatalf("query %q: prefix %q start-after %q", raw, req.prefix, req.after)
		}
		wantLimit := maxList
		if l := parsed.Get("limit"); l != "" {
			wantLimit, _ = strconv.Atoi(l)
		}
		if req.limit != wantLimit {
			t.Fatalf("query %q: limit %d, want %d", raw, req.limit, wantLimit)
		}
		// Round trip through a client's encoding.
		again := url.Values{"prefix": {req.prefix}, "start-after": {req.after}, "limit": {strconv.Itoa(req.limit)}}
		got, err := s.listRequest(again)
		if err != nil || got.Prefix != req.prefix || got.StartAfter != req.after || got.Limit != req.limit {
			t.Fatalf("query %q: re-encoded as %q gives %+v, %v", raw, again.Encode(), got, err)
		}
	})
}

// FuzzListPagination pages through a store of fuzzed keys with a fuzzed
// prefix and page size, following next_start_after as a client does (the
// cursor goes back through the query string). The pages together must be
// exactly the stored keys under the prefix, in order, each once, every
// page at most the limit, and the walk must end.
func FuzzListPagination(f *testing.F) {
	f.Add("a\nb\nc/d\nc/e&f\nc/e+g\nc/日本\nz", "c/", uint8(1))
	f.Add("x\nx/y\nx%2Fz\n100%\na b\n?q=1#frag", "", uint8(2))
	f.Add("k1\nk2\nk3", "k", uint8(0))
	f.Add("p/a;b\np/a=b\np/a&limit=1", "p/a", uint8(1))
	f.Fuzz(func(t *testing.T, keyList, prefix string, limit uint8) {
		fs := newFakeStore()
		h := NewHandler(fs, Config{MaxListLimit: 5})
		var want []string
		for k := range strings.SplitSeq(keyList, "\n") {
			if ValidateKey(k) != nil {
				continue
			}
			if _, dup := fs.blobs[k]; dup {
				continue
			}
			fs.blobs[k] = fakeBlob{info: store.BlobInfo{Key: k}}
			if strings.HasPrefix(k, prefix) {
				want = append(want, k)
			}
		}
		slices.Sort(want)
		pageLimit := int(limit%5) + 1
		var got []string
		after := ""
		for pages := 0; ; pages++ {
			if pages > len(want)+1 {
				t.Fatalf("the listing does not end after %d pages", pages)
			}
			q := url.Values{"prefix": {prefix}, "start-after": {after}, "limit": {strconv.Itoa(pageLimit)}}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/blobs?"+q.Encode(), nil))
			if len(prefix) > MaxKeyLen || !utf8.ValidString(prefix) {
				if rec.Code != http.StatusBadRequest {
					t.Fatalf("prefix %q: status %d, want 400", prefix, rec.Code)
				}
				return
			}
			if rec.Code != http.StatusOK {
				t.Fatalf("page %d: %d %s", pages, rec.Code, rec.Body)
			}
			var page listResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &page); err != nil {
				t.Fatalf("page %d: %v", pages, err)
			}
			if len(page.Blobs) > pageLimit {
				t.Fatalf("page of %d blobs, limit %d", len(page.Blobs), pageLimit)
			}
			for _, b := range page.Blobs {
				got = append(got, b.Key)
			}
			if !page.Truncated {
				break
			}
			if page.NextStartAfter <= after {
				t.Fatalf("cursor %q does not advance past %q", page.NextStartAfter, after)
			}
			after = page.NextStartAfter
		}
		if !slices.Equal(got, want) {
			t.Fatalf("listed %q, want %q", got, want)
		}
	})
}

// FuzzBlobPath sends any request path under /blobs/ (as the server would
// receive it, parsed by url.ParseRequestURI) to the handler: the answer is
// a 201 that stored exactly the once-unescaped key, which ValidateKey
// accepts, or 400 InvalidKey storing nothing; never anything else.
func FuzzBlobPath(f *testing.F) {
	for _, p := range []string{
		"a", "a/b", "..", "a/../b", "%2e%2e", "a%2Fb", "a%2F%2Fb", "%00", "%ff", "a%", "%zz", "%252e",
		"a b", "a?b", "a#b", "./a", "a/.", strings.Repeat("k", 1025), "日本", "%E6%97%A5", "a//b",
	} {
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, raw string) {
		u, err := url.ParseRequestURI("/blobs/" + raw)
		if err != nil {
			return // the server answers 400 before any handler runs
		}
		fs := newFakeStore()
		h := NewHandler(fs, Config{})
		req := httptest.NewRequest(http.MethodPut, "/", strings.NewReader("data"))
		req.URL = u
		req.RequestURI = u.RequestURI()
		req.Header.Set("Content-Length", "4")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		stored := fs.snapshot()
		switch rec.Code {
		case http.StatusCreated:
			key, err := url.PathUnescape(strings.TrimPrefix(u.EscapedPath(), "/blobs/"))
			if err != nil || ValidateKey(key) != nil {
				t.Fatalf("path %q: stored although the key %q is invalid (%v)", raw, key, err)
			}
			if len(stored) != 1 || string(stored[key]) != "data" {
				t.Fatalf("path %q: stored %q, want only key %q", raw, mapKeys(stored), key)
			}
		case http.StatusBadRequest:
			if code := (result{body: rec.Body.Bytes()}).errorCode(); code != CodeInvalidKey {
				t.Fatalf("path %q: 400 %s, want InvalidKey", raw, code)
			}
			if len(stored) != 0 {
				t.Fatalf("path %q: refused but stored %q", raw, mapKeys(stored))
			}
		default:
			// Query strings are ignored by PUT; a '?' ends the path.
			t.Fatalf("path %q: status %d %s", raw, rec.Code, rec.Body)
		}
	})
}

func mapKeys[V any](m map[string]V) []string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
