// Package history records what concurrent clients of a key-value blob
// store did and saw, and checks that the record is linearizable.
//
// A history is a list of Op: a PUT of a unique value, a GET, or a DELETE
// of one key, with the client that sent it, the node it went to, its
// invocation and completion times on one monotonic clock, and its outcome.
// Recorder builds one from many goroutines; Check judges it.
//
// Outcomes. OK and NotFound are definite answers. Failed is a definite
// refusal with no effect (a 4xx). Unknown is an operation whose effect is
// not known (a timeout, a connection error, a 5xx, or no answer at all when
// the history was taken): it may have taken effect, at any moment after its
// invocation, even after the client gave up. Unknown is never treated as
// failed; see Check.
package history

import (
	"fmt"
	"slices"
	"sync"
	"time"
)

// Kind is what an operation does.
type Kind uint8

const (
	Put Kind = iota + 1
	Get
	Delete
)

func (k Kind) String() string {
	switch k {
	case Put:
		return "put"
	case Get:
		return "get"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Outcome is what a client learnt of its operation.
type Outcome uint8

const (
	// Pending: invoked, not returned (yet). Check treats it as Unknown.
	Pending Outcome = iota
	// OK: PUT stored the value, DELETE removed the key, GET read Got.
	OK
	// NotFound: GET or DELETE found the key absent; nothing changed.
	NotFound
	// Failed: refused with no effect (e.g. 400, 412).
	Failed
	// Unknown: may or may not have taken effect (timeout, connection
	// error, 5xx).
	Unknown
)

func (o Outcome) String() string {
	switch o {
	case Pending:
		return "pending"
	case OK:
		return "ok"
	case NotFound:
		return "not-found"
	case Failed:
		return "failed"
	case Unknown:
		return "unknown"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// definite reports whether the outcome is a definite answer about the
// store's state (OK or NotFound).
func (o Outcome) definite() bool { return o == OK || o == NotFound }

// Op is one operation of a history.
type Op struct {
	Client int    // the client (a goroutine issuing one op at a time), from 0
	Node   string // the node the client sent it to
	Kind   Kind
	Key    string
	Value  string // PUT: the value written (unique across the history)
	Got    string // GET with OK: the value read

	Outcome Outcome
	Err     string // why, for Failed and Unknown: a status or an error
	// Call and Return are times since the recorder's start, on the
	// monotonic clock. Return is when the client stopped waiting; for an
	// Unknown op it says nothing about when the op took effect.
	Call, Return time.Duration
	// Final marks a read of the final phase: after the workload and every
	// fault, to see what the store kept.
	Final bool
}

func (op Op) String() string {
	s := fmt.Sprintf("c%d@%s %s %q", op.Client, op.Node, op.Kind, op.Key)
	if op.Kind == Put {
		s += fmt.Sprintf(" %q", op.Value)
	}
	s += " -> " + op.Outcome.String()
	if op.Kind == Get && op.Outcome == OK {
		s += fmt.Sprintf(" %q", op.Got)
	}
	if op.Err != "" {
		s += " (" + op.Err + ")"
	}
	if op.Final {
		s += " [final]"
	}
	return fmt.Sprintf("%s [%v, %v]", s, op.Call, op.Return)
}

// Recorder collects a history from concurrent clients.
type Recorder struct {
	start time.Time // carries the monotonic reading every time is taken from

	mu    sync.Mutex // guards the fields below
	ops   []Op
	final bool // ops invoked from now on are Final
}

// NewRecorder returns an empty history whose clock starts now.
func NewRecorder() *Recorder { return &Recorder{start: time.Now()} }

// Call is an operation in flight: Invoke's handle for its Return.
type Call struct {
	r *Recorder
	i int
}

// Invoke records the invocation of an operation now. The caller must
// end it with exactly one Return (an op never returned stays Pending).
func (r *Recorder) Invoke(client int, node string, kind Kind, key, value string) Call {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, Op{
		Client: client, Node: node, Kind: kind, Key: key, Value: value,
		Call: time.Since(r.start), Final: r.final,
	})
	return Call{r: r, i: len(r.ops) - 1}
}

// Return records the completion of the call now: its outcome, what a GET
// read (got) and, for Failed and Unknown, why (err).
func (c Call) Return(outcome Outcome, got string, err error) {
	now := time.Since(c.r.start)
	c.r.mu.Lock()
	defer c.r.mu.Unlock()
	op := &c.r.ops[c.i]
	op.Return, op.Outcome, op.Got = now, outcome, got
	if err != nil {
		op.Err = err.Error()
	}
}

// BeginFinal marks every operation invoked from now on as Final.
func (r *Recorder) BeginFinal() {
	r.mu.Lock()
	r.final = true
	r.mu.Unlock()
}

// Ops returns a copy of the history in invocation order. An operation not
// yet returned is Pending, with Return the time of this call.
func (r *Recorder) Ops() []Op {
	now := time.Since(r.start)
	r.mu.Lock()
	defer r.mu.Unlock()
	ops := slices.Clone(r.ops)
	for i := range ops {
		if ops[i].Outcome == Pending {
			ops[i].Return = now
		}
	}
	return ops
}
