package volume

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
)

// Default journal size bounds (see FormatOptions.JournalSize).
const (
	MinDefaultJournalSize = 1 << 20
	MaxDefaultJournalSize = 64 << 20
)

// FormatOptions configure Format.
type FormatOptions struct {
	Geometry    Geometry
	JournalSize int64    // 0 = default: clamp(VolumeSize/64, 1 MiB, 64 MiB) rounded to 4096; otherwise rounded up to 4096, at least MinJournalSize
	StateSize   int64    // bytes the allocator needs (computed by package space); rounded up to 4096
	UUID        [16]byte // zero = random (crypto/rand)
}

func alignUp(n int64) int64 { return (n + regionAlign - 1) / regionAlign * regionAlign }

// ComputeLayout returns the layout Format would use for opts: superblock
// [0,4096), journal, state region, heap, each starting on a 4096 boundary,
// the heap a whole number of lpages. It fails with ErrBadGeometry if the
// geometry is out of range or the regions do not fit with at least one
// lpage of heap.
func ComputeLayout(opts FormatOptions) (Layout, error) {
	return computeLayout(opts, FormatVersion)
}

// computeLayout is ComputeLayout for a volume of the given format version
// (tests make volumes of the versions this code still opens).
func computeLayout(opts FormatOptions, version uint32) (Layout, error) {
	g := opts.Geometry
	if err := g.Validate(); err != nil {
		return Layout{}, err
	}
	if opts.JournalSize < 0 || opts.StateSize < 0 {
		return Layout{}, fmt.Errorf("volume: negative journal (%d) or state (%d) size: %w", opts.JournalSize, opts.StateSize, ErrBadGeometry)
	}
	js := opts.JournalSize
	if js == 0 {
		js = min(max(g.VolumeSize/64, MinDefaultJournalSize), MaxDefaultJournalSize)
	}
	if js > g.VolumeSize || opts.StateSize > g.VolumeSize {
		return Layout{}, fmt.Errorf("volume: journal of %d or state of %d bytes exceeds the %d-byte volume: %w", js, opts.StateSize, g.VolumeSize, ErrBadGeometry)
	}
	js = max(alignUp(js), minJournalSize(version))
	l := Layout{JournalOffset: journalOffset(version), JournalSize: js}
	l.StateOffset = l.JournalOffset + l.JournalSize
	l.StateSize = alignUp(opts.StateSize)
	l.HeapOffset = l.StateOffset + l.StateSize
	lpage := g.LpageSize()
	if l.HeapOffset >= g.VolumeSize || (g.VolumeSize-l.HeapOffset)/lpage == 0 {
		return Layout{}, fmt.Errorf("volume: %d-byte volume has no room for one %d-byte lpage after %d bytes of superblock, journal and state: %w",
			g.VolumeSize, lpage, l.HeapOffset, ErrBadGeometry)
	}
	l.HeapSize = (g.VolumeSize - l.HeapOffset) / lpage * lpage
	return l, nil
}

// Format writes a new, empty volume onto dev: the journal header (an empty
// log), then the superblock, each followed by a Sync, so a valid superblock
// always points at an initialised journal. It does not touch the state
// region or the heap. The device must hold at least Geometry.VolumeSize
// bytes (ErrTruncated otherwise).
func Format(dev Device, opts FormatOptions) (Superblock, error) {
	return format(dev, opts, FormatVersion)
}

