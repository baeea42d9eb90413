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
	// errRangeSyntax: the Range value is not one well-formed byte-range-spec.
	errRangeSyntax = errors.New("malformed Range header")
	// errRangeMultiple: the Range value holds more than one range.
	errRangeMultiple = errors.New("only a single byte range is supported")
	// errRangeUnsatisfiable: the range is well-formed but selects no byte of the blob.
	errRangeUnsatisfiable = errors.New("range not satisfiable")
)

// parseRange parses one Range header value (RFC 9110 section 14.1.2) against
// a blob of size bytes. It accepts exactly one of "bytes=a-b", "bytes=a-" and
// "bytes=-n" (the unit is case-insensitive; spaces around the range are
// ignored). On success the range lies within [0, size) and is not empty.
//
// "bytes=a-b" with b < a is malformed (errRangeSyntax), not unsatisfiable. A
// first position at or beyond size, a suffix of zero bytes, or any range of an
// empty blob is errRangeUnsatisfiable. A last position beyond the end, or a
// suffix longer than the blob, is clamped to the blob. Numbers too large for an
// int64 saturate, which only ever makes them "beyond the end".
func parseRange(value string, size int64) (byteRange, error) {
	unit, set, ok := strings.Cut(value, "=")
	if !ok || !strings.EqualFold(unit, "bytes") {
		return byteRange{}, errRangeSyntax
	}
	set = strings.Trim(set, " \t")
	if strings.Contains(set, ",") {
		return byteRange{}, errRangeMultiple
	}
	first, last, ok := strings.Cut(set, "-")
	if !ok {
		return byteRange{}, errRangeSyntax
	}
	if first == "" {
		n, ok := parseDigits(last)
		if !ok {
			return byteRange{}, errRangeSyntax
		}
		if n == 0 || size <= 0 {
			return byteRange{}, errRangeUnsatisfiable
		}
		n = min(n, size)
		return byteRange{start: size - n, length: n}, nil
	}
	start, ok := parseDigits(first)
	if !ok {
		return byteRange{}, errRangeSyntax
	}
	end := int64(math.MaxInt64)
	if last != "" {
		if end, ok = parseDigits(last); !ok || end < start {
			return byteRange{}, errRangeSyntax
		}
	}
	if start >= size {
		return byteRange{}, errRangeUnsatisfiable
	}
	end = min(end, size-1)
	return byteRange{start: start, length: end - start + 1}, nil
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
	} else if t, err := http.ParseTime(h.Get("If-Unmodified-Since")); err == nil && !modified.IsZero() {
		if modified.After(t) {
			return preconditionFailed
		}
	}
	if v, ok := h["If-None-Match"]; ok {
		if headerMatches(strings.Join(v, ","), current, false) {
			return preconditionNotModified
		}
	} else if t, err := http.ParseTime(h.Get("If-Modified-Since")); err == nil && !modified.IsZero() {
		if !modified.After(t) {
			return preconditionNotModified
		}
	}
	return preconditionPass
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
