package volume

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Frozen journal format; see the package documentation.
const (
	// MinJournalSize is the smallest journal region of a new volume: the
	// two header pages plus one 4 KiB page of log.
	MinJournalSize = 3 * regionAlign

	headerSlotSize = 512          // the encoded part of one journal header slot
	headerMagic    = "BNJH"       // journal header slot magic
	headerCRCOff   = 20           // CRC32C over [0, headerCRCOff)
	recordMagic    = "BNJR"       // record header magic
	recordHdrSize  = 32           // record header bytes
	recordCRCOff   = 28           // header CRC32C over [0, recordCRCOff)
	recordAlign    = 512          // records start and end on sector boundaries
	entryHdrSize   = 12           // offset u64 + length u32
	maxGroupBytes  = 4 << 20      // soft bound on one record's payload
	maxRecordBytes = 1<<32 - 1024 // payloadLen is a u32
)

// journalSlots returns where, relative to the journal region, the two
// header slots and the log area of a volume of the given format version
// start. From version 3 each slot has a page of its own: both are
// rewritten at every checkpoint, and a torn page write must never be able
// to damage both, which would leave a journal no Open can trust. Versions
// 1 and 2 keep both slots in the region's first page (A at +0, B at +512).
func journalSlots(version uint32) (slots [2]int64, logArea int64) {
	if version < 3 {
		return [2]int64{0, headerSlotSize}, regionAlign
	}
	return [2]int64{0, regionAlign}, 2 * regionAlign
}

// minJournalSize is the smallest journal region of the given format
// version: its header slots plus one page of log.
func minJournalSize(version uint32) int64 {
	_, logArea := journalSlots(version)
	return logArea + regionAlign
}

// journalHeader is one decoded header slot.
type journalHeader struct {
	generation uint64
	nextSeq    uint64 // sequence number of the record at the log start
}

func encodeJournalHeader(h journalHeader) []byte {
	b := make([]byte, headerSlotSize)
	le := binary.LittleEndian
	copy(b[0:4], headerMagic)
	le.PutUint64(b[4:12], h.generation)
	le.PutUint64(b[12:20], h.nextSeq)
	le.PutUint32(b[headerCRCOff:], crc32c(b[:headerCRCOff]))
	return b
}

func decodeJournalHeader(b []byte) (journalHeader, bool) {
	if len(b) < headerCRCOff+4 || string(b[0:4]) != headerMagic {
		return journalHeader{}, false
	}
	le := binary.LittleEndian
	if crc32c(b[:headerCRCOff]) != le.Uint32(b[headerCRCOff:]) {
		return journalHeader{}, false
	}
	return journalHeader{generation: le.Uint64(b[4:12]), nextSeq: le.Uint64(b[12:20])}, true
}

// volumeTag binds journal records to one volume, so that records left in
// the log area by an earlier format of the same file are never replayed.
func volumeTag(uuid [16]byte) uint64 {
	le := binary.LittleEndian
	return le.Uint64(uuid[0:8]) ^ le.Uint64(uuid[8:16])
}

// recordHeader is a decoded record header.
type recordHeader struct {
	seq        uint64
	payloadLen uint32
	payloadCRC uint32
}

// size returns the record's size on disk, padding included.
func (h recordHeader) size() int64 { return recordSize(int64(h.payloadLen)) }

// recordSize returns the padded on-disk size of a record with a payload of
// n bytes.
func recordSize(n int64) int64 {
	return (recordHdrSize + n + recordAlign - 1) / recordAlign * recordAlign
}

// decodeRecordHeader parses a record header and checks its magic, its CRC
// and the volume tag. It does not look at the sequence number.
func decodeRecordHeader(b []byte, tag uint64) (recordHeader, bool) {
	if len(b) < recordHdrSize || string(b[0:4]) != recordMagic {
		return recordHeader{}, false
	}
	le := binary.LittleEndian
	if crc32c(b[:recordCRCOff]) != le.Uint32(b[recordCRCOff:]) {
		return recordHeader{}, false
	}
	if le.Uint64(b[20:28]) != tag {
		return recordHeader{}, false
	}
	return recordHeader{
		seq:        le.Uint64(b[4:12]),
		payloadLen: le.Uint32(b[12:16]),
		payloadCRC: le.Uint32(b[16:20]),
	}, true
}