func format(dev Device, opts FormatOptions, version uint32) (Superblock, error) {
	if dev == nil {
		return Superblock{}, errors.New("volume: format: nil device")
	}
	l, err := computeLayout(opts, version)
	if err != nil {
		return Superblock{}, fmt.Errorf("volume: format: %w", err)
	}
	if size := dev.Size(); size < opts.Geometry.VolumeSize {
		return Superblock{}, fmt.Errorf("volume: format: device of %d bytes, volume of %d: %w", size, opts.Geometry.VolumeSize, ErrTruncated)
	}
	sb := Superblock{Version: version, UUID: opts.UUID, Geometry: opts.Geometry, Layout: l}
	if sb.UUID == ([16]byte{}) {
		if _, err := rand.Read(sb.UUID[:]); err != nil {
			return Superblock{}, fmt.Errorf("volume: format: uuid: %w", err)
		}
		sb.UUID[6] = sb.UUID[6]&0x0f | 0x40 // version 4
		sb.UUID[8] = sb.UUID[8]&0x3f | 0x80 // RFC 4122 variant
	}
	// Slot A holds generation 1; slot B is zeroed so that no header left by
	// an earlier format of this device can win.
	_, logArea := journalSlots(version)
	hdr := make([]byte, logArea)
	copy(hdr, encodeJournalHeader(journalHeader{generation: 1, nextSeq: 1}))
	if _, err := dev.WriteAt(hdr, l.JournalOffset); err != nil {
		return Superblock{}, fmt.Errorf("volume: format: write journal header: %w", err)
	}
	// No data mark either: a mark left by an earlier use of the device
	// would make replay skip writes this volume never made durable.
	if version >= 2 {
		if _, err := dev.WriteAt(make([]byte, markPages*regionAlign), SuperblockSize); err != nil {
			return Superblock{}, fmt.Errorf("volume: format: clear data mark: %w", err)
		}
	}
	if err := dev.Sync(); err != nil {
		return Superblock{}, fmt.Errorf("volume: format: %w", err)
	}
	if _, err := dev.WriteAt(EncodeSuperblock(sb), 0); err != nil {
		return Superblock{}, fmt.Errorf("volume: format: write superblock: %w", err)
	}
	if err := dev.Sync(); err != nil {
		return Superblock{}, fmt.Errorf("volume: format: %w", err)
	}
	return sb, nil
}

// Volume is an open volume: the superblock, the metadata journal and the
// heap. All methods are safe for concurrent use.
type Volume struct {
	dev      *poisonDevice
	sb       Superblock
	j        *Journal
	heapEnd  int64
	stateEnd int64

	// mu guards closed. Every method that touches dev holds it shared for
	// the duration, so Close (exclusive) never closes the device under an
	// I/O.
	mu     sync.RWMutex
	closed bool

	ds dataSync
}

// Open reads and validates the superblock, checks the geometry against
// expect (nil accepts any valid geometry), and opens the journal, replaying
// committed records a crash left unapplied. Opening a cleanly closed volume
// reads O(1) bytes: the superblock, the journal header slots and one
// record header. The Volume owns dev from here on: Close closes it (on
// error Open leaves it open).
func Open(dev Device, expect *Geometry) (*Volume, error) {
	if dev == nil {
		return nil, errors.New("volume: open: nil device")
	}
	size := dev.Size()
	if size < SuperblockSize {
		return nil, fmt.Errorf("volume: open: device of %d bytes: %w", size, ErrTruncated)
	}
	b := make([]byte, SuperblockSize)
	if err := readFull(dev, b, 0); err != nil {
		return nil, fmt.Errorf("volume: open: read superblock: %w", err)
	}
	sb, err := DecodeSuperblock(b)
	if err != nil {
		return nil, fmt.Errorf("volume: open: %w", err)
	}
	if size < sb.Geometry.VolumeSize {
		return nil, fmt.Errorf("volume: open: device of %d bytes, superblock says %d: %w", size, sb.Geometry.VolumeSize, ErrTruncated)
	}
	if expect != nil && *expect != sb.Geometry {
		return nil, fmt.Errorf("volume: open: volume has %v, expected %v: %w", sb.Geometry, *expect, ErrGeometryMismatch)
	}
	pdev := newPoisonDevice(dev)
	j, err := openJournal(pdev, sb)
	if err != nil {
		return nil, fmt.Errorf("volume: open: %w", err)
	}
	v := &Volume{
		dev:      pdev,
		sb:       sb,
		j:        j,
		heapEnd:  sb.Layout.HeapOffset + sb.Layout.HeapSize,
		stateEnd: sb.Layout.StateOffset + sb.Layout.StateSize,
	}
	v.ds.init(pdev)
	v.ds.markSlots = markSlots(sb.Version)
	var slots [2][markEncoded]byte
	for i, off := range v.ds.markSlots {
		if err := readFull(dev, slots[i][:], off); err != nil {
			j.close()
			return nil, fmt.Errorf("volume: open: read data mark: %w", err)
		}
	}
	v.ds.openMark, v.ds.markNext = readMark(slots[0][:], slots[1][:])
	v.ds.markWritten = v.ds.openMark
	return v, nil
}

