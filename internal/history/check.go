package history

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// How Check models the store: each key is an independent register (the
// history is partitioned by key), initially absent.
//
//	PUT v     OK: the key holds v.  Unknown: the same step, see below.
//	DELETE    OK: the key held a value and is now absent.
//	          NotFound: the key was absent (an observation, no change).
//	          Unknown: the key is now absent.
//	GET       OK v: the key held v.  NotFound: the key was absent.
//
// A Failed PUT or DELETE and a GET without a definite answer have no
// effect and are left out of the linearizability check.
//
// Unknown outcomes. An operation whose effect is unknown may have taken
// effect at any moment after its invocation, or never. It is given a return
// time after every other event of the history ("infinity"; porcupine
// issue #8, the model etcd's robustness tests use) and its step is the
// effect it would have, with no output to check. A linearization may then
// place it anywhere after its call: where it took effect, or after
// everything else, which is the same as never. So an unknown write is
// "possibly applied", never "failed": a later read of its value is legal,
// and so is a later read that does not see it. Each unknown write widens
// the search; keep them few per key.

// Options tunes Check.
type Options struct {
	// Timeout bounds the linearizability search (default 1 minute); past
	// it the result is inconclusive, which Result.Err reports as an error.
	Timeout time.Duration
	// VisualizeDir, if set, receives history.html (porcupine's
	// visualisation) and history.txt (one op a line) when a check fails.
	VisualizeDir string
	// AlwaysVisualize writes them for a passing history too (a report
	// anyone can read), not only for a failing one.
	AlwaysVisualize bool
}

// Result is Check's verdict.
type Result struct {
	// Linearizable is porcupine's answer: Ok, Illegal, or Unknown when
	// the search ran out of time.
	Linearizable porcupine.CheckResult
	// NeverWritten lists the reads of a value that no PUT wrote.
	NeverWritten []Op
	// Lost describes each final read that contradicts an acknowledged
	// write: the write must have been visible, and the read missed it.
	Lost []string
	// FinalReads counts the definite Final reads the lost-write check saw.
	FinalReads int
	// Visualization is the path of history.html, if one was written.
	Visualization string
	// Summary is one line: operations by kind and outcome, and the verdict.
	Summary string
}

// Err is nil when the history passed every check.
func (r *Result) Err() error {
	var errs []error
	switch r.Linearizable {
	case porcupine.Ok:
	case porcupine.Illegal:
		errs = append(errs, errors.New("history is not linearizable"))
	default:
		errs = append(errs, errors.New("linearizability check inconclusive: the search ran out of time"))
	}
	for _, op := range r.NeverWritten {
		errs = append(errs, fmt.Errorf("read of a value no PUT wrote: %v", op))
	}
	for _, s := range r.Lost {
		errs = append(errs, errors.New("acknowledged write lost: "+s))
	}
	if len(errs) == 0 {
		return nil
	}
	if r.Visualization != "" {
		errs = append(errs, errors.New("visualisation: "+r.Visualization))
	}
	return fmt.Errorf("%s: %w", r.Summary, errors.Join(errs...))
}

// ErrBadHistory is returned by Check for a history it cannot judge.
var ErrBadHistory = errors.New("history: bad history")

