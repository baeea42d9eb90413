package tests

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runHealthCmd runs `blobnode health` with args and returns its exit
// status and output.
func runHealthCmd(t *testing.T, args ...string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, blobnodeBin, append([]string{"health"}, args...)...)
	cmd.Env = nodeEnv()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee) && ctx.Err() == nil:
		return ee.ExitCode(), string(out)
	default:
		t.Fatalf("blobnode health: %v\n%s", err, out)
		return -1, ""
	}
}

// TestHealthCommand: `blobnode health` says a running node is ready and a
// stopped one unreachable, with exit status 0 and 1.
func TestHealthCommand(t *testing.T) {
	n := newNode(t)
	if code, out := runHealthCmd(t, "-addr", n.base); code != 0 || out != "ready\n" {
		t.Errorf("running node: exit %d, %q; want 0, \"ready\"", code, out)
	}
	n.stop()
	code, out := runHealthCmd(t, "-addr", n.base, "-timeout", "2s")
	if code != 1 || !strings.HasPrefix(out, "unreachable: dial tcp "+n.httpAddr) || strings.Count(out, "\n") != 1 {
		t.Errorf("stopped node: exit %d, %q; want 1, one line \"unreachable: dial tcp %s...\"", code, out, n.httpAddr)
	}
}
