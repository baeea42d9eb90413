package volume

import (
	"encoding/binary"
	"fmt"
	"io"
	"math/rand"
	"sync"
)

// memSector is the unit in which MemDevice loses or keeps unsynced writes
// on a crash.
const memSector = 512

// CrashMode selects what survives of the writes made since the last Sync
// when a MemDevice crashes.
type CrashMode int

const (
	// CrashDropAll loses every write since the last Sync.
	CrashDropAll CrashMode = iota
	// CrashKeepRandom splits each unsynced write into 512-byte sectors
	// (aligned to absolute multiples of 512; the first and last piece of an
	// unaligned write are partial sectors) and keeps each one independently
	// with probability 1/2, applying the kept ones in the original order.
	CrashKeepRandom
	// CrashTearOne keeps every unsynced write before one chosen at random,
	// keeps only a prefix of that one's sectors (possibly none, never all),
	// and loses every write after it.
	CrashTearOne
	// CrashTearGarbage is CrashTearOne where the sector at the tear reads
	// back as neither its old nor its new bytes (a sector whose write was
	// cut mid-way, as a disk without atomic sectors leaves it).
	CrashTearGarbage
)

// CrashModes returns every CrashMode that MemDevice implements, CrashDropAll
// first. The crash sweeps here and in the packages above run each of them,
// so a mode added to MemDevice must be added to this list (a test in this
// package fails while one is missing), and is then swept everywhere.
func CrashModes() []CrashMode {
	return []CrashMode{CrashDropAll, CrashKeepRandom, CrashTearOne, CrashTearGarbage}
}

func (m CrashMode) String() string {
	switch m {
	case CrashDropAll:
		return "drop-all"
	case CrashKeepRandom:
		return "keep-random"
	case CrashTearOne:
		return "tear-one"
	case CrashTearGarbage:
		return "tear-garbage"
	default:
		return fmt.Sprintf("CrashMode(%d)", int(m))
	}
}

// MemDevice is an in-memory Device that can crash, for tests of this and
// higher packages (in the manner of pebble's crashable MemFS).
//
// Bytes never written read as pseudo-random garbage derived from the seed,
// never zeros, so nothing can rely on zeroed space. The device keeps the
// current image (what ReadAt sees: every write applied) and, for each write
// not yet covered by a successful Sync, its old and new bytes; Crash rolls
// the unsynced writes back and re-applies the part of them the CrashMode
// lets survive.
//
// Every WriteAt and Sync is an operation, numbered from 1 over the device's
// life (Ops returns how many have been attempted). SetCrashAt(n) makes
// operation n and every later one fail with ErrCrashed, unapplied, until
// Crash: a test runs a workload that "dies" at an exact operation, then
// calls Crash and reopens.
//
// A Sync makes durable exactly the writes that had returned when Sync was
// called; writes issued while a Sync runs stay volatile. All methods are
// safe for concurrent use.
type MemDevice struct {
	seed int64
	size int64

	mu sync.Mutex // guards every field below
	// img is the current image.
	img []byte
	// pending holds the writes not yet covered by a successful Sync, in
	// issue order; pending[i] is write number base+i.
	pending []memWrite
	base    int64
	// epoch counts crashes; a Sync that straddles a Crash has no effect.
	epoch   uint64
	closed  bool
	ops     int64
	crashAt int64 // 0 = no crash point
	writes  int64 // applied WriteAt calls
	syncs   int64 // successful Sync calls
	// failWrites and failSyncs count successes left before ErrInjected;
	// negative = no fault. failOnce makes the failing Sync the only one.
	failWrites int64
	failSyncs  int64
	failOnce   bool
	// badReads are ranges [off, end) whose reads fail with ErrInjected.
	badReads [][2]int64
	syncHook func()
}

type memWrite struct {
	off      int64
	old, new []byte
}

var _ Device = (*MemDevice)(nil)

// NewMemDevice returns a device of size bytes (a negative size is taken as
// 0) whose never-written bytes are deterministic garbage derived from seed.
func NewMemDevice(size int64, seed int64) *MemDevice {
	if size < 0 {
		size = 0
	}
	d := &MemDevice{
		seed:       seed,
		size:       size,
		img:        make([]byte, size),
		failWrites: -1,
		failSyncs:  -1,
	}
	fillGarbage(d.img, uint64(seed))
	return d
}

// fillGarbage fills b with a splitmix64 stream.
func fillGarbage(b []byte, seed uint64) {
	x := seed
	next := func() uint64 {
		x += 0x9e3779b97f4a7c15
		z := x
		z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
		z = (z ^ (z >> 27)) * 0x94d049bb133111eb
		return z ^ (z >> 31)
	}
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, next())
		b = b[8:]
	}
	if len(b) > 0 {
		var tail [8]byte
		binary.LittleEndian.PutUint64(tail[:], next())
		copy(b, tail[:])
	}
}

