package api

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"
)

// byteRange is the part [start, start+length) of a blob. length is at least 1.
type byteRange struct {
	start, length int64
}

// contentRange is the value of the Content-Range header of a 206 response.
func (br byteRange) contentRange(size int64) string {
	return fmt.Sprintf("bytes %d-%d/%d", br.start, br.start+br.length-1, size)
}

var (
	// errRangeIgnored: the Range header is not one this server honours and
	// is ignored (RFC 9110 section 14.2 allows it): the whole blob is served.
	errRangeIgnored = errors.New("range header ignored")
	// errRangeUnit: the value does not start with "bytes=", the only range
	// unit served (RFC 9110 says a server MUST ignore a unit it does not
	// understand; nginx also ignores a value with no unit at all).
	errRangeUnit = fmt.Errorf("%w: not a bytes range", errRangeIgnored)
	// errRangeMultiple: a well-formed range set of more than one range.
	// multipart/byteranges is not served; the whole blob is.
	errRangeMultiple = fmt.Errorf("%w: more than one byte range", errRangeIgnored)
	// errRangeSyntax: "bytes=" followed by something that is not a list of
	// well-formed byte-range-specs (answered 416, as nginx does).
	errRangeSyntax = errors.New("malformed byte range")
	// errRangeUnsatisfiable: the range is well-formed but selects no byte of the blob.
	errRangeUnsatisfiable = errors.New("range not satisfiable")
)

// parseRange parses one Range header value (RFC 9110 section 14.1.2) against
// a blob of size bytes. On success it returns the one range the value holds,
// within [0, size) and not empty. Otherwise the error says what to do:
//
//   - errRangeUnit, errRangeMultiple (both wrap errRangeIgnored): serve the
//     whole blob. A value that does not begin with "bytes=" (the unit is
//     case-insensitive) is errRangeUnit, whatever follows; a range set of
//     two or more well-formed ranges is errRangeMultiple, whatever the
//     ranges are.
//   - errRangeSyntax: the range set is empty or one of its members is not
//     "a-b", "a-" or "-n" with a and b and n decimal digits, or is "a-b"
//     with b < a (invalid per RFC 9110, not unsatisfiable; compared
//     exactly, even beyond int64).
//   - errRangeUnsatisfiable: the one range starts at or beyond size, is a
//     suffix of zero bytes, or the blob is empty.
//
// Members of the set are separated by commas; spaces and tabs around a
// member are ignored and so are empty members (the list rule of RFC 9110
// section 5.6.1), so "bytes=0-1," holds one range. A last position beyond
// the end, or a suffix longer than the blob, is clamped to the blob.
// Numbers too large for an int64 saturate, which only ever makes them
// "beyond the end".
func parseRange(value string, size int64) (byteRange, error) {
	const prefix = "bytes="
	if len(value) < len(prefix) || !strings.EqualFold(value[:len(prefix)], prefix) {
		return byteRange{}, errRangeUnit
	}
	var (
		spec  rangeSpec
		count int
	)
	for member := range strings.SplitSeq(value[len(prefix):], ",") {
		member = strings.Trim(member, " \t")
		if member == "" {
			continue
		}
		s, ok := parseRangeSpec(member)
		if !ok {
			return byteRange{}, fmt.Errorf("%w: %q", errRangeSyntax, member)
		}
		spec = s
		count++
	}
	switch count {
	case 0:
		return byteRange{}, fmt.Errorf("%w: no range in the set", errRangeSyntax)
	case 1:
		return spec.resolve(size)
	default:
		return byteRange{}, errRangeMultiple
	}
}

// rangeSpec is one well-formed byte-range-spec: "first-last", "first-"
// (last is MaxInt64) or, with suffix set, "-last".
type rangeSpec struct {
	first, last int64
	suffix      bool
}

// parseRangeSpec parses one member of a range set. ok is false when it is
// malformed or is "a-b" with b < a.
func parseRangeSpec(s string) (rangeSpec, bool) {
	first, last, ok := strings.Cut(s, "-")
	if !ok {
		return rangeSpec{}, false
	}
	if first == "" {
		n, ok := parseDigits(last)
		return rangeSpec{last: n, suffix: true}, ok
	}
	spec := rangeSpec{last: math.MaxInt64}
	if spec.first, ok = parseDigits(first); !ok {
		return rangeSpec{}, false
	}
	if last != "" {
		// Compared as decimals, not as the saturated int64s, so that
		// "bytes=99999999999999999999-99999999999999999998" is reversed.
		if spec.last, ok = parseDigits(last); !ok || decimalLess(last, first) {
			return rangeSpec{}, false
		}
	}
	return spec, true
}

// decimalLess reports whether the digit string a is a smaller number than b,
// exactly, however long they are.
func decimalLess(a, b string) bool {
	a, b = strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
	if len(a) != len(b) {
		return len(a) < len(b)
	}
	return a < b
}

// resolve is the part of a blob of size bytes the spec selects, or
// errRangeUnsatisfiable.
func (spec rangeSpec) resolve(size int64) (byteRange, error) {
	if spec.suffix {
		if spec.last == 0 || size <= 0 {
			return byteRange{}, errRangeUnsatisfiable
		}
		n := min(spec.last, size)
		return byteRange{start: size - n, length: n}, nil
	}
	if spec.first >= size {
		return byteRange{}, errRangeUnsatisfiable
	}
	end := min(spec.last, size-1)
	return byteRange{start: spec.first, length: end - spec.first + 1}, nil
}

