package volume

import (
	"fmt"
	"math/rand"
	"os"
	"sync"
)

// Crash sweeps over one recorded run: test support beside MemDevice, for
// the crash tests of this package and of the packages above it.
//
// A crash test that counts the device operations of one run and then
// crashes other runs "at operation k" crashes at no fixed point once the
// run is concurrent: group commit, lazy transactions and timers schedule
// each run's writes and syncs differently. A Recorder records ONE run
// instead: every successful WriteAt (offset and bytes) and Sync in the
// order the device saw them, with the test's own events (for example
// "transaction 7 acknowledged") in the same order. Trace.Build then
// rebuilds, on a fresh MemDevice, the state a power cut leaves at any
// point of that run: it replays a prefix of the trace through WriteAt and
// Sync and calls MemDevice.Crash. Only syncs decide what is durable, so
// crashing once at every sync boundary, in every CrashMode, reaches every
// durable state the run can leave behind: CrashDropAll the state as of the
// last completed sync, CrashTearOne and CrashKeepRandom those in which part
// of the writes issued since then survive.
//
// A sweep's seed fixes its workload and its rng seeds, not the schedule of
// the run it records: running it again records another run. A failure
// names the crash state (CrashState.String) within the run that failed.

// FullSweepEnv names the environment variable that makes the crash sweeps
// run in full when set to "1": more recorded runs, longer ones, and more
// rng seeds per random crash mode. The default sweep still reaches every
// crash point of one recorded run per layer, and samples the seeds.
const FullSweepEnv = "BLOBNODE_FULL_SWEEP"

// FullSweep reports whether FullSweepEnv asks for the full crash sweeps.
func FullSweep() bool { return os.Getenv(FullSweepEnv) == "1" }

// TraceOpKind says what a TraceOp is.
type TraceOpKind uint8

const (
	// TraceWrite is a WriteAt that succeeded.
	TraceWrite TraceOpKind = iota + 1
	// TraceSync is a Sync that succeeded.
	TraceSync
	// TraceEvent is an event of the test's own (Recorder.Event).
	TraceEvent
)

func (k TraceOpKind) String() string {
	switch k {
	case TraceWrite:
		return "write"
	case TraceSync:
		return "sync"
	case TraceEvent:
		return "event"
	default:
		return fmt.Sprintf("TraceOpKind(%d)", int(k))
	}
}

// TraceOp is one entry of a Trace.
type TraceOp struct {
	Kind  TraceOpKind
	Off   int64  // TraceWrite: the absolute device offset
	Data  []byte // TraceWrite: a copy of the bytes written; never modified
	Event any    // TraceEvent: the value given to Recorder.Event
}

// Recorder is a Device that passes every call to the device it wraps and
// records the WriteAts and Syncs that succeed, and the test's events, in
// one order (see Trace).
//
// The recorder serialises WriteAt, Sync and Event: each runs to completion
// under one lock. The order of the trace is therefore the order in which
// the device applied them; a Sync covers exactly the writes before it in
// the trace (Device's durability contract); and an event lies after every
// operation that returned before Event was called and before every one
// that started after Event returned. The price is that the recorded run
// never overlaps two device calls, which is one of the schedules a real
// device allows. The wrapped device's calls must not wait for one another
// (a MemDevice sync hook that waits for a WriteAt would deadlock).
//
// A failed call is not recorded: on a MemDevice it has no effect, so the
// trace still replays exactly (a FileDevice write that fails part-way has
// effects the trace does not show). ReadAt, Size and Close are passed
// through unrecorded. All methods are safe for concurrent use.
type Recorder struct {
	dev Device

	mu  sync.Mutex // serialises WriteAt, Sync and Event; guards ops
	ops []TraceOp
}

var _ Device = (*Recorder)(nil)

// NewRecorder returns a Recorder over dev with an empty trace.
func NewRecorder(dev Device) *Recorder { return &Recorder{dev: dev} }

// ReadAt reads from the wrapped device.
func (r *Recorder) ReadAt(p []byte, off int64) (int, error) { return r.dev.ReadAt(p, off) }

// WriteAt writes to the wrapped device and, if that succeeded, records
// the write.
func (r *Recorder) WriteAt(p []byte, off int64) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n, err := r.dev.WriteAt(p, off)
	if err == nil {
		r.ops = append(r.ops, TraceOp{Kind: TraceWrite, Off: off, Data: append([]byte(nil), p...)})
	}
	return n, err
}

// Sync syncs the wrapped device and, if that succeeded, records the sync.
func (r *Recorder) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.dev.Sync()
	if err == nil {
		r.ops = append(r.ops, TraceOp{Kind: TraceSync})
	}
	return err
}

// Size returns the wrapped device's size.
func (r *Recorder) Size() int64 { return r.dev.Size() }

// Close closes the wrapped device.
func (r *Recorder) Close() error { return r.dev.Close() }

