package api

import (
	"errors"
	"fmt"
	"math"
	"math/big"
	"regexp"
	"strings"
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
		{"bytes=\t1-2\t", 10, byteRange{1, 2}, nil},
		{"bytes=007-008", 10, byteRange{7, 2}, nil},
		{"bytes=10-", 10, byteRange{}, errRangeUnsatisfiable},
		{"bytes=10-20", 10, byteRange{}, errRangeUnsatisfiable},
		{"bytes=" + huge + "-", 10, byteRange{}, errRangeUnsatisfiable},
		{"bytes=" + huge + "-" + huge, 10, byteRange{}, errRangeUnsatisfiable},
		{"bytes=" + huge + "-" + huge[1:], 10, byteRange{}, errRangeSyntax},
		{"bytes=0099-99", 100, byteRange{99, 1}, nil},
		{"bytes=0099-098", 100, byteRange{}, errRangeSyntax},
		{"bytes=-0", 10, byteRange{}, errRangeUnsatisfiable},
		{"bytes=0-", 0, byteRange{}, errRangeUnsatisfiable},
		{"bytes=-5", 0, byteRange{}, errRangeUnsatisfiable},
		{"bytes=-5", 3, byteRange{0, 3}, nil},
		{"bytes=5-2", 10, byteRange{}, errRangeSyntax},
		{"bytes=5-2", 3, byteRange{}, errRangeSyntax},
		{"bytes=abc", 10, byteRange{}, errRangeSyntax},
		{"bytes=a-1", 10, byteRange{}, errRangeSyntax},
		{"bytes=1-b", 10, byteRange{}, errRangeSyntax},
		{"bytes=-", 10, byteRange{}, errRangeSyntax},
		{"bytes=1", 10, byteRange{}, errRangeSyntax},
		{"bytes=1-2-3", 10, byteRange{}, errRangeSyntax},
		{"bytes=+1-2", 10, byteRange{}, errRangeSyntax},
		{"bytes=--1", 10, byteRange{}, errRangeSyntax},
		{"bytes=0x1-2", 10, byteRange{}, errRangeSyntax},
		{"bytes=1 - 2", 10, byteRange{}, errRangeSyntax},
		{"bytes=", 10, byteRange{}, errRangeSyntax},
		{"bytes= ", 10, byteRange{}, errRangeSyntax},
		{"bytes=,", 10, byteRange{}, errRangeSyntax},
		{"bytes=0-1,abc", 10, byteRange{}, errRangeSyntax},
		{"bytes=0-1,5-2", 10, byteRange{}, errRangeSyntax},
		{"bytes=abc,0-1", 10, byteRange{}, errRangeSyntax},
		// Empty list members are ignored (RFC 9110 section 5.6.1).
		{"bytes=0-1,", 10, byteRange{0, 2}, nil},
		{"bytes=, ,3-4, ", 10, byteRange{3, 2}, nil},
		{"bytes=,10-", 10, byteRange{}, errRangeUnsatisfiable},
		// Not a bytes range: ignored.
		{"items=0-5", 10, byteRange{}, errRangeUnit},
		{"bits=0-1", 10, byteRange{}, errRangeUnit},
		{"bytes =0-1", 10, byteRange{}, errRangeUnit},
		{"bytes", 10, byteRange{}, errRangeUnit},
		{"bytes:0-1", 10, byteRange{}, errRangeUnit},
		{"garbage", 10, byteRange{}, errRangeUnit},
		{"0-1", 10, byteRange{}, errRangeUnit},
		{"", 10, byteRange{}, errRangeUnit},
		// Several ranges: ignored, whatever they are.
		{"bytes=0-1,2-3", 10, byteRange{}, errRangeMultiple},
		{"bytes=0-1,0-1", 10, byteRange{}, errRangeMultiple},
		{"bytes=20-30,40-50", 10, byteRange{}, errRangeMultiple},
		{"bytes=0-1 , -2", 10, byteRange{}, errRangeMultiple},
		{"bytes=0-0,1-1", 0, byteRange{}, errRangeMultiple},
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

// FuzzParseRange checks parseRange against rangeOracle, a second reading
// of the rules written independently (a regular expression and math/big),
// and that an accepted range lies within the blob.
func FuzzParseRange(f *testing.F) {
	for _, s := range []string{
		"bytes=0-0", "bytes=0-", "bytes=-1", "bytes=5-2", "bytes=abc", "bytes=0-1,2-3", "bytes=-",
		"bytes=99999999999999999999-", "bytes=-99999999999999999999", "BYTES= 3-4 ", "",
		"items=0-5", "garbage", "bytes=", "bytes=0-1,", "bytes=0-1,abc", "bytes=,\t,", "bytes=9223372036854775807-",
		"bytes=99999999999999999999-99999999999999999998", "bytes=0099-99",
	} {
		for _, size := range []int64{0, 1, 10, 1 << 40, math.MaxInt64} {
			f.Add(s, size)
		}
	}
	member := regexp.MustCompile(`^(?:([0-9]+)-([0-9]*)|-([0-9]+))$`)
	f.Fuzz(func(t *testing.T, value string, size int64) {
		if size < 0 {
			size = -(size + 1)
		}
		br, err := parseRange(value, size)
		want, wantErr := rangeOracle(member, value, size)
		if br != want || !sameRangeError(err, wantErr) {
			t.Fatalf("parseRange(%q, %d) = %+v, %v; oracle says %+v, %v", value, size, br, err, want, wantErr)
		}
		if err != nil {
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

// sameRangeError reports whether two results of parseRange are the same
// outcome: both nil, or both the same one of its four sentinels.
func sameRangeError(got, want error) bool {
	for _, sentinel := range []error{errRangeUnit, errRangeMultiple, errRangeSyntax, errRangeUnsatisfiable} {
		if errors.Is(got, sentinel) != errors.Is(want, sentinel) {
			return false
		}
	}
	return (got == nil) == (want == nil)
}

// rangeOracle is the reference reading of doc.go's Range rules: member
// matches one byte-range-spec; arithmetic is exact (math/big).
func rangeOracle(member *regexp.Regexp, value string, size int64) (byteRange, error) {
	const unit = "bytes="
	if len(value) < len(unit) || !strings.EqualFold(value[:len(unit)], unit) {
		return byteRange{}, errRangeUnit
	}
	var specs [][]string
	for _, m := range strings.Split(value[len(unit):], ",") {
		m = strings.Trim(m, " \t")
		if m == "" {
			continue
		}
		sub := member.FindStringSubmatch(m)
		if sub == nil {
			return byteRange{}, errRangeSyntax
		}
		if sub[1] != "" && sub[2] != "" && bigInt(sub[2]).Cmp(bigInt(sub[1])) < 0 {
			return byteRange{}, errRangeSyntax
		}
		specs = append(specs, sub)
	}
	switch {
	case len(specs) == 0:
		return byteRange{}, errRangeSyntax
	case len(specs) > 1:
		return byteRange{}, errRangeMultiple
	}
	sub, n := specs[0], big.NewInt(size)
	if sub[3] != "" { // suffix
		length := bigInt(sub[3])
		if length.Sign() == 0 || size == 0 {
			return byteRange{}, errRangeUnsatisfiable
		}
		if length.Cmp(n) > 0 {
			length = n
		}
		return byteRange{start: size - length.Int64(), length: length.Int64()}, nil
	}
	first := bigInt(sub[1])
	if first.Cmp(n) >= 0 {
		return byteRange{}, errRangeUnsatisfiable
	}
	last := big.NewInt(size - 1)
	if sub[2] != "" && bigInt(sub[2]).Cmp(last) < 0 {
		last = bigInt(sub[2])
	}
	return byteRange{start: first.Int64(), length: last.Int64() - first.Int64() + 1}, nil
}

func bigInt(digits string) *big.Int {
	n, ok := new(big.Int).SetString(digits, 10)
	if !ok {
		panic("not digits: " + digits)
	}
	return n
}