// Check judges a history: porcupine's linearizability check against the
// per-key register model; that no read returned a value no PUT wrote; and
// that no Final read contradicts an acknowledged write (a necessary
// condition porcupine also covers; this one names the lost write). Its
// error is for a malformed history or a failure to write the
// visualisation, not for a failed check: see Result.Err.
func Check(ops []Op, opt Options) (*Result, error) {
	if opt.Timeout <= 0 {
		opt.Timeout = time.Minute
	}
	written := make(map[string]bool)
	for _, op := range ops {
		switch op.Kind {
		case Put:
			if written[op.Value] {
				return nil, fmt.Errorf("%w: value %q written twice: each PUT must write a unique value", ErrBadHistory, op.Value)
			}
			written[op.Value] = true
		case Get, Delete:
		default:
			return nil, fmt.Errorf("%w: %v", ErrBadHistory, op)
		}
		if op.Outcome.definite() && op.Return < op.Call {
			return nil, fmt.Errorf("%w: returns before its call: %v", ErrBadHistory, op)
		}
	}
	res := &Result{}
	for _, op := range ops {
		if op.Kind == Get && op.Outcome == OK && !written[op.Got] {
			res.NeverWritten = append(res.NeverWritten, op)
		}
	}
	res.Lost, res.FinalReads = lostWrites(ops)

	model := registerModel()
	var info porcupine.LinearizationInfo
	res.Linearizable, info = porcupine.CheckOperationsVerbose(model, porcupineOps(ops), opt.Timeout)
	verdict := "linearizable"
	switch {
	case res.Linearizable == porcupine.Illegal:
		verdict = "NOT linearizable"
	case res.Linearizable != porcupine.Ok:
		verdict = "inconclusive (timed out)"
	}
	if len(res.NeverWritten) > 0 {
		verdict += fmt.Sprintf(", %d reads of unwritten values", len(res.NeverWritten))
	}
	if len(res.Lost) > 0 {
		verdict += fmt.Sprintf(", %d lost acknowledged writes", len(res.Lost))
	}
	res.Summary = summarize(ops) + ": " + verdict

	// Porcupine's search state after a timeout is not worth drawing.
	failed := res.Linearizable == porcupine.Illegal || len(res.NeverWritten) > 0 || len(res.Lost) > 0
	if (failed || opt.AlwaysVisualize) && opt.VisualizeDir != "" {
		if err := os.MkdirAll(opt.VisualizeDir, 0o755); err != nil {
			return res, fmt.Errorf("history: visualisation: %w", err)
		}
		var text strings.Builder
		for _, op := range ops {
			fmt.Fprintln(&text, op)
		}
		if err := os.WriteFile(filepath.Join(opt.VisualizeDir, "history.txt"), []byte(text.String()), 0o644); err != nil {
			return res, fmt.Errorf("history: %w", err)
		}
		if res.Linearizable != porcupine.Unknown {
			path := filepath.Join(opt.VisualizeDir, "history.html")
			if err := porcupine.VisualizePath(model, info, path); err != nil {
				return res, fmt.Errorf("history: visualisation: %w", err)
			}
			res.Visualization = path
		}
	}
	return res, nil
}

// summarize counts ops by kind and outcome, in one line.
func summarize(ops []Op) string {
	var n [Delete + 1][Unknown + 1]int
	final := 0
	for _, op := range ops {
		n[op.Kind][op.Outcome]++
		if op.Final {
			final++
		}
	}
	var parts []string
	for _, k := range []Kind{Put, Get, Delete} {
		var outs []string
		total := 0
		for o := Pending; o <= Unknown; o++ {
			if c := n[k][o]; c > 0 {
				outs = append(outs, fmt.Sprintf("%s %d", o, c))
				total += c
			}
		}
		if total > 0 {
			parts = append(parts, fmt.Sprintf("%s %d (%s)", k, total, strings.Join(outs, ", ")))
		}
	}
	return fmt.Sprintf("%d ops: %s; %d final reads", len(ops), strings.Join(parts, ", "), final)
}

// regState is one key's state: absent, or holding value.
type regState struct {
	present bool
	value   string
}

type regInput struct {
	kind       Kind
	key, value string
}

type regOutput struct {
	outcome Outcome // OK, NotFound or Unknown
	got     string
}

// opMeta labels an op in the visualisation.
type opMeta struct {
	client int
	node   string
	err    string
	final  bool
}

func registerModel() porcupine.Model {
	return porcupine.Model{
		Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
			byKey := make(map[string][]porcupine.Operation)
			for _, op := range history {
				k := op.Input.(regInput).key
				byKey[k] = append(byKey[k], op)
			}
			keys := make([]string, 0, len(byKey))
			for k := range byKey {
				keys = append(keys, k)
			}
			slices.Sort(keys)
			out := make([][]porcupine.Operation, 0, len(keys))
			for _, k := range keys {
				out = append(out, byKey[k])
			}
			return out
		},
		Init: func() any { return regState{} },
		Step: func(state, input, output any) (bool, any) {
			s, in, out := state.(regState), input.(regInput), output.(regOutput)
			return step(s, in, out)
		},
		DescribeOperation: func(input, output any) string {
			in, out := input.(regInput), output.(regOutput)
			var s string
			switch in.kind {
			case Put:
				s = fmt.Sprintf("put(%q)", in.value)
			default:
				s = in.kind.String() + "()"
			}
			switch {
			case out.outcome == Unknown:
				return s + " -> ?"
			case in.kind == Get && out.outcome == OK:
				return s + fmt.Sprintf(" -> %q", out.got)
			}
			return s + " -> " + out.outcome.String()
		},
		DescribeState: func(state any) string {
			s := state.(regState)
			if !s.present {
				return "absent"
			}
			return fmt.Sprintf("%q", s.value)
		},
		DescribeOperationMetadata: func(info any) string {
			m, ok := info.(opMeta)
			if !ok {
				return ""
			}
			s := fmt.Sprintf("client %d on %s", m.client, m.node)
			if m.err != "" {
				s += ": " + m.err
			}
			if m.final {
				s += " (final read)"
			}
			return s
		},
	}
}