// Err returns nil while the volume can make writes durable, and the
// ErrPoisoned error (naming the cause) once a sync of its device failed.
func (v *Volume) Err() error { return v.dev.Err() }

// Failed is closed when a sync of the device fails; Err then says why.
func (v *Volume) Failed() <-chan struct{} { return v.dev.failed }

// Superblock returns the volume's superblock.
func (v *Volume) Superblock() Superblock { return v.sb }

// Journal returns the metadata journal.
func (v *Volume) Journal() *Journal { return v.j }

// ReadMeta fills p from the state region at the absolute offset off. It
// sees every transaction whose Commit.Wait has returned nil.
func (v *Volume) ReadMeta(p []byte, off int64) error {
	if err := v.rlock(); err != nil {
		return err
	}
	defer v.mu.RUnlock()
	if !inRange(off, len(p), v.sb.Layout.StateOffset, v.stateEnd) {
		return fmt.Errorf("volume: read meta [%d,+%d) outside the state region: %w", off, len(p), ErrOutOfRange)
	}
	if err := readFull(v.dev, p, off); err != nil {
		return fmt.Errorf("volume: read meta: %w", err)
	}
	return nil
}

// WriteMetaDirect writes p into the state region at the absolute offset
// off without the journal, for bulk initialisation or rebuild; the caller
// calls Sync when done. It first checkpoints the journal, so no logged
// record can replay over the direct write after a crash. REQUIRES: no
// transaction is submitted concurrently.
func (v *Volume) WriteMetaDirect(p []byte, off int64) error {
	if err := v.rlock(); err != nil {
		return err
	}
	defer v.mu.RUnlock()
	if !inRange(off, len(p), v.sb.Layout.StateOffset, v.stateEnd) {
		return fmt.Errorf("volume: write meta [%d,+%d) outside the state region: %w", off, len(p), ErrOutOfRange)
	}
	if err := v.j.Checkpoint(context.Background()); err != nil {
		return fmt.Errorf("volume: write meta: %w", err)
	}
	if _, err := v.dev.WriteAt(p, off); err != nil {
		return fmt.Errorf("volume: write meta: %w", err)
	}
	return nil
}

// ReadAt reads heap bytes at the absolute offset off. A range not wholly
// inside the heap fails with ErrOutOfRange and reads nothing.
func (v *Volume) ReadAt(p []byte, off int64) (int, error) {
	if err := v.rlock(); err != nil {
		return 0, err
	}
	defer v.mu.RUnlock()
	if !inRange(off, len(p), v.sb.Layout.HeapOffset, v.heapEnd) {
		return 0, fmt.Errorf("volume: read [%d,+%d) outside the heap: %w", off, len(p), ErrOutOfRange)
	}
	return v.dev.ReadAt(p, off)
}

// WriteAt writes heap bytes at the absolute offset off. It is not
// journaled; SyncData makes it durable. A range not wholly inside the heap
// fails with ErrOutOfRange and writes nothing.
func (v *Volume) WriteAt(p []byte, off int64) (int, error) {
	if err := v.rlock(); err != nil {
		return 0, err
	}
	defer v.mu.RUnlock()
	if !inRange(off, len(p), v.sb.Layout.HeapOffset, v.heapEnd) {
		return 0, fmt.Errorf("volume: write [%d,+%d) outside the heap: %w", off, len(p), ErrOutOfRange)
	}
	return v.dev.WriteAt(p, off)
}

// SyncData makes every WriteAt that returned before the call durable.
// Concurrent callers share Device.Syncs: a caller returns after a Sync that
// started after its call began has completed. A done ctx ends the wait for
// a Sync started by another caller (not the Sync itself) with ctx.Err().
// A failed Sync fails every later SyncData too: after fdatasync reports an
// error the kernel may have dropped the dirty pages, so no later Sync can
// vouch for them; reopen the volume.
func (v *Volume) SyncData(ctx context.Context) error {
	if err := v.rlock(); err != nil {
		return err
	}
	defer v.mu.RUnlock()
	return v.ds.sync(ctx)
}

