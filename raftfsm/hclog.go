package raftfsm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"log/slog"
	"regexp"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
)

// newHCLogger routes the logs of hashicorp/raft (and raft-wal, the
// transport and the snapshot store, which share it) into l as structured
// records, under the logger name "raft".
func newHCLogger(l *slog.Logger) hclog.Logger {
	return newSlogHCLogger(l.Handler(), "raft")
}

// slogHCLogger is an hclog.Logger that emits each call as one slog record:
// hclog's level mapped to slog's (Trace is slog.LevelDebug-4, below
// Debug), the message as the record's message, the implied (With) and
// call key/value pairs as attributes, the logger's name as the attribute
// "logger", and one timestamp, the record's own.
//
// Which records are emitted is the handler's decision (its Enabled), so
// -log-level governs Raft's records like every other. SetLevel adds a
// floor on top, shared by every logger derived from the same root (With,
// Named, ResetNamed), as hclog.Logger's contract says. It is safe for
// concurrent use, as the handler is.
type slogHCLogger struct {
	h       slog.Handler
	name    string
	implied []any         // With pairs, already normalised (even length)
	floor   *atomic.Int32 // an hclog.Level; hclog.NoLevel: no floor
}

// logNameKey is the attribute holding the hclog logger's name.
const logNameKey = "logger"

func newSlogHCLogger(h slog.Handler, name string) *slogHCLogger {
	floor := new(atomic.Int32)
	floor.Store(int32(hclog.NoLevel))
	return &slogHCLogger{h: h, name: name, floor: floor}
}

// slogLevel maps an hclog level to slog's; ok is false for Off.
func slogLevel(l hclog.Level) (slog.Level, bool) {
	switch l {
	case hclog.Trace:
		return slog.LevelDebug - 4, true
	case hclog.Debug:
		return slog.LevelDebug, true
	case hclog.NoLevel, hclog.Info:
		return slog.LevelInfo, true
	case hclog.Warn:
		return slog.LevelWarn, true
	case hclog.Error:
		return slog.LevelError, true
	default: // hclog.Off and anything unknown
		return 0, false
	}
}

func (l *slogHCLogger) enabled(level hclog.Level) (slog.Level, bool) {
	sl, ok := slogLevel(level)
	if !ok {
		return 0, false
	}
	if f := hclog.Level(l.floor.Load()); f != hclog.NoLevel && level != hclog.NoLevel && level < f {
		return 0, false
	}
	return sl, l.h.Enabled(context.Background(), sl)
}

// Log implements hclog.Logger.
func (l *slogHCLogger) Log(level hclog.Level, msg string, args ...any) {
	sl, ok := l.enabled(level)
	if !ok {
		return
	}
	r := slog.NewRecord(time.Now(), sl, msg, 0)
	if l.name != "" {
		r.AddAttrs(slog.String(logNameKey, l.name))
	}
	r.AddAttrs(pairsToAttrs(l.implied)...)
	r.AddAttrs(pairsToAttrs(normalisePairs(args))...)
	_ = l.h.Handle(context.Background(), r) // a logger has nowhere to report its own failure
}

// normalisePairs makes args an even-length key/value list the way hclog
// does: a trailing value without a key gets the key hclog.MissingKey, a
// trailing hclog.CapturedStacktrace the key "stacktrace".
func normalisePairs(args []any) []any {
	if len(args)%2 == 0 {
		return args
	}
	last := args[len(args)-1]
	out := append([]any(nil), args[:len(args)-1]...)
	if st, ok := last.(hclog.CapturedStacktrace); ok {
		return append(out, "stacktrace", string(st))
	}
	return append(out, hclog.MissingKey, last)
}

// pairsToAttrs converts an even-length key/value list to attributes.
func pairsToAttrs(pairs []any) []slog.Attr {
	if len(pairs) == 0 {
		return nil
	}
	attrs := make([]slog.Attr, 0, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		attrs = append(attrs, slog.Any(keyString(pairs[i]), attrValue(pairs[i+1])))
	}
	return attrs
}

