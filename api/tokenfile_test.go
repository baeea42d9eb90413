package api

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseTokenFile(t *testing.T) {
	const (
		tokA = "aaaaaaaaaaaaaaaa" // exactly MinTokenLen
		tokB = "bbbbbbbbbbbbbbbbbbbb"
		tokC = "c-c.c_c~c+c/c0123=="
	)
	type want struct {
		token string
		scope Scope
	}
	for _, tc := range []struct {
		name    string
		file    string
		wants   []want // every token and its scope, when the file is valid
		err     error  // the rule broken, when it is not
		errLine int
	}{
		{name: "all scopes, comments, blanks, tabs, CRLF",
			file:  "# tokens\n\nread " + tokA + "\r\n  write\t" + tokB + "  \n\t# indented comment\nadmin " + tokC + "\n",
			wants: []want{{tokA, ScopeRead}, {tokB, ScopeWrite}, {tokC, ScopeAdmin}}},
		{name: "no trailing newline", file: "admin " + tokA, wants: []want{{tokA, ScopeAdmin}}},
		{name: "empty file", file: "", err: ErrNoTokens, errLine: 0},
		{name: "only comments", file: "# a\n\n# b\n", err: ErrNoTokens, errLine: 0},
		{name: "unknown scope", file: "read " + tokA + "\nsuperuser " + tokB + "\n", err: ErrUnknownScope, errLine: 2},
		{name: "scope is case-sensitive", file: "Read " + tokA + "\n", err: ErrUnknownScope, errLine: 1},
		{name: "short token", file: "# c\nread " + tokA[:MinTokenLen-1] + "\n", err: ErrTokenLength, errLine: 2},
		{name: "long token", file: "read " + strings.Repeat("x", MaxTokenLen+1) + "\n", err: ErrTokenLength, errLine: 1},
		{name: "duplicate token, other scope", file: "read " + tokA + "\nwrite " + tokB + "\nadmin " + tokA + "\n", err: ErrDuplicateToken, errLine: 3},
		{name: "scope without token", file: "read\n", err: ErrTokenSyntax, errLine: 1},
		{name: "three fields", file: "read " + tokA + " " + tokB + "\n", err: ErrTokenSyntax, errLine: 1},
		{name: "trailing comment is not a comment", file: "read " + tokA + " # mine\n", err: ErrTokenSyntax, errLine: 1},
		{name: "token with a quote", file: "read " + tokA + "\"\n", err: ErrTokenAlphabet, errLine: 1},
		{name: "token with = inside", file: "read aaaaaaaa=aaaaaaaa\n", err: ErrTokenAlphabet, errLine: 1},
		{name: "token of = only", file: "read ================\n", err: ErrTokenAlphabet, errLine: 1},
		{name: "non-ASCII token", file: "read aaaaaaaaaaaaaaaé\n", err: ErrTokenAlphabet, errLine: 1},
	} {
		toks, err := ParseTokenFile(strings.NewReader(tc.file))
		if tc.err != nil {
			var tfe *TokenFileError
			if !errors.Is(err, tc.err) || !errors.As(err, &tfe) || tfe.Line != tc.errLine {
				t.Errorf("%s: err %v; want %v on line %d", tc.name, err, tc.err, tc.errLine)
			}
			for _, w := range []string{tokA, tokB, tokC} {
				if err != nil && strings.Contains(err.Error(), w) {
					t.Errorf("%s: the error %q quotes a token", tc.name, err)
				}
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if toks.Len() != len(tc.wants) {
			t.Errorf("%s: %d tokens, want %d", tc.name, toks.Len(), len(tc.wants))
		}
		for _, w := range tc.wants {
			if s, ok := toks.Scope(w.token); !ok || s != w.scope {
				t.Errorf("%s: Scope(%q) = %v, %v; want %v", tc.name, w.token, s, ok, w.scope)
			}
		}
		for _, bad := range []string{"", tokA + "x", tokA[1:], strings.ToUpper(tokA)} {
			if s, ok := toks.Scope(bad); ok {
				t.Errorf("%s: Scope(%q) = %v; want no scope", tc.name, bad, s)
			}
		}
	}
}

func TestLoadTokenFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tokens")
	if err := os.WriteFile(path, []byte("write 0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	toks, err := LoadTokenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if s, ok := toks.Scope("0123456789abcdef"); !ok || s != ScopeWrite {
		t.Errorf("Scope = %v, %v", s, ok)
	}
	if _, err := LoadTokenFile(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v; want ErrNotExist", err)
	}
	bad := filepath.Join(dir, "bad")
	if err := os.WriteFile(bad, []byte("read short\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadTokenFile(bad); !errors.Is(err, ErrTokenLength) || !strings.Contains(err.Error(), bad) || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("bad file: %v; want the path, line 1 and ErrTokenLength", err)
	}
}

// FuzzParseTokenFile: any input either parses into tokens that each pass
// the file's own rules and are found again, or fails with a
// *TokenFileError naming a line within the input; it never panics.
func FuzzParseTokenFile(f *testing.F) {
	f.Add("read 0123456789abcdef\n")
	f.Add("# c\n\nwrite\tABCDEFGHIJKLMNOP==\r\nadmin a-b.c_d~e+f/g0123\n")
	f.Add("read aaaaaaaaaaaaaaaa\nread aaaaaaaaaaaaaaaa\n")
	f.Add("bogus x\n")
	f.Add(strings.Repeat("z", 5000))
	f.Fuzz(func(t *testing.T, file string) {
		toks, err := ParseTokenFile(strings.NewReader(file))
		if err != nil {
			var tfe *TokenFileError
			if !errors.As(err, &tfe) {
				t.Fatalf("error %v is not a *TokenFileError", err)
			}
			if lines := strings.Count(file, "\n") + 1; tfe.Line < 0 || tfe.Line > lines {
				t.Fatalf("error on line %d of a %d-line input", tfe.Line, lines)
			}
			return
		}
		seen := 0
		for line := range strings.Lines(file) {
			fields := strings.Fields(line)
			if len(fields) == 0 || strings.HasPrefix(fields[0], "#") {
				continue
			}
			if len(fields) != 2 {
				t.Fatalf("accepted line %q", line)
			}
			want, err := ParseScope(fields[0])
			if err != nil {
				t.Fatalf("accepted line %q with scope %q", line, fields[0])
			}
			if got, ok := toks.Scope(fields[1]); !ok || got != want || len(fields[1]) < MinTokenLen {
				t.Fatalf("line %q: Scope = %v, %v", line, got, ok)
			}
			seen++
		}
		if seen != toks.Len() || seen == 0 {
			t.Fatalf("%d token lines, %d tokens", seen, toks.Len())
		}
	})
}
