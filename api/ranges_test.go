package api

import (
	"errors"
	"fmt"
	"testing"
)

func TestParseRange(t *testing.T) {
	const huge = "99999999999999999999999"
	tests := []struct {
		value string
		size  int64
		want  byteRange
		err   error
	}{
		{"bytes=0-0", 10, byteRange{0, 1}, nil},
		{"bytes=0-9", 10, byteRange{0, 10}, nil},
		{"bytes=2-5", 10, byteRange{2, 4}, nil},
		{"bytes=9-", 10, byteRange{9, 1}, nil},
		{"bytes=0-", 10, byteRange{0, 10}, nil},
		{"bytes=-1", 10, byteRange{9, 1}, nil},
		{"bytes=-10", 10, byteRange{0, 10}, nil},
		{"bytes=-11", 10, byteRange{0, 10}, nil},
		{"bytes=5-100", 10, byteRange{5, 5}, nil},
		{"bytes=0-" + huge, 10, byteRange{0, 10}, nil},
		{"bytes=-" + huge, 10, byteRange{0, 10}, nil},
		{"BYTES=1-1", 10, byteRange{1, 1}, nil},
		{"bytes= 1-2 ", 10, byteRange{1, 2}, nil},
		{"bytes=007-008", 10, byteRange{7, 2}, nil},
		{"bytes=10-", 10, byteRange{}, errRangeUnsatisfiable},
		{"bytes=10-20", 10, byteRange{}, errRangeUnsatisfiable},
		{"bytes=" + huge + "-", 10, byteRange{}, errRangeUnsatisfiable},
		{"bytes=-0", 10, byteRange{}, errRangeUnsatisfiable},
		{"bytes=0-", 0, byteRange{}, errRangeUnsatisfiable},
		{"bytes=-5", 0, byteRange{}, errRangeUnsatisfiable},
		{"bytes=5-2", 10, byteRange{}, errRangeSyntax},
		{"bytes=5-2", 3, byteRange{}, errRangeSyntax},
		{"bytes=abc", 10, byteRange{}, errRangeSyntax},
		{"bytes=a-1", 10, byteRange{}, errRangeSyntax},
		{"bytes=1-b", 10, byteRange{}, errRangeSyntax},
		{"bytes=-", 10, byteRange{}, errRangeSyntax},
		{"bytes=", 10, byteRange{}, errRangeSyntax},
		{"bytes=1", 10, byteRange{}, errRangeSyntax},
		{"bytes=1-2-3", 10, byteRange{}, errRangeSyntax},
		{"bytes=+1-2", 10, byteRange{}, errRangeSyntax},
		{"bytes=--1", 10, byteRange{}, errRangeSyntax},
		{"bytes=0x1-2", 10, byteRange{}, errRangeSyntax},
		{"bytes =0-1", 10, byteRange{}, errRangeSyntax},
		{"bits=0-1", 10, byteRange{}, errRangeSyntax},
		{"0-1", 10, byteRange{}, errRangeSyntax},
		{"", 10, byteRange{}, errRangeSyntax},
		{"bytes=0-1,2-3", 10, byteRange{}, errRangeMultiple},
		{"bytes=0-1,", 10, byteRange{}, errRangeMultiple},
	}
	for _, tt := range tests {
		got, err := parseRange(tt.value, tt.size)
		if got != tt.want || !errors.Is(err, tt.err) || (err == nil) != (tt.err == nil) {
			t.Errorf("parseRange(%q, %d) = %+v, %v; want %+v, %v", tt.value, tt.size, got, err, tt.want, tt.err)
		}
	}
}

func TestParseETagList(t *testing.T) {
	tests := []struct {
		value string
		star  bool
		tags  []entityTag
		ok    bool
	}{
		{`*`, true, nil, true},
		{` * `, true, nil, true},
		{`"a"`, false, []entityTag{{`"a"`, false}}, true},
		{`W/"a", "b"`, false, []entityTag{{`"a"`, true}, {`"b"`, false}}, true},
		{`"a",,"b"`, false, []entityTag{{`"a"`, false}, {`"b"`, false}}, true},
		{`""`, false, []entityTag{{`""`, false}}, true},
		{`"a" "b"`, false, []entityTag{{`"a"`, false}}, false},
		{`"a", b`, false, []entityTag{{`"a"`, false}}, false},
		{`"a`, false, nil, false},
		{`"a b"`, false, nil, false},
		{``, false, nil, false},
		{`w/"a"`, false, nil, false},
	}
	for _, tt := range tests {
		star, tags, ok := parseETagList(tt.value)
		if star != tt.star || ok != tt.ok || fmt.Sprint(tags) != fmt.Sprint(tt.tags) {
			t.Errorf("parseETagList(%q) = %v %v %v; want %v %v %v", tt.value, star, tags, ok, tt.star, tt.tags, tt.ok)
		}
	}
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{
		"bytes=0-0", "bytes=0-", "bytes=-1", "bytes=5-2", "bytes=abc", "bytes=0-1,2-3", "bytes=-",
		"bytes=99999999999999999999-", "bytes=-99999999999999999999", "BYTES= 3-4 ", "",
	} {
		for _, size := range []int64{0, 1, 10, 1 << 40} {
			f.Add(s, size)
		}
	}
	f.Fuzz(func(t *testing.T, value string, size int64) {
		if size < 0 {
			size = -(size + 1)
		}
		br, err := parseRange(value, size)
		if err != nil {
			if !errors.Is(err, errRangeSyntax) && !errors.Is(err, errRangeMultiple) && !errors.Is(err, errRangeUnsatisfiable) {
				t.Fatalf("parseRange(%q, %d): unexpected error %v", value, size, err)
			}
			return
		}
		if br.start < 0 || br.length < 1 || br.start > size-br.length {
			t.Fatalf("parseRange(%q, %d) = %+v: outside the blob", value, size, br)
		}
		// The Content-Range of an accepted range parses back to itself.
		var a, b, s int64
		if _, err := fmt.Sscanf(br.contentRange(size), "bytes %d-%d/%d", &a, &b, &s); err != nil ||
			a != br.start || b != br.start+br.length-1 || s != size {
			t.Fatalf("Content-Range %q does not describe %+v", br.contentRange(size), br)
		}
	})
}
