package catalog

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

// MaxRequestBatch is the most extent lists a Request's Batch may hold (the
// state machine's largest ReserveBatch). Like the other record limits it is
// part of the on-disk contract.
const MaxRequestBatch = 1 << 16

const requestFormatV1 = 1

// Request is the recorded outcome of a state-machine command that carried
// a request id, so that a retry of the command under the same id is answered
// with this outcome instead of being executed again.
//
// The catalog stores the outcome without interpreting it: Code, Extents,
// Batch, Version and Old mean what the state machine says (raftfsm.Result).
type Request struct {
	ID    uint64 // never 0; the bbolt key, not part of the encoding
	Index uint64 // Raft index the command applied at; never 0
	// Fingerprint identifies the command's bytes (the state machine's
	// checksum of the entry), so that a different command reusing the id
	// is recognised as such.
	Fingerprint uint32
	Code        uint64 // 0: success; otherwise the state machine's refusal code
	Extents     []Extent
	Batch       [][]Extent
	Version     uint64
	Old         *Blob // with its Key; nil if none
}

func validateRequest(r *Request) error {
	if r.Index == 0 {
		return fmt.Errorf("index 0")
	}
	if err := validateExtents(r.Extents, 0); err != nil {
		return err
	}
	if len(r.Batch) > MaxRequestBatch {
		return fmt.Errorf("%d batch entries, more than %d", len(r.Batch), MaxRequestBatch)
	}
	for i, exts := range r.Batch {
		if err := validateExtents(exts, 0); err != nil {
			return fmt.Errorf("batch entry %d: %w", i, err)
		}
	}
	if r.Old != nil {
		if r.Old.Key == "" || len(r.Old.Key) > MaxKeyLen {
			return fmt.Errorf("old blob key of %d bytes", len(r.Old.Key))
		}
		if err := validateBlob(r.Old); err != nil {
			return fmt.Errorf("old blob: %w", err)
		}
	}
	return nil
}

// encodeRequest returns the stored form of r (see the package
// documentation); r.ID is the bbolt key. The encoding is canonical.
func encodeRequest(r Request) ([]byte, error) {
	if err := validateRequest(&r); err != nil {
		return nil, fmt.Errorf("encode request %d: %w: %w", r.ID, ErrInvalidRecord, err)
	}
	dst := make([]byte, 0, 64+len(r.Extents)*2*binary.MaxVarintLen64)
	dst = append(dst, requestFormatV1)
	dst = binary.AppendUvarint(dst, r.Index)
	dst = binary.BigEndian.AppendUint32(dst, r.Fingerprint)
	dst = binary.AppendUvarint(dst, r.Code)
	dst = binary.AppendUvarint(dst, r.Version)
	dst = appendExtents(dst, r.Extents)
	dst = binary.AppendUvarint(dst, uint64(len(r.Batch)))
	for _, exts := range r.Batch {
		dst = appendExtents(dst, exts)
	}
	if r.Old == nil {
		return append(dst, 0), nil
	}
	dst = append(dst, 1)
	dst = binary.AppendUvarint(dst, uint64(len(r.Old.Key)))
	dst = append(dst, r.Old.Key...)
	return AppendBlob(dst, *r.Old)
}

// decodeRequest parses a record written by encodeRequest; the ID is left
// zero. Errors wrap ErrCorrupt; it never panics, accepts only the
// canonical encoding, and allocates at most in proportion to the input.
func decodeRequest(data []byte) (Request, error) {
	d := decoder{rec: "request", b: data}
	var r Request
	d.format(requestFormatV1)
	r.Index = d.uvarint("index")
	if fp := d.bytes("fingerprint", 4); fp != nil {
		r.Fingerprint = binary.BigEndian.Uint32(fp)
	}
	r.Code = d.uvarint("code")
	r.Version = d.uvarint("version")
	r.Extents = d.extents()
	n := d.uvarint("batch count")
	// Each extent list takes at least one byte: bound the allocation.
	if d.err == nil && (n > MaxRequestBatch || n > uint64(len(d.b))) {
		d.fail("batch count %d does not fit in %d remaining bytes (max %d)", n, len(d.b), MaxRequestBatch)
	}
	if d.err == nil && n > 0 {
		r.Batch = make([][]Extent, n)
		for i := range r.Batch {
			r.Batch[i] = d.extents()
		}
	}
	if flag := d.bytes("old flag", 1); flag != nil {
		switch flag[0] {
		case 0:
			d.end()
		case 1:
			keyLen := d.uvarint("old key length")
			if d.err == nil && (keyLen == 0 || keyLen > MaxKeyLen) {
				d.fail("old key length %d", keyLen)
			}
			key := string(d.bytes("old key", keyLen))
			if d.err == nil {
				// The blob record is the rest of the input.
				b, err := DecodeBlob(d.b)
				if err != nil {
					d.fail("old blob: %v", err)
				} else {
					b.Key = key
					r.Old = &b
					d.advance(len(d.b))
				}
			}
		default:
			d.fail("old flag %d", flag[0])
		}
	}
	if d.err != nil {
		return Request{}, d.err
	}
	if err := validateRequest(&r); err != nil {
		d.fail("%v", err)
		return Request{}, d.err
	}
	return r, nil
}

// requestKey is a request's key in the requests bucket.
func requestKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), id)
}

// requestIndexKey orders the requests-by-index bucket by the index a request
// applied at, then by ID.
func requestIndexKey(index, id uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, index)
	binary.BigEndian.PutUint64(k[8:], id)
	return k
}

