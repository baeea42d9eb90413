package api

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/blobnode/blobnode/store"
)

// MaxKeyLen is the longest key accepted, in bytes of its UTF-8 encoding.
const MaxKeyLen = 1024

// ValidateKey reports whether key obeys the key rules:
//
//   - 1 to MaxKeyLen bytes;
//   - valid UTF-8;
//   - no control characters (bytes below 0x20, and 0x7f);
//   - split on '/', no segment is empty, "." or "..", so a key has no
//     leading, trailing or doubled '/'.
//
// The error wraps store.ErrInvalidKey and its message names the rule broken.
// It never quotes the key, which may be long or unprintable.
func ValidateKey(key string) error {
	if key == "" {
		return invalidKey("key must not be empty")
	}
	if len(key) > MaxKeyLen {
		return invalidKey(fmt.Sprintf("key is %d bytes, longer than the maximum of %d", len(key), MaxKeyLen))
	}
	if !utf8.ValidString(key) {
		return invalidKey("key must be valid UTF-8")
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x20 || c == 0x7f {
			return invalidKey(fmt.Sprintf("key must not contain control characters (byte 0x%02x at offset %d)", c, i))
		}
	}
	for seg := range strings.SplitSeq(key, "/") {
		switch seg {
		case "":
			return invalidKey("key must not have an empty segment (leading, trailing or doubled '/')")
		case ".", "..":
			return invalidKey("key must not have a '.' or '..' segment")
		}
	}
	return nil
}

func invalidKey(rule string) error {
	return fmt.Errorf("%w: %s", store.ErrInvalidKey, rule)
}
