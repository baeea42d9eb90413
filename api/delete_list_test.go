package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/blobnode/blobnode/store"
)

func TestDelete(t *testing.T) {
	e := newTestEnv(t, Config{})
	e.put("a/b", []byte("x"))
	info, _ := e.store.info("a/b")

	steps := []struct {
		name    string
		headers []string
		delErr  error
		status  int
		code    string
		present bool
	}{
		{"if-match other", []string{"If-Match", `"other"`}, nil, 412, CodePreconditionFailed, true},
		{"if-match list", []string{"If-Match", `"x", "y"`}, nil, 400, CodeInvalidArgument, true},
		{"if-none-match", []string{"If-None-Match", "*"}, nil, 400, CodeInvalidArgument, true},
		{"unavailable", nil, store.ErrUnavailable, 503, CodeUnavailable, true},
		{"outcome unknown", nil, fmt.Errorf("%w: leadership lost", store.ErrOutcomeUnknown), 503, CodeOutcomeUnknown, true},
		{"if-match current", []string{"If-Match", info.ETag}, nil, 204, "", false},
		{"absent", nil, nil, 404, CodeNotFound, false},
	}
	for _, st := range steps {
		e.store.setFail("delete", st.delErr)
		r := e.do(http.MethodDelete, "/blobs/a/b", nil, st.headers...)
		if r.status != st.status || r.errorCode() != st.code {
			t.Fatalf("%s: status %d code %q (%s), want %d %q", st.name, r.status, r.errorCode(), r.body, st.status, st.code)
		}
		if _, ok := e.store.info("a/b"); ok != st.present {
			t.Fatalf("%s: present = %v, want %v", st.name, ok, st.present)
		}
	}
	if r := e.do(http.MethodGet, "/blobs/a/b", nil); r.status != http.StatusNotFound {
		t.Errorf("GET after DELETE: %d", r.status)
	}
	e.put("plain", []byte("x"))
	if r := e.do(http.MethodDelete, "/blobs/plain", nil); r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Errorf("unconditional DELETE: %d %q", r.status, r.body)
	}
}

func listPage(t *testing.T, e *testEnv, query string) listResponse {
	t.Helper()
	r := e.do(http.MethodGet, "/blobs"+query, nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /blobs%s: %d %s", query, r.status, r.body)
	}
	var page listResponse
	if err := json.Unmarshal(r.body, &page); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return page
}

func TestListPagination(t *testing.T) {
	e := newTestEnv(t, Config{MaxListLimit: 10})
	var want []string
	for i := range 23 {
		k := fmt.Sprintf("p/%02d", i)
		want = append(want, k)
		e.put(k, []byte(k), "Content-Type", "text/plain")
	}
	e.put("q/other", []byte("x"))
	e.put("pz", []byte("x"))

	var got []string
	next, pages := "", 0
	for {
		page := listPage(t, e, "?prefix=p/&limit=7&start-after="+next)
		pages++
		for _, b := range page.Blobs {
			got = append(got, b.Key)
		}
		if !page.Truncated {
			break
		}
		next = page.NextStartAfter
		if pages > 10 {
			t.Fatal("listing does not end")
		}
	}
	if !slices.Equal(got, want) || pages != 4 {
		t.Fatalf("listed %v in %d pages, want %v in 4", got, pages, want)
	}

	// Default limit is MaxListLimit; entries carry every field.
	page := listPage(t, e, "")
	if len(page.Blobs) != 10 || !page.Truncated || page.NextStartAfter != "p/09" {
		t.Fatalf("default page: %d blobs, truncated %v, next %q", len(page.Blobs), page.Truncated, page.NextStartAfter)
	}
	info, _ := e.store.info("p/00")
	b := page.Blobs[0]
	if b.Key != "p/00" || b.Size != 4 || b.ETag != info.ETag || b.Version != info.Version ||
		b.ContentType != "text/plain" || !b.Created.Equal(info.Created) {
		t.Errorf("entry %+v, want %+v", b, info)
	}
	if !sort.StringsAreSorted(got) {
		t.Error("not in key order")
	}

	// The raw JSON has the documented names, and an empty list is [].
	r := e.do(http.MethodGet, "/blobs?prefix=none/", nil)
	var raw map[string]any
	if err := json.Unmarshal(r.body, &raw); err != nil {
		t.Fatal(err)
	}
	if blobs, ok := raw["blobs"].([]any); !ok || len(blobs) != 0 || raw["truncated"] != false || raw["next_start_after"] != "" {
		t.Errorf("empty listing JSON: %s", r.body)
	}
	r = e.do(http.MethodGet, "/blobs?prefix=p/&limit=1", nil)
	var one struct {
		Blobs []map[string]any `json:"blobs"`
	}
	if err := json.Unmarshal(r.body, &one); err != nil || len(one.Blobs) != 1 {
		t.Fatalf("%s: %v", r.body, err)
	}
	for _, f := range []string{"key", "size", "etag", "version", "content_type", "created"} {
		if _, ok := one.Blobs[0][f]; !ok {
			t.Errorf("entry lacks %q: %s", f, r.body)
		}
	}
	if _, err := time.Parse(time.RFC3339, one.Blobs[0]["created"].(string)); err != nil {
		t.Errorf("created is not RFC 3339: %v", err)
	}
}

func TestListBadRequest(t *testing.T) {
	e := newTestEnv(t, Config{MaxListLimit: 50})
	for _, q := range []string{
		"?limit=0", "?limit=-1", "?limit=abc", "?limit=51", "?limit=", "?limit=1.5", "?limit=99999999999999999999",
		"?limit=1&limit=2", "?prefix=a&prefix=b", "?prefix=%FF", "?start-after=%C3%28",
		// Malformed query strings are refused, not read in part (a dropped
		// prefix would list every blob).
		"?prefix=%zz", "?prefix=a%", "?limit=%", "?prefix=a;limit=2", "?limit=5&prefix=%G1",
	} {
		r := e.do(http.MethodGet, "/blobs"+q, nil)
		if r.status != http.StatusBadRequest || r.errorCode() != CodeInvalidArgument {
			t.Errorf("%s: status %d code %q, want 400 InvalidArgument", q, r.status, r.errorCode())
		}
	}
	if r := e.do(http.MethodGet, "/blobs?limit=50", nil); r.status != http.StatusOK {
		t.Errorf("limit=max: %d", r.status)
	}
	e.store.setFail("list", store.ErrUnavailable)
	if r := e.do(http.MethodGet, "/blobs", nil); r.status != http.StatusServiceUnavailable {
		t.Errorf("list unavailable: %d", r.status)
	}
}