func parseRequestIndexKey(k []byte) (index, id uint64, err error) {
	if len(k) != 16 {
		return 0, 0, fmt.Errorf("%w: request index key is %d bytes, want 16", ErrCorrupt, len(k))
	}
	return binary.BigEndian.Uint64(k), binary.BigEndian.Uint64(k[8:]), nil
}

// PutRequest records r under r.ID, replacing any earlier record of that ID,
// and keeps the by-index bucket in step. ID 0, Index 0 and a record breaking
// a record invariant are refused with ErrInvalidRecord.
func (t *Tx) PutRequest(r Request) error {
	if err := t.deleteRequest(r.ID); err != nil {
		return err
	}
	return t.AddRequest(r)
}

// AddRequest is PutRequest for an ID that has no record, which the
// caller has just found in this transaction (GetRequest): it saves the
// lookup of the record to replace. REQUIRES: no record of r.ID.
func (t *Tx) AddRequest(r Request) error {
	if r.ID == 0 {
		return fmt.Errorf("put request: %w: ID 0", ErrInvalidRecord)
	}
	enc, err := encodeRequest(r)
	if err != nil {
		return err
	}
	reqs, err := t.bucket(bucketRequests)
	if err != nil {
		return err
	}
	idx, err := t.bucket(bucketRequestIndex)
	if err != nil {
		return err
	}
	if err := reqs.Put(requestKey(r.ID), enc); err != nil {
		return fmt.Errorf("put request %d: %w", r.ID, err)
	}
	if err := idx.Put(requestIndexKey(r.Index, r.ID), []byte{}); err != nil {
		return fmt.Errorf("put request %d index: %w", r.ID, err)
	}
	return nil
}

// GetRequest returns the record of request id; ok is false if there is none.
func (t *Tx) GetRequest(id uint64) (r Request, ok bool, err error) {
	reqs, err := t.bucket(bucketRequests)
	if err != nil {
		return Request{}, false, err
	}
	v := reqs.Get(requestKey(id))
	if v == nil {
		return Request{}, false, nil
	}
	r, err = decodeRequest(v)
	if err != nil {
		return Request{}, false, fmt.Errorf("request %d: %w", id, err)
	}
	r.ID = id
	return r, true, nil
}

// deleteRequest removes a request and its by-index entry; a missing ID is a
// no-op.
func (t *Tx) deleteRequest(id uint64) error {
	r, ok, err := t.GetRequest(id)
	if err != nil || !ok {
		return err
	}
	reqs, err := t.bucket(bucketRequests)
	if err != nil {
		return err
	}
	idx, err := t.bucket(bucketRequestIndex)
	if err != nil {
		return err
	}
	ik := requestIndexKey(r.Index, id)
	if idx.Get(ik) == nil {
		return fmt.Errorf("%w: request %d has no index entry", ErrCorrupt, id)
	}
	if err := idx.Delete(ik); err != nil {
		return fmt.Errorf("delete request %d index: %w", id, err)
	}
	if err := reqs.Delete(requestKey(id)); err != nil {
		return fmt.Errorf("delete request %d: %w", id, err)
	}
	return nil
}

// PruneRequests deletes every request recorded at an index at or below
// through, oldest first, and returns how many it deleted. It reads only the
// by-index entries it deletes (and the one after), so calling it at every
// applied entry costs O(log n) plus the records that fell out of the window.
func (t *Tx) PruneRequests(through uint64) (int, error) {
	reqs, err := t.bucket(bucketRequests)
	if err != nil {
		return 0, err
	}
	idx, err := t.bucket(bucketRequestIndex)
	if err != nil {
		return 0, err
	}
	// Collect first: deleting under a bbolt cursor moves it.
	var doomed [][]byte
	c := idx.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		index, id, err := parseRequestIndexKey(k)
		if err != nil {
			return 0, err
		}
		if index > through {
			break
		}
		v := reqs.Get(requestKey(id))
		if v == nil {
			return 0, fmt.Errorf("%w: request index entry (%d, %d) has no request", ErrCorrupt, index, id)
		}
		if ri, err := requestRecordIndex(v); err != nil || ri != index {
			return 0, fmt.Errorf("%w: request index entry (%d, %d) does not match its record (index %d, %v)", ErrCorrupt, index, id, ri, err)
		}
		doomed = append(doomed, bytes.Clone(k))
	}
	for _, k := range doomed {
		if err := idx.Delete(k); err != nil {
			return 0, fmt.Errorf("prune requests: %w", err)
		}
		if err := reqs.Delete(k[8:]); err != nil {
			return 0, fmt.Errorf("prune requests: %w", err)
		}
	}
	return len(doomed), nil
}

// requestRecordIndex reads only the index field of an encoded request.
func requestRecordIndex(v []byte) (uint64, error) {
	d := decoder{rec: "request", b: v}
	d.format(requestFormatV1)
	index := d.uvarint("index")
	return index, d.err
}

// ForEachRequest calls fn for every recorded request in ID order, stopping
// at the first error, which it returns. fn must not write to the catalog.
func (t *Tx) ForEachRequest(fn func(Request) error) error {
	reqs, err := t.bucket(bucketRequests)
	if err != nil {
		return err
	}
	return reqs.ForEach(func(k, v []byte) error {
		if len(k) != 8 {
			return fmt.Errorf("%w: request key is %d bytes, want 8", ErrCorrupt, len(k))
		}
		r, err := decodeRequest(v)
		if err != nil {
			return fmt.Errorf("request %x: %w", k, err)
		}
		r.ID = binary.BigEndian.Uint64(k)
		return fn(r)
	})
}