// SyncStats are the counters of SyncData.
type SyncStats struct {
	Calls uint64 // SyncData calls
	Syncs uint64 // Device.Syncs they shared
}

// SyncStats returns the counters of SyncData.
func (v *Volume) SyncStats() SyncStats {
	return SyncStats{Calls: v.ds.calls.Load(), Syncs: v.ds.syncs.Load()}
}

// Sync syncs the device, for use after WriteMetaDirect.
func (v *Volume) Sync() error {
	if err := v.rlock(); err != nil {
		return err
	}
	defer v.mu.RUnlock()
	if err := v.dev.Sync(); err != nil {
		return fmt.Errorf("volume: sync: %w", err)
	}
	return nil
}

// Close stops the journal goroutine after it has committed everything
// submitted, checkpoints the journal, syncs and closes the device. Close
// always stops the goroutine and closes the device, also when it returns
// an error. A second Close returns ErrClosed.
func (v *Volume) Close() error {
	v.mu.Lock()
	if v.closed {
		v.mu.Unlock()
		return ErrClosed
	}
	v.closed = true
	v.mu.Unlock()
	jerr := v.j.close()
	var serr error
	if jerr == nil {
		if err := v.dev.Sync(); err != nil {
			serr = fmt.Errorf("volume: close: %w", err)
		}
	}
	cerr := v.dev.Close()
	return errors.Join(jerr, serr, cerr)
}

func (v *Volume) rlock() error {
	v.mu.RLock()
	if v.closed {
		v.mu.RUnlock()
		return ErrClosed
	}
	return nil
}

// inRange reports whether [off, off+n) lies inside [lo, hi), without
// overflow.
func inRange(off int64, n int, lo, hi int64) bool {
	return off >= lo && off <= hi && int64(n) <= hi-off
}

// readFull reads exactly len(p) bytes at off.
func readFull(dev Device, p []byte, off int64) error {
	n, err := dev.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil || errors.Is(err, io.EOF) {
		err = io.ErrUnexpectedEOF
	}
	return fmt.Errorf("read %d bytes at %d: %w", len(p), off, err)
}

// dataSync batches Device.Sync calls across concurrent SyncData callers.
// Syncs are numbered from 1; started and completed are the numbers of the
// last Sync begun and finished. A caller arriving when started == s needs a
// Sync numbered s+1 or later to complete; whoever finds no Sync in flight
// runs the next one itself, so there is no goroutine to own.
type dataSync struct {
	dev Device

	mu        sync.Mutex // guards the fields below
	started   uint64
	completed uint64
	running   bool
	wake      chan struct{} // closed and replaced when a Sync completes
	failed    error         // sticky: the first Sync error
	waiting   int           // callers blocked on wake, for tests

	calls, syncs atomic.Uint64

	markSrc  func() uint64 // guarded by mu; see SetDataMarkSource
	openMark uint64        // durable at Open
	// Touched only by the one running sync leader.
	markSlots   [2]int64
	markWritten uint64
	markNext    int // index in markSlots of the slot to write next
}

func (s *dataSync) init(dev Device) {
	s.dev = dev
	s.wake = make(chan struct{})
}

func (s *dataSync) sync(ctx context.Context) error {
	s.calls.Add(1)
	s.mu.Lock()
	need := s.started + 1
	for s.completed < need && s.failed == nil {
		if !s.running {
			if err := ctx.Err(); err != nil {
				s.mu.Unlock()
				return err
			}
			s.running = true
			s.started++
			n := s.started
			src := s.markSrc
			s.mu.Unlock()
			err := s.syncMarked(src)
			s.syncs.Add(1)
			s.mu.Lock()
			s.running = false
			s.completed = n
			if err != nil && s.failed == nil {
				s.failed = fmt.Errorf("volume: sync data: %w", err)
			}
			close(s.wake)
			s.wake = make(chan struct{})
			continue
		}
		wake := s.wake
		s.waiting++
		s.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			s.mu.Lock()
			s.waiting--
			s.mu.Unlock()
			return ctx.Err()
		}
		s.mu.Lock()
		s.waiting--
	}
	err := s.failed
	s.mu.Unlock()
	return err
}
