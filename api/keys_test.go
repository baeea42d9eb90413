package api

import (
	"errors"
	"net/http"
	"net/url"
	"path"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/blobnode/blobnode/store"
)

var goodKeys = []string{
	"a",
	"a/b/c",
	"dir/file.txt",
	"日本語/ファイル",
	"emoji🙂",
	"with space",
	"a..b", ".hidden", "..x", "x.", "a/.b/c",
	"%",
	"100%/sure?#fragment-like",
	"tab-less~!@$&'()*+,;=:",
	strings.Repeat("k", MaxKeyLen),
	strings.Repeat("é", MaxKeyLen/2),
}

var badKeys = []struct {
	key  string
	rule string // a word the error message must contain
}{
	{"", "empty"},
	{strings.Repeat("k", MaxKeyLen+1), "longer"},
	{strings.Repeat("é", MaxKeyLen/2) + "k", "longer"},
	{".", "'.'"},
	{"..", "'.'"},
	{"a/./b", "'.'"},
	{"a/../b", "'.'"},
	{"a/..", "'.'"},
	{"a//b", "empty segment"},
	{"/a", "empty segment"},
	{"a/", "empty segment"},
	{"/", "empty segment"},
	{"a\x00b", "control"},
	{"\x01", "control"},
	{"a\nb", "control"},
	{"\x1f", "control"},
	{"\x7f", "control"},
	{"a\tb", "control"},
	{"\xff", "UTF-8"},
	{"\xc3\x28", "UTF-8"},
	{"\xed\xa0\x80", "UTF-8"}, // a UTF-16 surrogate
}

func TestValidateKey(t *testing.T) {
	for _, k := range goodKeys {
		if err := ValidateKey(k); err != nil {
			t.Errorf("ValidateKey(%q) = %v, want nil", k, err)
		}
	}
	for _, tt := range badKeys {
		err := ValidateKey(tt.key)
		if !errors.Is(err, store.ErrInvalidKey) {
			t.Errorf("ValidateKey(%q) = %v, want ErrInvalidKey", tt.key, err)
			continue
		}
		if !strings.Contains(err.Error(), tt.rule) {
			t.Errorf("ValidateKey(%q) = %q, want a message naming %q", tt.key, err, tt.rule)
		}
	}
}

// escapeKey escapes every byte that is not unreserved, except '/', the way a
// careful client builds a request path.
func escapeKey(k string) string {
	segs := strings.Split(k, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

func TestKeysOverHTTP(t *testing.T) {
	e := newTestEnv(t, Config{})
	for _, k := range goodKeys {
		p := "/blobs/" + escapeKey(k)
		e.do(http.MethodPut, p, strings.NewReader(k))
		r := e.do(http.MethodGet, p, nil)
		if r.status != http.StatusOK || string(r.body) != k {
			t.Errorf("key %q: GET %d %q", k, r.status, r.body)
		}
		if _, ok := e.store.info(k); !ok {
			t.Errorf("key %q: not stored under its unescaped name", k)
		}
	}

	// %2F is part of the key, as '/': both spellings name one blob.
	e.put("x%2Fy", []byte("slash"))
	if r := e.do(http.MethodGet, "/blobs/x/y", nil); string(r.body) != "slash" {
		t.Errorf("x%%2Fy: GET x/y = %d %q", r.status, r.body)
	}
	// Unescaped exactly once: %2541 is the key "%41", not "A".
	e.put("%2541", []byte("once"))
	if _, ok := e.store.info("%41"); !ok {
		t.Errorf("%%2541 was not stored as %%41")
	}
	if len(e.store.snapshot()) != len(goodKeys)+2 {
		t.Fatalf("stored %d blobs, want %d", len(e.store.snapshot()), len(goodKeys)+2)
	}
}

func TestBadKeysOverHTTP(t *testing.T) {
	paths := []string{
		"/blobs/",
		"/blobs/" + strings.Repeat("k", MaxKeyLen+1),
		"/blobs/.", "/blobs/..", "/blobs/%2E", "/blobs/%2E%2E",
		"/blobs/a/./b", "/blobs/a/../b", "/blobs/a/%2E%2E/b",
		"/blobs/a//b", "/blobs/a%2F%2Fb", "/blobs//a", "/blobs/%2Fa", "/blobs/a/", "/blobs/a%2F",
		"/blobs/a%00b", "/blobs/%00", "/blobs/%01", "/blobs/a%0Ab", "/blobs/%1F", "/blobs/%7F", "/blobs/a%09b",
		"/blobs/%FF", "/blobs/%C3%28", "/blobs/%ED%A0%80",
	}
	for _, p := range paths {
		t.Run(p[:min(len(p), 40)], func(t *testing.T) {
			e := newTestEnv(t, Config{})
			for _, method := range []string{http.MethodPut, http.MethodGet, http.MethodDelete} {
				var r result
				if method == http.MethodPut {
					r = e.do(method, p, strings.NewReader("data"))
				} else {
					r = e.do(method, p, nil)
				}
				if r.status != http.StatusBadRequest || r.errorCode() != CodeInvalidKey {
					t.Errorf("%s %s: status %d code %q (%s), want 400 InvalidKey", method, p, r.status, r.errorCode(), r.body)
				}
			}
			if n := e.store.puts(); n != 0 {
				t.Errorf("store saw %d puts", n)
			}
			if s := e.store.snapshot(); len(s) != 0 {
				t.Errorf("stored %v", s)
			}
		})
	}
}

func FuzzValidateKey(f *testing.F) {
	for _, k := range goodKeys {
		f.Add(k)
	}
	for _, tt := range badKeys {
		f.Add(tt.key)
	}
	f.Fuzz(func(t *testing.T, key string) {
		err := ValidateKey(key)
		if err != nil {
			if !errors.Is(err, store.ErrInvalidKey) {
				t.Fatalf("ValidateKey(%q) = %v, not ErrInvalidKey", key, err)
			}
			return
		}
		// An accepted key obeys every rule, checked independently.
		if len(key) < 1 || len(key) > MaxKeyLen || !utf8.ValidString(key) {
			t.Fatalf("accepted %q: length or encoding", key)
		}
		if strings.ContainsFunc(key, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			t.Fatalf("accepted %q: control character", key)
		}
		if path.Clean(key) != key || strings.HasPrefix(key, "/") || key == "." ||
			key == ".." || strings.HasPrefix(key, "../") {
			t.Fatalf("accepted %q: not a clean relative path", key)
		}
		// And it survives the trip through a request path.
		if got, err := url.PathUnescape(escapeKey(key)); err != nil || got != key {
			t.Fatalf("escape round trip of %q gave %q, %v", key, got, err)
		}
	})
}