// Size returns the device size.
func (d *MemDevice) Size() int64 { return d.size }

// ReadAt reads from the current image. Reads past the end return io.EOF.
func (d *MemDevice) ReadAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, ErrClosed
	}
	if off < 0 {
		return 0, fmt.Errorf("memdevice: read at %d: %w", off, ErrOutOfRange)
	}
	if off >= d.size {
		if len(p) == 0 {
			return 0, nil
		}
		return 0, io.EOF
	}
	for _, r := range d.badReads {
		if off < r[1] && off+int64(len(p)) > r[0] {
			return 0, fmt.Errorf("memdevice: read [%d,+%d): %w", off, len(p), ErrInjected)
		}
	}
	n := copy(p, d.img[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// WriteAt applies p to the current image and records it as unsynced.
// Writes outside the device fail with ErrOutOfRange.
func (d *MemDevice) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return 0, ErrClosed
	}
	d.ops++
	if d.crashAt > 0 && d.ops >= d.crashAt {
		return 0, fmt.Errorf("memdevice: write op %d: %w", d.ops, ErrCrashed)
	}
	if off < 0 || off > d.size || int64(len(p)) > d.size-off {
		return 0, fmt.Errorf("memdevice: write [%d,+%d) on a %d-byte device: %w", off, len(p), d.size, ErrOutOfRange)
	}
	if d.failWrites == 0 {
		return 0, fmt.Errorf("memdevice: write at %d: %w", off, ErrInjected)
	}
	if d.failWrites > 0 {
		d.failWrites--
	}
	d.writes++
	if len(p) == 0 {
		return 0, nil
	}
	w := memWrite{off: off, old: make([]byte, len(p)), new: make([]byte, len(p))}
	copy(w.old, d.img[off:])
	copy(w.new, p)
	copy(d.img[off:], p)
	d.pending = append(d.pending, w)
	return len(p), nil
}

// Sync makes every write that returned before the call durable. The sync
// hook, if set, runs after that set is fixed and before it is made
// durable, without the device lock held.
func (d *MemDevice) Sync() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return ErrClosed
	}
	d.ops++
	if d.crashAt > 0 && d.ops >= d.crashAt {
		op := d.ops
		d.mu.Unlock()
		return fmt.Errorf("memdevice: sync op %d: %w", op, ErrCrashed)
	}
	if d.failSyncs == 0 {
		// As Linux after a failed writeback: the pages it could not
		// write are dropped (reads see the durable bytes again), and the
		// error is reported to this one Sync.
		d.dropPendingLocked()
		if d.failOnce {
			d.failSyncs, d.failOnce = -1, false
		}
		d.mu.Unlock()
		return fmt.Errorf("memdevice: sync: %w", ErrInjected)
	}
	if d.failSyncs > 0 {
		d.failSyncs--
	}
	target := d.base + int64(len(d.pending))
	epoch := d.epoch
	hook := d.syncHook
	d.mu.Unlock()

	if hook != nil {
		hook()
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.epoch != epoch {
		return fmt.Errorf("memdevice: sync interrupted by a crash: %w", ErrCrashed)
	}
	if n := target - d.base; n > 0 {
		rest := copy(d.pending, d.pending[n:])
		clear(d.pending[rest:])
		d.pending = d.pending[:rest]
		d.base = target
	}
	d.syncs++
	return nil
}

// Close marks the device closed: every later call returns ErrClosed until
// Crash or Reopen. Unsynced writes stay unsynced.
func (d *MemDevice) Close() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return ErrClosed
	}
	d.closed = true
	return nil
}

// Reopen makes a closed device usable again without losing anything, like
// a clean restart of the process (not of the machine).
func (d *MemDevice) Reopen() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.closed = false
}

// dropPendingLocked loses every unsynced write: the image returns to the
// durable bytes. REQUIRES: d.mu held.
func (d *MemDevice) dropPendingLocked() {
	for i := len(d.pending) - 1; i >= 0; i-- {
		w := d.pending[i]
		copy(d.img[w.off:], w.old)
	}
	d.base += int64(len(d.pending))
	clear(d.pending)
	d.pending = d.pending[:0]
}