// Event records e, a value of the test's own, at the current position of
// the trace: after every operation that has returned. Tests record what
// they were told ("transaction 7 acknowledged") as soon as they are told,
// so that a crash state can be checked against what had been promised
// when the power was cut.
func (r *Recorder) Event(e any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ops = append(r.ops, TraceOp{Kind: TraceEvent, Event: e})
}

// Len returns the number of entries recorded so far; a test notes it
// where its workload begins, to sweep only the crash points after that.
func (r *Recorder) Len() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ops)
}

// Trace returns a copy of the trace recorded so far.
func (r *Recorder) Trace() Trace {
	r.mu.Lock()
	defer r.mu.Unlock()
	return Trace{Ops: append([]TraceOp(nil), r.ops...)}
}

// Trace is the recorded order of one run's device writes, syncs and test
// events. The zero value is an empty trace.
type Trace struct {
	Ops []TraceOp
}

// Syncs returns the number of syncs in the trace.
func (t Trace) Syncs() int {
	n := 0
	for _, op := range t.Ops {
		if op.Kind == TraceSync {
			n++
		}
	}
	return n
}

// CrashPoint is where a power cut strikes a recorded run: ops [0, Op) of
// the trace were issued (and the syncs among them completed), and op Op,
// a sync, did not complete; the writes since the sync before it are
// volatile. The last crash point of a trace has Op == len(Ops): the run
// ended, and the writes after its last sync are volatile.
type CrashPoint struct {
	Sync int // syncs completed: the number of syncs in Ops[:Op]
	Op   int
}

// CrashPoints returns the crash points at or after op from: one at every
// sync Ops[i] with i >= from, then one at the end of the trace. A test
// passes the Recorder.Len it noted when its workload began, so that the
// setup before it (formatting, say) is replayed but never crashed.
func (t Trace) CrashPoints(from int) []CrashPoint {
	var out []CrashPoint
	syncs := 0
	for i, op := range t.Ops {
		if op.Kind != TraceSync {
			continue
		}
		if i >= from {
			out = append(out, CrashPoint{Sync: syncs, Op: i})
		}
		syncs++
	}
	return append(out, CrashPoint{Sync: syncs, Op: len(t.Ops)})
}

// Events returns the events among Ops[:n], in order: what the test had
// been told when a power cut at op n struck.
func (t Trace) Events(n int) []any {
	var out []any
	for _, op := range t.Ops[:min(n, len(t.Ops))] {
		if op.Kind == TraceEvent {
			out = append(out, op.Event)
		}
	}
	return out
}

// Replay issues the writes and syncs of Ops[:n] on dev, in order; events
// are skipped.
func (t Trace) Replay(dev Device, n int) error {
	for i, op := range t.Ops[:min(n, len(t.Ops))] {
		switch op.Kind {
		case TraceWrite:
			if _, err := dev.WriteAt(op.Data, op.Off); err != nil {
				return fmt.Errorf("volume: replay trace op %d: %w", i, err)
			}
		case TraceSync:
			if err := dev.Sync(); err != nil {
				return fmt.Errorf("volume: replay trace op %d: %w", i, err)
			}
		}
	}
	return nil
}

// CrashState is one state a sweep checks: a crash point, and what the
// crash leaves of the volatile writes there.
type CrashState struct {
	CrashPoint
	Mode CrashMode
	// Seed seeds the rng that MemDevice.Crash draws from (see Rand);
	// CrashDropAll draws nothing.
	Seed int64
}

func (s CrashState) String() string {
	if s.Mode == CrashDropAll {
		return fmt.Sprintf("crash before sync %d (op %d), %v", s.Sync, s.Op, s.Mode)
	}
	return fmt.Sprintf("crash before sync %d (op %d), %v, rng seed %d", s.Sync, s.Op, s.Mode, s.Seed)
}

// Rand returns a fresh rng for the state's seed, for MemDevice.Crash.
func (s CrashState) Rand() *rand.Rand { return rand.New(rand.NewSource(s.Seed)) }

// CrashStates lists the states of a sweep: at every crash point at or
// after op from (see CrashPoints), CrashDropAll once, and each other mode
// of CrashModes once per rng seed, seedsPerMode seeds derived from seed.
// CrashDropAll is the only mode known to ignore its rng; a mode added
// later is sampled like the random ones.
func (t Trace) CrashStates(from, seedsPerMode int, seed int64) []CrashState {
	var out []CrashState
	for _, p := range t.CrashPoints(from) {
		for _, m := range CrashModes() {
			n := seedsPerMode
			if m == CrashDropAll {
				n = 1
			}
			for k := range n {
				s := seed ^ int64(p.Op)<<20 ^ int64(m)<<12 ^ int64(k)
				out = append(out, CrashState{CrashPoint: p, Mode: m, Seed: s})
			}
		}
	}
	return out
}

// Build puts dev, a fresh MemDevice of the recorded one's size and seed,
// into crash state s: it replays Ops[:s.Op] and crashes the device with
// s.Mode and s.Rand().
func (t Trace) Build(dev *MemDevice, s CrashState) error {
	if err := t.Replay(dev, s.Op); err != nil {
		return err
	}
	dev.Crash(s.Mode, s.Rand())
	return nil
}
