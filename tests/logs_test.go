package tests

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// TestLogsJSONWhenNotATerminal: with stderr a file, the default log format
// is JSON, one record a line, Raft's records included as structured ones.
func TestLogsJSONWhenNotATerminal(t *testing.T) {
	n := newNode(t, "-log-format", "auto") // the default, over the harness's text
	n.stop()
	b, err := os.ReadFile(n.logPath)
	if err != nil {
		t.Fatal(err)
	}
	var serving, raftLeader bool
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if strings.HasPrefix(line, "=== start") { // the harness's own marker
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("not a JSON record: %v: %s", err, line)
		}
		msg, _ := rec["msg"].(string)
		serving = serving || msg == "serving"
		if rec["logger"] == "raft" {
			if strings.Contains(msg, "[INFO]") || strings.Contains(msg, "raft:") {
				t.Errorf("a Raft record still carries hclog's formatting: %s", line)
			}
			raftLeader = raftLeader || (msg == "entering leader state" && rec["leader"] != nil)
		}
	}
	if !serving || !raftLeader {
		t.Errorf("no serving record (%v) or no structured Raft \"entering leader state\" record (%v):\n%s", serving, raftLeader, b)
	}
}