// parseDigits parses a non-empty run of ASCII digits, saturating at MaxInt64.
func parseDigits(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		d := int64(c - '0')
		if n > (math.MaxInt64-d)/10 {
			n = math.MaxInt64
			continue
		}
		n = n*10 + d
	}
	return n, true
}

// entityTag is one parsed entity-tag: the quoted opaque part and whether it
// carried the weak prefix W/.
type entityTag struct {
	opaque string // including the quotes
	weak   bool
}

// parseETag parses an entity-tag as sent by the store, e.g. "\"1a-2b\"" or
// "W/\"x\"". ok is false if s is not one.
func parseETag(s string) (entityTag, bool) {
	t, rest, ok := scanETag(s)
	return t, ok && rest == ""
}

// scanETag reads one entity-tag at the start of s and returns the rest.
func scanETag(s string) (t entityTag, rest string, ok bool) {
	if strings.HasPrefix(s, "W/") {
		t.weak = true
		s = s[2:]
	}
	if len(s) < 2 || s[0] != '"' {
		return entityTag{}, "", false
	}
	end := strings.IndexByte(s[1:], '"')
	if end < 0 {
		return entityTag{}, "", false
	}
	opaque := s[:end+2]
	for i := 1; i < len(opaque)-1; i++ {
		// etagc = %x21 / %x23-7E / obs-text
		if c := opaque[i]; c < 0x21 || c == 0x7f {
			return entityTag{}, "", false
		}
	}
	t.opaque = opaque
	return t, s[end+2:], true
}

// parseETagList parses an If-Match / If-None-Match value: "*" or a
// comma-separated list of entity-tags. ok is false when the value is
// malformed; tags then holds the well-formed tags before the fault.
func parseETagList(value string) (star bool, tags []entityTag, ok bool) {
	v := strings.Trim(value, " \t")
	if v == "*" {
		return true, nil, true
	}
	for {
		v = strings.TrimLeft(v, " \t,")
		if v == "" {
			return false, tags, len(tags) > 0
		}
		t, rest, ok := scanETag(v)
		if !ok {
			return false, tags, false
		}
		tags = append(tags, t)
		rest = strings.TrimLeft(rest, " \t")
		if rest != "" && rest[0] != ',' {
			return false, tags, false
		}
		v = rest
	}
}

// strongMatch is the strong comparison of RFC 9110 section 8.8.3.2: both
// tags strong and their opaque parts equal.
func strongMatch(a, b entityTag) bool {
	return !a.weak && !b.weak && a.opaque == b.opaque
}

// weakMatch is the weak comparison: opaque parts equal, W/ ignored.
func weakMatch(a, b entityTag) bool {
	return a.opaque == b.opaque
}

// headerMatches evaluates an If-Match (strong) or If-None-Match (weak) header
// value against the blob's tag. A malformed list matches only through the
// well-formed tags before the fault, as lenient clients and caches expect.
func headerMatches(value string, current entityTag, strong bool) bool {
	star, tags, _ := parseETagList(value)
	if star {
		return true
	}
	for _, t := range tags {
		if strong && strongMatch(t, current) || !strong && weakMatch(t, current) {
			return true
		}
	}
	return false
}

// precondition is the outcome of evaluating a read's conditional headers.
type precondition int

const (
	preconditionPass precondition = iota
	preconditionNotModified
	preconditionFailed
)

// evalReadConditions applies RFC 9110 section 13.2.2 in order for GET and
// HEAD: If-Match (else If-Unmodified-Since), then If-None-Match (else
// If-Modified-Since). Unparseable dates are ignored, as the RFC asks.
// Dates compare at one-second resolution, the resolution of Last-Modified.
func evalReadConditions(h http.Header, current entityTag, modified time.Time) precondition {
	modified = modified.Truncate(time.Second)
	if v, ok := h["If-Match"]; ok {
		if !headerMatches(strings.Join(v, ","), current, true) {
			return preconditionFailed
		}
	} else if t, ok := headerTime(h, "If-Unmodified-Since"); ok && !modified.IsZero() {
		if modified.After(t) {
			return preconditionFailed
		}
	}
	if v, ok := h["If-None-Match"]; ok {
		if headerMatches(strings.Join(v, ","), current, false) {
			return preconditionNotModified
		}
	} else if t, ok := headerTime(h, "If-Modified-Since"); ok && !modified.IsZero() {
		if !modified.After(t) {
			return preconditionNotModified
		}
	}
	return preconditionPass
}

// headerTime parses the date in header name, if there is one. An absent
// header is not parsed: http.ParseTime of "" tries three layouts and
// allocates an error for each, on every GET without conditions.
func headerTime(h http.Header, name string) (time.Time, bool) {
	v := h.Get(name)
	if v == "" {
		return time.Time{}, false
	}
	t, err := http.ParseTime(v)
	return t, err == nil
}

// ifRangeHolds reports whether a Range request may be served as a range
// given its If-Range value (RFC 9110 section 13.1.5): an entity-tag must
// match strongly, a date must equal Last-Modified exactly. An absent header
// holds; a malformed one does not (the full blob is sent instead).
func ifRangeHolds(h http.Header, current entityTag, modified time.Time) bool {
	v := strings.Trim(h.Get("If-Range"), " \t")
	if v == "" {
		return true
	}
	if strings.HasPrefix(v, "W/") || strings.HasPrefix(v, `"`) {
		t, ok := parseETag(v)
		return ok && strongMatch(t, current)
	}
	t, err := http.ParseTime(v)
	return err == nil && !modified.IsZero() && t.Equal(modified.Truncate(time.Second))
}
