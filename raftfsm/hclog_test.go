package raftfsm

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"maps"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// lockedBuffer is a bytes.Buffer safe for a logger writing from Raft's
// goroutines while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// records decodes every JSON line written so far.
func (b *lockedBuffer) records(t testing.TB) []map[string]any {
	t.Helper()
	b.mu.Lock()
	data := append([]byte(nil), b.buf.Bytes()...)
	b.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(data), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("not a JSON record: %v: %s", err, line)
		}
		out = append(out, m)
	}
	return out
}

// jsonHCLogger is newHCLogger over a JSON handler at level into a buffer.
func jsonHCLogger(level slog.Level) (hclog.Logger, *lockedBuffer) {
	buf := &lockedBuffer{}
	l := slog.New(slog.NewJSONHandler(buf, &slog.HandlerOptions{Level: level}))
	return newHCLogger(l.With("component", "raft")), buf
}

func TestHCLoggerRecords(t *testing.T) {
	for _, tc := range []struct {
		name string
		log  func(hclog.Logger)
		want map[string]any // the record without "time"
	}{
		{
			name: "info with pairs",
			log: func(l hclog.Logger) {
				l.Info("entering follower state", "follower", "Node at 127.0.0.1:7080 [Follower]", "leader-id", "n2")
			},
			want: map[string]any{"level": "INFO", "msg": "entering follower state", "component": "raft", "logger": "raft",
				"follower": "Node at 127.0.0.1:7080 [Follower]", "leader-id": "n2"},
		},
		{
			name: "warn with an error and a number",
			log: func(l hclog.Logger) {
				l.Warn("failed to contact", "server-id", raft.ServerID("n3"), "time", 1500*time.Millisecond, "error", errors.New("dial tcp: refused"))
			},
			want: map[string]any{"level": "WARN", "msg": "failed to contact", "component": "raft", "logger": "raft",
				"server-id": "n3", "hclog_time": float64(1500 * time.Millisecond), "error": "dial tcp: refused"},
		},
		{
			name: "error, a Stringer is its String",
			log:  func(l hclog.Logger) { l.Error("bad state", "state", raft.Leader, "term", uint64(7)) },
			want: map[string]any{"level": "ERROR", "msg": "bad state", "component": "raft", "logger": "raft",
				"state": "Leader", "term": float64(7)},
		},
		{
			name: "debug",
			log:  func(l hclog.Logger) { l.Debug("lost leadership because received a requestVote with a newer term") },
			want: map[string]any{"level": "DEBUG", "msg": "lost leadership because received a requestVote with a newer term",
				"component": "raft", "logger": "raft"},
		},
		{
			name: "trace is below debug",
			log:  func(l hclog.Logger) { l.Trace("heartbeat", "peer", "n2") },
			want: map[string]any{"level": "DEBUG-4", "msg": "heartbeat", "component": "raft", "logger": "raft", "peer": "n2"},
		},
		{
			name: "Log at a level",
			log:  func(l hclog.Logger) { l.Log(hclog.Warn, "snapshot failed", "err", "disk") },
			want: map[string]any{"level": "WARN", "msg": "snapshot failed", "component": "raft", "logger": "raft", "err": "disk"},
		},
		{
			name: "With, Named",
			log: func(l hclog.Logger) {
				l.With("id", "1-2-3", "last-index", 9).Named("snapshot").Info("starting snapshot up to", "index", 9)
			},
			want: map[string]any{"level": "INFO", "msg": "starting snapshot up to", "component": "raft", "logger": "raft.snapshot",
				"id": "1-2-3", "last-index": float64(9), "index": float64(9)},
		},
		{
			name: "With replaces a key, ResetNamed",
			log:  func(l hclog.Logger) { l.With("a", 1).With("a", 2).ResetNamed("wal").Info("opened") },
			want: map[string]any{"level": "INFO", "msg": "opened", "component": "raft", "logger": "wal", "a": float64(2)},
		},
		{
			name: "a value without a key",
			log:  func(l hclog.Logger) { l.Info("odd", "k", "v", "lonely") },
			want: map[string]any{"level": "INFO", "msg": "odd", "component": "raft", "logger": "raft", "k": "v", hclog.MissingKey: "lonely"},
		},
		{
			name: "hclog's value types",
			log: func(l hclog.Logger) {
				l.Info("values", "fmt", hclog.Fmt("%d-%s", 4, "x"), "hex", hclog.Hex(255), "oct", hclog.Octal(8),
					"bin", hclog.Binary(5), "quote", hclog.Quote("a b"), "nilstringer", (*raft.Raft)(nil))
			},
			want: map[string]any{"level": "INFO", "msg": "values", "component": "raft", "logger": "raft",
				"fmt": "4-x", "hex": "0xff", "oct": "010", "bin": "0b101", "quote": "a b", "nilstringer": "<nil>"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l, buf := jsonHCLogger(slog.LevelDebug - 4)
			tc.log(l)
			recs := buf.records(t)
			if len(recs) != 1 {
				t.Fatalf("%d records, want 1: %v", len(recs), recs)
			}
			got := recs[0]
			if _, err := time.Parse(time.RFC3339Nano, got["time"].(string)); err != nil {
				t.Errorf("time: %v", err)
			}
			delete(got, "time")
			if !maps.Equal(got, tc.want) {
				t.Errorf("record\n got %v\nwant %v", got, tc.want)
			}
		})
	}
}