// sealRecord turns rec, whose first recordHdrSize bytes are reserved for
// the header and whose rest is the payload, into a complete record: it
// zero-pads rec to a multiple of recordAlign and fills in the header.
// REQUIRES: len(rec) >= recordHdrSize and the payload fits in a u32.
func sealRecord(rec []byte, seq, tag uint64) []byte {
	payload := rec[recordHdrSize:]
	n := len(rec)
	padded := int(recordSize(int64(len(payload))))
	rec = append(rec, make([]byte, padded-n)...)
	le := binary.LittleEndian
	copy(rec[0:4], recordMagic)
	le.PutUint64(rec[4:12], seq)
	le.PutUint32(rec[12:16], uint32(len(payload)))
	le.PutUint32(rec[16:20], crc32c(payload))
	le.PutUint64(rec[20:28], tag)
	le.PutUint32(rec[recordCRCOff:], crc32c(rec[:recordCRCOff]))
	return rec
}

var errMalformed = errors.New("malformed payload")

// walkEntries calls fn for each (offset, bytes) entry of an entry list (the
// part of a payload after its count, and the encoding Txn accumulates), in
// order, and returns how many there were. It fails on a truncated entry; it
// never panics.
func walkEntries(b []byte, fn func(off int64, data []byte) error) (int, error) {
	le := binary.LittleEndian
	n := 0
	for len(b) > 0 {
		if len(b) < entryHdrSize {
			return n, fmt.Errorf("%w: %d stray bytes after entry %d", errMalformed, len(b), n)
		}
		off := le.Uint64(b[0:8])
		l := uint64(le.Uint32(b[8:12]))
		b = b[entryHdrSize:]
		if l > uint64(len(b)) {
			return n, fmt.Errorf("%w: entry %d claims %d bytes, %d left", errMalformed, n, l, len(b))
		}
		if fn != nil {
			if err := fn(int64(off), b[:l:l]); err != nil {
				return n, err
			}
		}
		b = b[l:]
		n++
	}
	return n, nil
}

// walkPayload checks a record payload (count u32, then the entries) and
// calls fn for each entry in order. The count must match the entries.
func walkPayload(p []byte, fn func(off int64, data []byte) error) error {
	if len(p) < 4 {
		return fmt.Errorf("%w: %d-byte payload has no count", errMalformed, len(p))
	}
	want := binary.LittleEndian.Uint32(p[0:4])
	// Count first, so a payload that fails is not half applied.
	n, err := walkEntries(p[4:], nil)
	if err != nil {
		return err
	}
	if uint64(n) != uint64(want) {
		return fmt.Errorf("%w: count says %d entries, found %d", errMalformed, want, n)
	}
	if fn == nil {
		return nil
	}
	_, err = walkEntries(p[4:], fn)
	return err
}

// decodedRecord is one record decoded from a byte slice, for tests and
// fuzzing of the format.
type decodedRecord struct {
	seq    uint64
	size   int64 // on-disk size, padding included
	writes []recordWrite
}

type recordWrite struct {
	off  int64
	data []byte
}

// decodeRecord decodes the record at the start of b: header, payload CRC
// and payload structure. It never panics.
func decodeRecord(b []byte, tag uint64) (decodedRecord, error) {
	h, ok := decodeRecordHeader(b, tag)
	if !ok {
		return decodedRecord{}, errors.New("invalid record header")
	}
	if int64(len(b)) < recordHdrSize+int64(h.payloadLen) {
		return decodedRecord{}, fmt.Errorf("record payload of %d bytes exceeds the %d-byte buffer", h.payloadLen, len(b))
	}
	p := b[recordHdrSize : recordHdrSize+int64(h.payloadLen)]
	if crc32c(p) != h.payloadCRC {
		return decodedRecord{}, errors.New("record payload checksum mismatch")
	}
	d := decodedRecord{seq: h.seq, size: h.size()}
	err := walkPayload(p, func(off int64, data []byte) error {
		d.writes = append(d.writes, recordWrite{off: off, data: data})
		return nil
	})
	if err != nil {
		return decodedRecord{}, err
	}
	return d, nil
}