// keyString is k as an attribute key: hclog's keys are strings, anything
// else is printed. A key that is one of slog's own (raft logs a duration
// as "time") gets the prefix "hclog_", so a JSON record never has two
// "time" members.
func keyString(k any) string {
	s, ok := k.(string)
	if !ok {
		s = fmt.Sprint(k)
	}
	switch s {
	case slog.TimeKey, slog.LevelKey, slog.MessageKey, slog.SourceKey:
		return "hclog_" + s
	}
	return s
}

// attrValue renders hclog's special value types as hclog would and turns
// a fmt.Stringer (a *raft.Raft, a raft.RaftState) into its String(), so
// that a JSON handler neither marshals a struct's insides nor prints a
// state as a number. Errors, durations, times and plain values are left
// to the handler.
func attrValue(v any) (out any) {
	switch v := v.(type) {
	case nil, string, bool, int, int32, int64, uint, uint32, uint64, float64,
		error, time.Duration, time.Time, slog.LogValuer, slog.Value:
		return v
	case hclog.Format:
		if len(v) == 0 {
			return ""
		}
		if f, ok := v[0].(string); ok {
			return fmt.Sprintf(f, v[1:]...)
		}
		return fmt.Sprint(v...)
	case hclog.Hex:
		return fmt.Sprintf("0x%x", int(v))
	case hclog.Octal:
		return fmt.Sprintf("0%o", int(v))
	case hclog.Binary:
		return fmt.Sprintf("0b%b", int(v))
	case hclog.Quote:
		return string(v)
	case fmt.Stringer:
		defer func() {
			if recover() != nil { // e.g. a nil pointer whose String dereferences it
				out = fmt.Sprintf("%v", v)
			}
		}()
		return v.String()
	default:
		return v
	}
}

// Trace implements hclog.Logger.
func (l *slogHCLogger) Trace(msg string, args ...any) { l.Log(hclog.Trace, msg, args...) }

// Debug implements hclog.Logger.
func (l *slogHCLogger) Debug(msg string, args ...any) { l.Log(hclog.Debug, msg, args...) }

// Info implements hclog.Logger.
func (l *slogHCLogger) Info(msg string, args ...any) { l.Log(hclog.Info, msg, args...) }

// Warn implements hclog.Logger.
func (l *slogHCLogger) Warn(msg string, args ...any) { l.Log(hclog.Warn, msg, args...) }

// Error implements hclog.Logger.
func (l *slogHCLogger) Error(msg string, args ...any) { l.Log(hclog.Error, msg, args...) }

func (l *slogHCLogger) is(level hclog.Level) bool { _, ok := l.enabled(level); return ok }

// IsTrace implements hclog.Logger.
func (l *slogHCLogger) IsTrace() bool { return l.is(hclog.Trace) }

// IsDebug implements hclog.Logger.
func (l *slogHCLogger) IsDebug() bool { return l.is(hclog.Debug) }

// IsInfo implements hclog.Logger.
func (l *slogHCLogger) IsInfo() bool { return l.is(hclog.Info) }

// IsWarn implements hclog.Logger.
func (l *slogHCLogger) IsWarn() bool { return l.is(hclog.Warn) }

// IsError implements hclog.Logger.
func (l *slogHCLogger) IsError() bool { return l.is(hclog.Error) }

// ImpliedArgs implements hclog.Logger: the pairs given to With.
func (l *slogHCLogger) ImpliedArgs() []any { return append([]any(nil), l.implied...) }