// step is the register's sequential specification.
func step(s regState, in regInput, out regOutput) (bool, regState) {
	switch in.kind {
	case Put:
		// OK and Unknown alike: an unknown PUT is linearized where it
		// took effect, or after everything (never).
		return true, regState{present: true, value: in.value}
	case Delete:
		switch out.outcome {
		case OK:
			return s.present, regState{}
		case NotFound:
			return !s.present, s
		default: // Unknown
			return true, regState{}
		}
	case Get:
		if out.outcome == NotFound {
			return !s.present, s
		}
		return s.present && s.value == out.got, s
	}
	return false, s
}

// porcupineOps converts the ops the register model judges. Unknown (and
// Pending) writes return after every other event. A client whose op is
// unknown continues as a new client id in the visualisation, so no lane
// holds two overlapping ops (Jepsen's new process after a crash).
func porcupineOps(ops []Op) []porcupine.Operation {
	var end time.Duration
	for _, op := range ops {
		end = max(end, op.Call, op.Return)
	}
	infinity := int64(end) + 1
	if infinity <= 0 || infinity == math.MaxInt64 {
		infinity = math.MaxInt64 - 1
	}
	order := make([]int, len(ops))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(ops[a].Call, ops[b].Call) })
	lane := make(map[int]int) // client -> its current visualisation id
	next := 0
	var out []porcupine.Operation
	for _, i := range order {
		op := ops[i]
		unknown := op.Outcome == Unknown || op.Outcome == Pending
		judged := op.Outcome.definite() || (unknown && op.Kind != Get)
		if !judged {
			continue
		}
		id, ok := lane[op.Client]
		if !ok {
			id = next
			next++
			lane[op.Client] = id
		}
		ret := int64(op.Return)
		outcome := op.Outcome
		if unknown {
			ret, outcome = infinity, Unknown
			delete(lane, op.Client)
		}
		out = append(out, porcupine.Operation{
			ClientId: id,
			Input:    regInput{kind: op.Kind, key: op.Key, value: op.Value},
			Call:     int64(op.Call),
			Output:   regOutput{outcome: outcome, got: op.Got},
			Return:   ret,
			Metadata: opMeta{client: op.Client, node: op.Node, err: op.Err, final: op.Final},
		})
	}
	return out
}

// lostWrites checks each definite Final read against the writes of its key:
// the read must observe the effect of a write (or the initial absence) that
// nothing acknowledged had certainly replaced before the read began. It
// returns one description per read that does not, and the number of reads
// checked.
func lostWrites(ops []Op) (lost []string, checked int) {
	byKey := make(map[string][]Op)
	for _, op := range ops {
		if op.Kind == Put || op.Kind == Delete {
			if op.Outcome == OK || op.Outcome == Unknown || op.Outcome == Pending {
				byKey[op.Key] = append(byKey[op.Key], op)
			}
		}
	}
	const never = time.Duration(math.MaxInt64)
	end := func(w Op) time.Duration {
		if w.Outcome == OK {
			return w.Return
		}
		return never
	}
	for _, r := range ops {
		if !r.Final || r.Kind != Get || !r.Outcome.definite() {
			continue
		}
		checked++
		writes := byKey[r.Key]
		// replaced reports whether an acknowledged write began after t and
		// completed before r began.
		replaced := func(t time.Duration, self int) bool {
			for j, a := range writes {
				if j != self && a.Outcome == OK && a.Call > t && a.Return < r.Call {
					return true
				}
			}
			return false
		}
		ok := r.Outcome == NotFound && !replaced(-1, -1) // the initial absence
		var must []string
		for j, w := range writes {
			if w.Call > r.Return || replaced(end(w), j) {
				continue
			}
			if w.Outcome == OK {
				must = append(must, w.String())
			}
			switch {
			case w.Kind == Put && r.Outcome == OK && w.Value == r.Got,
				w.Kind == Delete && r.Outcome == NotFound:
				ok = true
			}
		}
		if !ok && len(must) > 0 {
			lost = append(lost, fmt.Sprintf("%v; it must have seen one of: %s", r, strings.Join(must, "; ")))
		}
	}
	return lost, checked
}
