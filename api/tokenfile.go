package api

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// Token file format (the file named by blobnode's -token-file):
//
//	# comment: a line whose first non-blank character is '#'
//	read   r3ad-only-token-for-the-dashboard
//	write  uploader-token-0123456789abcdef
//	admin  operator-token-fedcba9876543210
//
// One token per line: a scope (read, write or admin), blanks (spaces or
// tabs), the token, optional trailing blanks. Blank lines are skipped.
// A token is at least MinTokenLen and at most MaxTokenLen characters of
// RFC 6750's b64token alphabet (letters, digits and "-._~+/", then
// optional trailing '='), so it travels unchanged in an Authorization
// header. A token may appear only once. Any broken rule rejects the whole
// file with a *TokenFileError naming the line; the message never quotes
// the token, which is a secret.

// Bounds on a token's length.
const (
	MinTokenLen = 16
	MaxTokenLen = 512
)

// Errors wrapped by a *TokenFileError, one per broken rule.
var (
	ErrTokenSyntax    = errors.New("want \"<scope> <token>\"")
	ErrUnknownScope   = errors.New("unknown scope (want read, write or admin)")
	ErrTokenLength    = fmt.Errorf("token must be %d to %d characters", MinTokenLen, MaxTokenLen)
	ErrTokenAlphabet  = errors.New("token has a character outside A-Z a-z 0-9 - . _ ~ + / (and trailing =)")
	ErrDuplicateToken = errors.New("duplicate token")
	ErrNoTokens       = errors.New("no tokens")
)

// TokenFileError is a token file rejected at line Line (0 when the file as
// a whole is at fault, as with ErrNoTokens or a read error).
type TokenFileError struct {
	Line int
	Err  error
}

func (e *TokenFileError) Error() string {
	if e.Line == 0 {
		return "token file: " + e.Err.Error()
	}
	return fmt.Sprintf("token file line %d: %s", e.Line, e.Err)
}

func (e *TokenFileError) Unwrap() error { return e.Err }

// Tokens is an immutable set of bearer tokens and their scopes; it is an
// Authenticator. Tokens are kept only as SHA-256 digests: a lookup hashes
// the presented token first, so the time it takes does not depend on how
// many leading bytes the presented token shares with a real one, and the
// process memory holds no token in the clear.
type Tokens struct {
	scopes map[[sha256.Size]byte]Scope
}

// Scope implements Authenticator.
func (t *Tokens) Scope(token string) (Scope, bool) {
	s, ok := t.scopes[sha256.Sum256([]byte(token))]
	return s, ok
}

// Len returns the number of tokens.
func (t *Tokens) Len() int { return len(t.scopes) }

// ParseTokenFile reads a token file (format above) from r.
func ParseTokenFile(r io.Reader) (*Tokens, error) {
	t := &Tokens{scopes: map[[sha256.Size]byte]Scope{}}
	firstLine := map[[sha256.Size]byte]int{} // digest -> line it first appeared on
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), 4096) // a line longer than this cannot hold a valid token
	line := 0
	for sc.Scan() {
		line++
		text := strings.Trim(sc.Text(), " \t\r")
		if text == "" || text[0] == '#' {
			continue
		}
		fields := strings.FieldsFunc(text, func(c rune) bool { return c == ' ' || c == '\t' })
		if len(fields) != 2 {
			return nil, &TokenFileError{line, ErrTokenSyntax}
		}
		scope, err := ParseScope(fields[0])
		if err != nil {
			return nil, &TokenFileError{line, ErrUnknownScope}
		}
		tok := fields[1]
		if len(tok) < MinTokenLen || len(tok) > MaxTokenLen {
			return nil, &TokenFileError{line, ErrTokenLength}
		}
		if !isB64Token(tok) {
			return nil, &TokenFileError{line, ErrTokenAlphabet}
		}
		d := sha256.Sum256([]byte(tok))
		if first, dup := firstLine[d]; dup {
			return nil, &TokenFileError{line, fmt.Errorf("%w (first on line %d)", ErrDuplicateToken, first)}
		}
		firstLine[d] = line
		t.scopes[d] = scope
	}
	if err := sc.Err(); err != nil {
		// bufio.ErrTooLong comes from the line after the last one counted.
		return nil, &TokenFileError{line + 1, err}
	}
	if len(t.scopes) == 0 {
		return nil, &TokenFileError{0, ErrNoTokens}
	}
	return t, nil
}

// LoadTokenFile reads and parses the token file at path.
func LoadTokenFile(path string) (*Tokens, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("token file: %w", err)
	}
	defer f.Close()
	t, err := ParseTokenFile(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return t, nil
}

// isB64Token reports whether s matches RFC 6750's
// b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"=".
func isB64Token(s string) bool {
	i := 0
	for ; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
			c == '-' || c == '.' || c == '_' || c == '~' || c == '+' || c == '/') {
			break
		}
	}
	if i == 0 {
		return false
	}
	for ; i < len(s); i++ {
		if s[i] != '=' {
			return false
		}
	}
	return true
}
