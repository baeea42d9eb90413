package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseConfigLogFormat(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string // "": refused
	}{
		{"default", nil, nil, logAuto},
		{"json", []string{"-log-format", "json"}, nil, logJSON},
		{"text", []string{"-log-format", "text"}, nil, logText},
		{"from the environment", nil, map[string]string{"BLOBNODE_LOG_FORMAT": "json"}, logJSON},
		{"a flag wins", []string{"-log-format", "text"}, map[string]string{"BLOBNODE_LOG_FORMAT": "json"}, logText},
		{"unknown", []string{"-log-format", "xml"}, nil, ""},
		{"unknown in the environment", nil, map[string]string{"BLOBNODE_LOG_FORMAT": "JSON "}, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(tc.args, func(k string) string { return tc.env[k] })
			switch {
			case tc.want == "" && err == nil:
				t.Fatalf("accepted, format %q", c.logFormat)
			case tc.want != "" && err != nil:
				t.Fatal(err)
			case c.logFormat != tc.want && tc.want != "":
				t.Fatalf("format %q, want %q", c.logFormat, tc.want)
			}
		})
	}
}

func TestNewLogger(t *testing.T) {
	for _, tc := range []struct {
		format   string
		terminal bool
		json     bool
	}{
		{logAuto, false, true},
		{logAuto, true, false},
		{logJSON, true, true},
		{logText, false, false},
	} {
		var buf bytes.Buffer
		log := newLogger(&buf, tc.format, slog.LevelInfo, tc.terminal)
		log.Debug("hidden")
		log.Info("serving", "http", "127.0.0.1:8080")
		line := strings.TrimSpace(buf.String())
		if strings.Contains(line, "\n") {
			t.Errorf("%s, terminal %v: more than one line: %q", tc.format, tc.terminal, line)
		}
		var rec map[string]any
		isJSON := json.Unmarshal([]byte(line), &rec) == nil
		if isJSON != tc.json {
			t.Errorf("%s, terminal %v: JSON %v, want %v: %q", tc.format, tc.terminal, isJSON, tc.json, line)
		}
		if isJSON && (rec["msg"] != "serving" || rec["level"] != "INFO" || rec["http"] != "127.0.0.1:8080") {
			t.Errorf("%s: record %v", tc.format, rec)
		}
		if !isJSON && !strings.Contains(line, "level=INFO msg=serving http=127.0.0.1:8080") {
			t.Errorf("%s: text line %q", tc.format, line)
		}
	}
}

func TestIsTerminal(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if isTerminal(f) || isTerminal(w) {
		t.Errorf("a file (%v) or a pipe (%v) taken for a terminal", isTerminal(f), isTerminal(w))
	}
	pty, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal to check the positive case: %v", err)
	}
	defer pty.Close()
	if !isTerminal(pty) {
		t.Error("a pseudo-terminal is not taken for a terminal")
	}
}