func TestHCLoggerLevels(t *testing.T) {
	l, buf := jsonHCLogger(slog.LevelDebug)
	if l.IsTrace() || !l.IsDebug() || !l.IsInfo() || !l.IsWarn() || !l.IsError() {
		t.Errorf("at the handler's Debug: IsTrace %v IsDebug %v IsInfo %v", l.IsTrace(), l.IsDebug(), l.IsInfo())
	}
	if got := l.GetLevel(); got != hclog.Debug {
		t.Errorf("GetLevel = %v, want debug", got)
	}
	l.Trace("hidden")
	child := l.Named("wal").With("k", "v")
	child.SetLevel(hclog.Warn) // a floor shared by related loggers
	l.Info("hidden too")
	l.Warn("shown")
	if got := l.GetLevel(); got != hclog.Warn {
		t.Errorf("GetLevel after SetLevel(Warn) = %v", got)
	}
	l.SetLevel(hclog.NoLevel)
	child.Info("shown again")
	l.SetLevel(hclog.Off)
	l.Error("never")
	if l.IsError() || l.GetLevel() != hclog.Off {
		t.Errorf("after SetLevel(Off): IsError %v, GetLevel %v", l.IsError(), l.GetLevel())
	}
	var msgs []string
	for _, r := range buf.records(t) {
		msgs = append(msgs, r["msg"].(string))
	}
	if want := "shown,shown again"; strings.Join(msgs, ",") != want {
		t.Errorf("messages %q, want %q", msgs, want)
	}
	if got := l.With("a", 1, "b").ImpliedArgs(); len(got) != 4 || got[0] != "a" || got[1] != 1 || got[2] != hclog.MissingKey || got[3] != "b" {
		t.Errorf("ImpliedArgs = %v, want [a 1 %s b]", got, hclog.MissingKey)
	}
}

