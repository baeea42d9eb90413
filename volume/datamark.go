package volume

import (
	"encoding/binary"
	"fmt"
)

// The data mark is a counter the volume's user attaches to data syncs
// (blobnode: the Raft index of the last blob the state machine wrote from
// the log). Its invariant: every heap write the user issued before the
// counter reached m is durable once the volume reports m durable. It lives
// in two ping-pong slots, written alternately, so that a torn write of one
// leaves the other. From format version 2 each slot has a page of its own
// between the superblock and the journal: writing a mark never rewrites
// the superblock's page, and no single torn page write can lose both
// slots. Version 1 volumes, formatted before those pages existed, keep the
// slots in sectors 2 and 3 of the superblock's page. A slot never written
// reads as no mark (0, nothing known), which is always safe.
const (
	markPages   = 2 // version >= 2: [SuperblockSize, +markPages*4096)
	markMagic   = "BNDMARK1"
	markEncoded = 8 + 8 + 4 // magic, mark, CRC32C of the first 16 bytes
)

// markSlots returns the offsets of the two mark slots of a volume of the
// given format version.
func markSlots(version uint32) [2]int64 {
	if version < 2 {
		return [2]int64{1024, 1536}
	}
	return [2]int64{SuperblockSize, SuperblockSize + regionAlign}
}

// journalOffset is where the journal region starts in a volume of the
// given format version.
func journalOffset(version uint32) int64 {
	if version < 2 {
		return SuperblockSize
	}
	return SuperblockSize + markPages*regionAlign
}

func encodeMark(m uint64) []byte {
	b := make([]byte, markEncoded)
	copy(b, markMagic)
	binary.LittleEndian.PutUint64(b[8:], m)
	binary.LittleEndian.PutUint32(b[16:], crc32c(b[:16]))
	return b
}

// decodeMark returns the slot's mark, or ok=false for anything that is not
// an intact slot (never written, torn, or garbage).
func decodeMark(b []byte) (m uint64, ok bool) {
	if len(b) < markEncoded || string(b[:8]) != markMagic ||
		binary.LittleEndian.Uint32(b[16:]) != crc32c(b[:16]) {
		return 0, false
	}
	return binary.LittleEndian.Uint64(b[8:]), true
}

// readMark decodes the two slots and returns the larger intact mark and
// the index of the slot to write next (the other one).
func readMark(slot0, slot1 []byte) (mark uint64, next int) {
	m0, ok0 := decodeMark(slot0)
	m1, ok1 := decodeMark(slot1)
	switch {
	case ok0 && (!ok1 || m0 >= m1):
		return m0, 1
	case ok1:
		return m1, 0
	}
	return 0, 0
}

// DataMark returns the data mark that was durable when the volume was
// opened (0 if none was ever recorded).
func (v *Volume) DataMark() uint64 { return v.ds.openMark }

// SetDataMarkSource makes every later data sync record src's value, read
// just before the sync starts, as the durable data mark (when it grew).
// The caller guarantees that every heap write it tagged with a value <= m
// had returned before src could return m. Call it once, before syncing.
func (v *Volume) SetDataMarkSource(src func() uint64) {
	v.ds.mu.Lock()
	defer v.ds.mu.Unlock()
	v.ds.markSrc = src
}

// syncMarked syncs the device and, if the source's mark grew, records it.
// The mark is read before the first Sync, so the writes it vouches for
// had returned, and written only after that Sync succeeded, then synced
// itself: a device may persist unsynced writes in any order, so a mark
// written beside its data could survive a crash that loses the data. The
// second Sync is paid only when the mark moved. Only the sync leader calls
// it, one at a time.
func (s *dataSync) syncMarked(src func() uint64) error {
	var m uint64
	if src != nil {
		m = src()
	}
	if err := s.dev.Sync(); err != nil {
		return err
	}
	if m <= s.markWritten {
		return nil
	}
	if _, err := s.dev.WriteAt(encodeMark(m), s.markSlots[s.markNext]); err != nil {
		return fmt.Errorf("write data mark: %w", err)
	}
	if err := s.dev.Sync(); err != nil {
		return err
	}
	s.markWritten = m
	s.markNext = 1 - s.markNext
	return nil
}
