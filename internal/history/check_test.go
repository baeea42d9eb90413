package history

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// o builds an op on key "k" for client c: kind, PUT value or GET result
// ("" for none), outcome, and call and return times in milliseconds.
func o(c int, kind Kind, v string, out Outcome, call, ret int) Op {
	op := Op{Client: c, Node: "n1", Kind: kind, Key: "k", Outcome: out,
		Call: time.Duration(call) * time.Millisecond, Return: time.Duration(ret) * time.Millisecond}
	if kind == Put {
		op.Value = v
	} else {
		op.Got = v
	}
	return op
}

func final(op Op) Op { op.Final = true; return op }

func onKey(key string, op Op) Op { op.Key = key; return op }

func TestCheckPasses(t *testing.T) {
	for _, tc := range []struct {
		name string
		ops  []Op
	}{
		{"empty", nil},
		{"sequential", []Op{
			o(0, Get, "", NotFound, 0, 1),
			o(0, Put, "a", OK, 2, 3),
			o(0, Get, "a", OK, 4, 5),
			o(0, Delete, "", OK, 6, 7),
			o(0, Delete, "", NotFound, 8, 9),
			o(0, Get, "", NotFound, 10, 11),
		}},
		{"concurrent writes, reads see either order", []Op{
			o(0, Put, "a", OK, 0, 10),
			o(1, Put, "b", OK, 1, 11),
			o(2, Get, "b", OK, 2, 5), // b first, then a
			o(2, Get, "a", OK, 6, 12),
			o(3, Get, "a", OK, 13, 14),
		}},
		{"read concurrent with a write sees old or new", []Op{
			o(0, Put, "a", OK, 0, 1),
			o(0, Put, "b", OK, 10, 20),
			o(1, Get, "a", OK, 11, 12),
			o(2, Get, "b", OK, 13, 14),
		}},
		// Unknown is "possibly applied": seen, not seen, seen late.
		{"unknown put seen later", []Op{
			o(0, Put, "a", Unknown, 0, 5),
			o(1, Get, "", NotFound, 6, 7),
			o(1, Get, "a", OK, 100, 110),
		}},
		{"unknown put never seen", []Op{
			o(0, Put, "a", Unknown, 0, 5),
			final(o(1, Get, "", NotFound, 100, 110)),
		}},
		{"pending put seen", []Op{
			o(0, Put, "a", Pending, 0, 5),
			o(1, Get, "a", OK, 6, 7),
		}},
		{"unknown delete applied late", []Op{
			o(0, Put, "a", OK, 0, 1),
			o(1, Delete, "", Unknown, 2, 3),
			o(2, Get, "a", OK, 4, 5),
			final(o(2, Get, "", NotFound, 50, 51)),
		}},
		{"failed ops and failed reads have no effect", []Op{
			o(0, Put, "a", OK, 0, 1),
			o(0, Put, "x", Failed, 2, 3),
			o(0, Delete, "", Failed, 4, 5),
			o(0, Get, "", Unknown, 6, 7),
			final(o(0, Get, "a", OK, 8, 9)),
		}},
		{"keys are independent", []Op{
			onKey("k1", o(0, Put, "a", OK, 0, 1)),
			onKey("k2", o(1, Put, "b", OK, 2, 3)),
			final(onKey("k1", o(2, Get, "a", OK, 4, 5))),
			final(onKey("k2", o(2, Get, "b", OK, 6, 7))),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			res, err := Check(tc.ops, Options{VisualizeDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			if err := res.Err(); err != nil {
				t.Fatalf("a correct history failed: %v", err)
			}
			if res.Visualization != "" {
				t.Errorf("visualisation written for a passing history: %s", res.Visualization)
			}
			if !strings.HasSuffix(res.Summary, ": linearizable") {
				t.Errorf("summary %q", res.Summary)
			}
		})
	}
}

// TestCheckFails proves the checker can fail: each history breaks
// linearizability in one way, and the verdict must say so (and which).
func TestCheckFails(t *testing.T) {
	for _, tc := range []struct {
		name      string
		ops       []Op
		wantLost  bool
		wantNever bool
	}{
		{name: "stale read", ops: []Op{
			o(0, Put, "a", OK, 0, 10),
			o(0, Put, "b", OK, 20, 30),
			o(1, Get, "a", OK, 40, 50), // b was acknowledged before this began
		}},
		{name: "stale read on another node after a delete", ops: []Op{
			o(0, Put, "a", OK, 0, 10),
			o(0, Delete, "", OK, 20, 30),
			o(1, Get, "a", OK, 40, 50),
		}},
		{name: "read goes back in time", ops: []Op{
			o(0, Put, "a", OK, 0, 1),
			o(1, Put, "b", OK, 0, 100),
			o(2, Get, "b", OK, 10, 20),
			o(3, Get, "a", OK, 30, 40), // b was already visible
		}},
		{name: "lost acknowledged write", wantLost: true, ops: []Op{
			o(0, Put, "a", OK, 0, 10),
			o(1, Get, "a", OK, 11, 12),
			final(o(2, Get, "", NotFound, 100, 110)),
		}},
		{name: "lost acknowledged overwrite", wantLost: true, ops: []Op{
			o(0, Put, "a", OK, 0, 10),
			o(0, Put, "b", OK, 20, 30),
			final(o(1, Get, "a", OK, 100, 110)),
		}},
		{name: "lost acknowledged delete", wantLost: true, ops: []Op{
			o(0, Put, "a", OK, 0, 10),
			o(0, Delete, "", OK, 20, 30),
			final(o(1, Get, "a", OK, 100, 110)),
		}},
		{name: "read of a never-written value", wantNever: true, ops: []Op{
			o(0, Put, "a", OK, 0, 10),
			o(1, Get, "garbage", OK, 20, 30),
		}},
		{name: "read of a failed write", ops: []Op{
			o(0, Put, "a", Failed, 0, 10),
			o(1, Get, "a", OK, 20, 30),
		}},
		{name: "unknown write seen then unseen", ops: []Op{
			o(0, Put, "a", Unknown, 0, 5),
			o(1, Get, "a", OK, 10, 11),
			o(1, Get, "", NotFound, 12, 13),
		}},
		{name: "delete ok of an absent key", ops: []Op{
			o(0, Delete, "", OK, 0, 1),
		}},
		{name: "delete not-found of a present key", ops: []Op{
			o(0, Put, "a", OK, 0, 1),
			o(0, Delete, "", NotFound, 2, 3),
		}},
		{name: "read before the write was invoked", ops: []Op{
			o(1, Get, "a", OK, 0, 1),
			o(0, Put, "a", OK, 2, 3),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "report")
			res, err := Check(tc.ops, Options{VisualizeDir: dir})
			if err != nil {
				t.Fatal(err)
			}
			if res.Linearizable != porcupine.Illegal {
				t.Errorf("porcupine: %v, want Illegal", res.Linearizable)
			}
			if err := res.Err(); err == nil {
				t.Fatal("a broken history passed")
			}
			if got := len(res.Lost) > 0; got != tc.wantLost {
				t.Errorf("lost writes %q, want some: %v", res.Lost, tc.wantLost)
			}
			if got := len(res.NeverWritten) > 0; got != tc.wantNever {
				t.Errorf("never-written reads %v, want some: %v", res.NeverWritten, tc.wantNever)
			}
			if !strings.Contains(res.Summary, "NOT linearizable") {
				t.Errorf("summary %q", res.Summary)
			}
			for _, name := range []string{"history.html", "history.txt"} {
				if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() == 0 {
					t.Errorf("%s: %v", name, err)
				}
			}
			if res.Visualization != filepath.Join(dir, "history.html") {
				t.Errorf("Visualization %q", res.Visualization)
			}
		})
	}
}

// TestLostWriteNamesTheWrite checks the lost-write report on its own: it
// names the acknowledged write the final read missed, and stays quiet when
// an unknown write explains the read.
func TestLostWriteNamesTheWrite(t *testing.T) {
	lost, n := lostWrites([]Op{
		o(0, Put, "a", OK, 0, 10),
		o(1, Put, "b", Unknown, 5, 6),
		o(0, Put, "c", OK, 20, 30),
		final(o(2, Get, "a", OK, 100, 110)), // c replaced a: lost
		final(o(2, Get, "b", OK, 120, 130)), // b may have landed after c
		final(o(2, Get, "c", OK, 140, 150)),
	})
	if n != 3 || len(lost) != 1 || !strings.Contains(lost[0], `put "k" "c"`) {
		t.Fatalf("checked %d, lost %q; want 3 checked, one lost naming put c", n, lost)
	}
}

func TestCheckRefusesBadHistory(t *testing.T) {
	for _, ops := range [][]Op{
		{o(0, Put, "a", OK, 0, 1), o(1, Put, "a", OK, 2, 3)},
		{o(0, Put, "a", OK, 5, 1)},
		{{Kind: 0, Key: "k", Outcome: OK}},
	} {
		if _, err := Check(ops, Options{}); !errors.Is(err, ErrBadHistory) {
			t.Errorf("Check(%v): %v, want ErrBadHistory", ops, err)
		}
	}
}

func TestSummary(t *testing.T) {
	res, err := Check([]Op{
		o(0, Put, "a", OK, 0, 1),
		o(0, Put, "b", Unknown, 2, 3),
		o(0, Get, "a", OK, 4, 5),
		final(o(0, Get, "", Failed, 6, 7)),
		o(0, Delete, "", NotFound, 8, 9),
	}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The DELETE's 404 needs the key absent, but a was acknowledged and
	// nothing deleted it: illegal, and the summary says so.
	want := "5 ops: put 2 (ok 1, unknown 1), get 2 (ok 1, failed 1), delete 1 (not-found 1); 1 final reads: NOT linearizable"
	if res.Summary != want {
		t.Fatalf("summary\n%q, want\n%q", res.Summary, want)
	}
}

func TestRecorder(t *testing.T) {
	r := NewRecorder()
	const clients, each = 8, 50
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				call := r.Invoke(c, "n1", Get, "k", "")
				if i == each-1 && c == 0 {
					return // never returned: stays pending
				}
				call.Return(NotFound, "", nil)
			}
		}()
	}
	wg.Wait()
	r.BeginFinal()
	r.Invoke(0, "n2", Put, "k", "v").Return(Unknown, "", errors.New("timeout"))
	ops := r.Ops()
	if len(ops) != clients*each+1 {
		t.Fatalf("%d ops, want %d", len(ops), clients*each+1)
	}
	pending := 0
	for i, op := range ops {
		if op.Return < op.Call {
			t.Fatalf("op %d returns before its call: %v", i, op)
		}
		if i > 0 && op.Call < ops[i-1].Call {
			t.Fatalf("ops out of invocation order at %d", i)
		}
		if op.Outcome == Pending {
			pending++
		}
		if op.Final != (i == len(ops)-1) {
			t.Fatalf("op %d Final %v", i, op.Final)
		}
	}
	last := ops[len(ops)-1]
	if pending != 1 || last.Outcome != Unknown || last.Err != "timeout" || last.Node != "n2" {
		t.Fatalf("pending %d, last %v", pending, last)
	}
}

func TestAlwaysVisualize(t *testing.T) {
	dir := t.TempDir()
	res, err := Check([]Op{o(0, Put, "a", OK, 0, 1), o(1, Get, "a", OK, 2, 3)}, Options{VisualizeDir: dir, AlwaysVisualize: true})
	if err != nil || res.Err() != nil {
		t.Fatalf("%v, %v", err, res.Err())
	}
	if res.Visualization != filepath.Join(dir, "history.html") {
		t.Errorf("Visualization %q", res.Visualization)
	}
	for _, name := range []string{"history.html", "history.txt"} {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.Size() == 0 {
			t.Errorf("%s: %v", name, err)
		}
	}
}
