package main

import (
	"bytes"
	"net/http"
	"regexp"
	"strings"
	"testing"
)

func TestRunExitStatus(t *testing.T) {
	s := &memServer{}
	srv := newMemServer(t, s)
	var out, errOut bytes.Buffer
	if code := run([]string{"-addr", srv.URL, "-n", "50", "-size", "2KiB", "-c", "4"}, &out, &errOut); code != 0 {
		t.Fatalf("exit %d, want 0\n%s%s", code, &out, &errOut)
	}
	if !regexp.MustCompile(`prefix=bench/[0-9a-f]{8}/ `).MatchString(out.String()) {
		t.Errorf("default prefix not bench/<hex>/:\n%s", &out)
	}
	if !strings.Contains(out.String(), "size=2KiB") {
		t.Errorf("size not 2KiB:\n%s", &out)
	}

	s.fail = func(m, _ string) bool { return m == http.MethodDelete }
	out.Reset()
	if code := run([]string{"-addr", srv.URL, "-n", "5", "-json"}, &out, &errOut); code != 1 {
		t.Errorf("exit %d with failing deletes, want 1\n%s", code, &out)
	}

	for _, args := range [][]string{
		{"-size", "1XB"}, {"-ops", "put,post"}, {"-n", "0"}, {"extra"}, {"-nosuchflag"},
	} {
		if code := run(args, &out, &errOut); code != 2 {
			t.Errorf("run(%q) exit %d, want 2", args, code)
		}
	}
}