func TestHCLoggerStandardWriter(t *testing.T) {
	for _, tc := range []struct {
		opts      *hclog.StandardLoggerOptions
		line      string
		level     string
		msg       string
		viaLogger bool // through StandardLogger rather than the writer
	}{
		{nil, "plain line\n", "INFO", "plain line", false},
		{&hclog.StandardLoggerOptions{InferLevels: true}, "[WARN] disk slow", "WARN", "disk slow", false},
		{&hclog.StandardLoggerOptions{InferLevels: true}, "[ERR] broken", "ERROR", "broken", true},
		{&hclog.StandardLoggerOptions{InferLevels: true, InferLevelsWithTimestamp: true}, "2024/01/02 03:04:05 [DEBUG] x", "DEBUG", "x", false},
		{&hclog.StandardLoggerOptions{ForceLevel: hclog.Error}, "[INFO] forced", "ERROR", "forced", true},
	} {
		l, buf := jsonHCLogger(slog.LevelDebug)
		if tc.viaLogger {
			l.StandardLogger(tc.opts).Print(tc.line)
		} else if _, err := l.StandardWriter(tc.opts).Write([]byte(tc.line)); err != nil {
			t.Fatal(err)
		}
		recs := buf.records(t)
		if len(recs) != 1 || recs[0]["level"] != tc.level || recs[0]["msg"] != tc.msg {
			t.Errorf("%q with %+v: records %v, want one %s %q", tc.line, tc.opts, recs, tc.level, tc.msg)
		}
	}
}

// nopFSM is the smallest raft.FSM, for a Raft that only has to elect itself.
type nopFSM struct{}

func (nopFSM) Apply(*raft.Log) any                 { return nil }
func (nopFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, errors.New("no snapshots") }
func (nopFSM) Restore(io.ReadCloser) error         { return nil }

// TestHCLoggerRaft runs hashicorp/raft itself over the adapter: its own
// records arrive as structured records, not as hclog's formatted lines.
func TestHCLoggerRaft(t *testing.T) {
	l, buf := jsonHCLogger(slog.LevelInfo)
	rc := raft.DefaultConfig()
	rc.LocalID = "n1"
	rc.HeartbeatTimeout, rc.ElectionTimeout, rc.LeaderLeaseTimeout = 50*time.Millisecond, 50*time.Millisecond, 50*time.Millisecond
	rc.Logger = l
	store := raft.NewInmemStore()
	snaps := raft.NewInmemSnapshotStore()
	addr, trans := raft.NewInmemTransport("n1-addr")
	conf := raft.Configuration{Servers: []raft.Server{{ID: "n1", Address: addr}}}
	if err := raft.BootstrapCluster(rc, store, store, snaps, trans, conf); err != nil {
		t.Fatal(err)
	}
	r, err := raft.NewRaft(rc, nopFSM{}, store, store, snaps, trans)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Shutdown()
	deadline := time.Now().Add(10 * time.Second)
	for r.State() != raft.Leader {
		if time.Now().After(deadline) {
			t.Fatalf("no leader after 10s; log:\n%v", buf.records(t))
		}
		time.Sleep(5 * time.Millisecond)
	}
	var follower, leader map[string]any
	for _, rec := range buf.records(t) {
		if rec["logger"] != "raft" || rec["component"] != "raft" {
			t.Errorf("record without logger=raft component=raft: %v", rec)
		}
		msg := rec["msg"].(string)
		if strings.Contains(msg, "[INFO]") || strings.Contains(msg, "raft:") || (msg != "" && msg[0] >= '0' && msg[0] <= '9') {
			t.Errorf("message still carries hclog's formatting: %q", msg)
		}
		switch msg {
		case "entering follower state":
			follower = rec
		case "entering leader state":
			leader = rec
		}
	}
	if follower == nil || leader == nil {
		t.Fatalf("missing follower or leader record: %v", buf.records(t))
	}
	if f, _ := follower["follower"].(string); follower["level"] != "INFO" || !strings.Contains(f, "n1-addr") ||
		!strings.Contains(f, "Follower") {
		t.Errorf("follower record: %v", follower)
	}
	if _, ok := follower["leader-id"]; !ok {
		t.Errorf("follower record has no leader-id attribute: %v", follower)
	}
	if _, ok := leader["leader"]; !ok {
		t.Errorf("leader record has no leader attribute: %v", leader)
	}
}