// Crash simulates a power cut and reboot: it discards the volatile state,
// leaves the durable image as chosen by mode (rng decides which sectors
// survive; a nil rng uses one derived from the device seed), clears the
// crash point and the injected faults, and makes the device usable again
// (also if it was closed). The sync hook is kept.
func (d *MemDevice) Crash(mode CrashMode, rng *rand.Rand) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if rng == nil {
		rng = rand.New(rand.NewSource(d.seed ^ int64(d.epoch+1)))
	}
	for i := len(d.pending) - 1; i >= 0; i-- {
		w := d.pending[i]
		copy(d.img[w.off:], w.old)
	}
	switch mode {
	case CrashKeepRandom:
		for _, w := range d.pending {
			for _, s := range sectorPieces(w.off, len(w.new)) {
				if rng.Intn(2) == 1 {
					copy(d.img[w.off+int64(s[0]):], w.new[s[0]:s[1]])
				}
			}
		}
	case CrashTearOne, CrashTearGarbage:
		if len(d.pending) > 0 {
			torn := rng.Intn(len(d.pending))
			for _, w := range d.pending[:torn] {
				copy(d.img[w.off:], w.new)
			}
			w := d.pending[torn]
			pieces := sectorPieces(w.off, len(w.new))
			keep := rng.Intn(len(pieces))
			if keep > 0 {
				end := pieces[keep-1][1]
				copy(d.img[w.off:], w.new[:end])
			}
			if mode == CrashTearGarbage {
				s := pieces[keep]
				fillGarbage(d.img[w.off+int64(s[0]):w.off+int64(s[1])], rng.Uint64())
			}
		}
	default: // CrashDropAll and unknown modes lose everything unsynced.
	}
	d.base += int64(len(d.pending))
	clear(d.pending)
	d.pending = d.pending[:0]
	d.epoch++
	d.closed = false
	d.crashAt = 0
	d.failWrites = -1
	d.failSyncs = -1
	d.failOnce = false
	d.badReads = nil
}

// sectorPieces splits [off, off+n) at absolute multiples of memSector and
// returns the pieces as [start, end) offsets relative to off.
func sectorPieces(off int64, n int) [][2]int {
	var out [][2]int
	start := 0
	for start < n {
		abs := off + int64(start)
		end := start + int(memSector-abs%memSector)
		if end > n {
			end = n
		}
		out = append(out, [2]int{start, end})
		start = end
	}
	return out
}

// SetCrashAt makes operation number op (a WriteAt or Sync; see Ops) and
// every later one fail with ErrCrashed without being applied. op <= 0
// removes the crash point. SetCrashAt(d.Ops()+1) crashes at the next
// operation.
func (d *MemDevice) SetCrashAt(op int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if op < 0 {
		op = 0
	}
	d.crashAt = op
}

// FailSyncAfter lets the next n Syncs succeed; every Sync after them
// returns ErrInjected until FailSyncAfter(-1) or Crash, a disk that stays
// broken. Each failing Sync drops the writes it could not make durable:
// reads see the durable bytes again. A negative n removes the fault.
func (d *MemDevice) FailSyncAfter(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failSyncs = int64(max(n, -1))
	d.failOnce = false
}

// FailSyncOnceAfter is Linux's failed writeback: the next n Syncs succeed,
// the one after them drops every unsynced write (reads see the durable
// bytes again) and returns ErrInjected, and later Syncs succeed again, so
// a caller that did not see the error is never told. Crash removes it.
func (d *MemDevice) FailSyncOnceAfter(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failSyncs = int64(max(n, -1))
	d.failOnce = n >= 0
}

// FailReads makes every ReadAt that overlaps [off, off+n) fail with
// ErrInjected, as an unreadable sector does, until Crash.
func (d *MemDevice) FailReads(off, n int64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.badReads = append(d.badReads, [2]int64{off, off + n})
}

// FailWritesAfter lets the next n WriteAts succeed; every WriteAt after
// them returns ErrInjected unapplied until FailWritesAfter(-1) or Crash. A
// negative n removes the fault.
func (d *MemDevice) FailWritesAfter(n int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failWrites = int64(max(n, -1))
}

// SetSyncHook installs fn to run inside every later Sync, after the set of
// writes that Sync covers is fixed and before it completes, without the
// device lock held; nil removes it. A test can block in the hook to hold a
// Sync in flight.
func (d *MemDevice) SetSyncHook(fn func()) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.syncHook = fn
}

// Ops returns the number of WriteAt and Sync calls attempted so far on an
// open device, including failed ones.
func (d *MemDevice) Ops() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.ops
}

// Writes returns the number of WriteAt calls applied.
func (d *MemDevice) Writes() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.writes
}

// Syncs returns the number of successful Sync calls.
func (d *MemDevice) Syncs() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.syncs
}

// Unsynced returns the number of writes not yet covered by a successful
// Sync.
func (d *MemDevice) Unsynced() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return len(d.pending)
}
