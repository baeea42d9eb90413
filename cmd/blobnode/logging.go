package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// Values of -log-format.
const (
	// logAuto is text when stderr is a terminal (a person reading), JSON
	// otherwise (a container's log driver, journald, a file, a pipe into a
	// collector).
	logAuto = "auto"
	logJSON = "json"
	logText = "text"
)

func checkLogFormat(f string) error {
	switch f {
	case logAuto, logJSON, logText:
		return nil
	}
	return fmt.Errorf("-log-format: %q, want json, text or auto", f)
}

// newLogger returns the node's logger writing to w in format (logAuto
// decides by terminal: whether w is a terminal) at level. Every record,
// Raft's own included, is one line: a JSON object, or slog's key=value
// text.
func newLogger(w io.Writer, format string, level slog.Level, terminal bool) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == logJSON || (format == logAuto && !terminal) {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// isTerminal reports whether f is a terminal (it answers the termios
// ioctl, as isatty(3) checks).
func isTerminal(f *os.File) bool {
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}