// With implements hclog.Logger: a logger adding args to every record. A
// key given again replaces the earlier value, as in hclog.
func (l *slogHCLogger) With(args ...any) hclog.Logger {
	c := *l
	implied := append([]any(nil), l.implied...)
	add := normalisePairs(args)
	for i := 0; i+1 < len(add); i += 2 {
		key, replaced := keyString(add[i]), false
		for j := 0; j+1 < len(implied); j += 2 {
			if implied[j] == key {
				implied[j+1], replaced = add[i+1], true
				break
			}
		}
		if !replaced {
			implied = append(implied, key, add[i+1])
		}
	}
	c.implied = implied
	return &c
}

// Name implements hclog.Logger.
func (l *slogHCLogger) Name() string { return l.name }

// Named implements hclog.Logger: name is appended to the current name
// with a dot, as in hclog.
func (l *slogHCLogger) Named(name string) hclog.Logger {
	c := *l
	if c.name != "" {
		c.name += "." + name
	} else {
		c.name = name
	}
	return &c
}

// ResetNamed implements hclog.Logger.
func (l *slogHCLogger) ResetNamed(name string) hclog.Logger {
	c := *l
	c.name = name
	return &c
}

// SetLevel implements hclog.Logger: records below level are dropped by
// this logger and every logger related to it (hclog.NoLevel removes the
// floor); the handler's own level still applies.
func (l *slogHCLogger) SetLevel(level hclog.Level) { l.floor.Store(int32(level)) }

// GetLevel implements hclog.Logger: the lowest level that is emitted.
func (l *slogHCLogger) GetLevel() hclog.Level {
	for _, lv := range []hclog.Level{hclog.Trace, hclog.Debug, hclog.Info, hclog.Warn, hclog.Error} {
		if l.is(lv) {
			return lv
		}
	}
	return hclog.Off
}

// StandardLogger implements hclog.Logger.
func (l *slogHCLogger) StandardLogger(opts *hclog.StandardLoggerOptions) *log.Logger {
	return log.New(l.StandardWriter(opts), "", 0)
}

// StandardWriter implements hclog.Logger: each write is one record, its
// level forced or inferred from a "[LEVEL]" prefix as opts say (Info
// otherwise).
func (l *slogHCLogger) StandardWriter(opts *hclog.StandardLoggerOptions) io.Writer {
	if opts == nil {
		opts = &hclog.StandardLoggerOptions{}
	}
	return &stdlogWriter{l: l, opts: *opts}
}

type stdlogWriter struct {
	l    *slogHCLogger
	opts hclog.StandardLoggerOptions
}

// stdlogTimestamp matches what a timestamp at the start of a line looks
// like (hclog's InferLevelsWithTimestamp).
var stdlogTimestamp = regexp.MustCompile(`^[\d\s\:\/\.\+-TZ]*`)

func (w *stdlogWriter) Write(p []byte) (int, error) {
	line := string(bytes.TrimRight(p, " \t\n"))
	level := hclog.Info
	switch {
	case w.opts.ForceLevel != hclog.NoLevel:
		_, line = pickLevel(line)
		level = w.opts.ForceLevel
	case w.opts.InferLevels:
		if w.opts.InferLevelsWithTimestamp {
			line = line[stdlogTimestamp.FindStringIndex(line)[1]:]
		}
		level, line = pickLevel(line)
	}
	w.l.Log(level, line)
	return len(p), nil
}

// pickLevel strips a leading "[LEVEL]" from line and returns its level
// (Info without one).
func pickLevel(line string) (hclog.Level, string) {
	for _, p := range []struct {
		prefix string
		level  hclog.Level
	}{
		{"[TRACE]", hclog.Trace}, {"[DEBUG]", hclog.Debug}, {"[INFO]", hclog.Info},
		{"[WARN]", hclog.Warn}, {"[ERROR]", hclog.Error}, {"[ERR]", hclog.Error},
	} {
		if rest, ok := strings.CutPrefix(line, p.prefix); ok {
			return p.level, strings.TrimSpace(rest)
		}
	}
	return hclog.Info, line
}

var _ hclog.Logger = (*slogHCLogger)(nil)
