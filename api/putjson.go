package api

import (
	"net/http"
	"strconv"
	"unicode/utf8"
)

// writePutResponse answers a successful PUT. The body is the bytes
// json.Encoder writes for p (TestPutResponseJSONMatchesEncoder and
// FuzzPutResponseJSON hold it to that), built without reflection: the
// PUT is the request the node serves most, and the encoder's reflection
// and buffers were several allocations each.
func writePutResponse(w http.ResponseWriter, p putResponse) {
	var buf [192]byte
	body := appendPutResponse(buf[:0], p)
	writeJSONHeader(w, http.StatusCreated)
	_, _ = w.Write(body) // a write error means the client is gone
}

// appendPutResponse appends p as json.Encoder encodes it, newline
// included.
func appendPutResponse(b []byte, p putResponse) []byte {
	b = append(b, `{"key":`...)
	b = appendJSONString(b, p.Key)
	b = append(b, `,"size":`...)
	b = strconv.AppendInt(b, p.Size, 10)
	b = append(b, `,"etag":`...)
	b = appendJSONString(b, p.ETag)
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, p.Version, 10)
	return append(b, "}\n"...)
}

// appendJSONString appends s as a JSON string the way encoding/json
// writes one with HTML escaping on (its default): '"' and '\\' escaped,
// \b \f \n \r \t by name, other control characters and '<', '>', '&',
// U+2028 and U+2029 as \u escapes, and each byte of invalid UTF-8 as
// \ufffd.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, `\b`...)
			case '\f':
				b = append(b, `\f`...)
			case '\n':
				b = append(b, `\n`...)
			case '\r':
				b = append(b, `\r`...)
			case '\t':
				b = append(b, `\t`...)
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
