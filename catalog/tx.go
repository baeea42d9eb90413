package catalog

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bbolt "go.etcd.io/bbolt"
)

// Tx is one catalog transaction, handed to the function given to DB.Update or
// DB.View. It is valid only until that function returns: every method called
// later returns ErrTxClosed, and no slice or record it returned refers to
// transaction memory (results are copies). A Tx is not safe for concurrent
// use.
//
// The replicated buckets (blobs, reservations, settings, requests, members,
// applied index) are written only by the Raft state machine, so that every node holds the same
// bytes for the same applied index. The node-local methods (MarkLocal,
// ClearLocal) may be called from any Update.
type Tx struct {
	tx *bbolt.Tx
	// blobDelta is the change to the blob counter not yet written: PutBlob
	// and DeleteBlob add to it, and Update writes it once, before the
	// commit (a counter read and rewritten per blob was two B-tree
	// searches of every inline Commit).
	blobDelta int64
	buckets   [9]struct { // one per bucket of allBuckets
		name string
		b    *bbolt.Bucket
	}
}

// end invalidates t once its bbolt transaction is over.
func (t *Tx) end() { t.tx = nil }

// keyedFillPercent is how full bbolt fills a page of the buckets keyed by
// blob key before it splits one (its default is half). Keys often arrive
// in order (a counter, a timestamp), and in-order inserts leave every page
// but the last filled to exactly this: at half, a catalog of a million
// blobs is twice the size of its records, and a restart after a crash
// copies, checks and writes all of it.
const keyedFillPercent = 0.9

// bucket returns a top-level bucket, caching it for the life of t.
func (t *Tx) bucket(name string) (*bbolt.Bucket, error) {
	if t.tx == nil {
		return nil, ErrTxClosed
	}
	for i := range t.buckets {
		c := &t.buckets[i]
		if c.name == name {
			return c.b, nil
		}
		if c.name == "" {
			b := t.tx.Bucket([]byte(name))
			if b == nil {
				return nil, fmt.Errorf("%w: bucket %q missing", ErrCorrupt, name)
			}
			if name == bucketBlobs || name == bucketLocal {
				b.FillPercent = keyedFillPercent
			}
			c.name, c.b = name, b
			return b, nil
		}
	}
	return nil, fmt.Errorf("catalog: bucket cache full looking up %q", name)
}

func validateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: empty", ErrInvalidKey)
	}
	if len(key) > MaxKeyLen {
		return fmt.Errorf("%w: %d bytes, more than %d", ErrInvalidKey, len(key), MaxKeyLen)
	}
	return nil
}

// uint64Value decodes an 8-byte big-endian value; absent is zero.
func uint64Value(v []byte, what string) (uint64, error) {
	if v == nil {
		return 0, nil
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("%w: %s is %d bytes, want 8", ErrCorrupt, what, len(v))
	}
	return binary.BigEndian.Uint64(v), nil
}

func putUint64(b *bbolt.Bucket, key string, v uint64) error {
	return b.Put([]byte(key), binary.BigEndian.AppendUint64(nil, v))
}

// blobRecordVersion reads only the version field of an encoded blob.
func blobRecordVersion(v []byte) (uint64, error) {
	d := decoder{rec: "blob", b: v}
	d.format(blobFormatV1, blobFormatV2)
	ver := d.uvarint("version")
	return ver, d.err
}

// Blobs.

// GetBlob returns the blob stored under key; ok is false if there is none.
func (t *Tx) GetBlob(key string) (b Blob, ok bool, err error) {
	if err := validateKey(key); err != nil {
		return Blob{}, false, err
	}
	bk, err := t.bucket(bucketBlobs)
	if err != nil {
		return Blob{}, false, err
	}
	v := bk.Get([]byte(key))
	if v == nil {
		return Blob{}, false, nil
	}
	b, err = DecodeBlob(v)
	if err != nil {
		return Blob{}, false, fmt.Errorf("blob %q: %w", key, err)
	}
	b.Key = key
	return b, true, nil
}

// PutBlob stores b under b.Key, replacing any previous version. Replacing a
// version also clears this node's local mark for the key (the data it
// vouched for belongs to the old version). The caller frees the extents of
// the replaced version; the catalog does not.
func (t *Tx) PutBlob(b Blob) error { return t.putBlob(b, false) }

// PutBlobMarked is PutBlob followed by MarkLocal(b.Key, b.Version): it
// stores b and records that this node holds its bytes verified, without
// looking the record it just wrote up again.
func (t *Tx) PutBlobMarked(b Blob) error { return t.putBlob(b, true) }

func (t *Tx) putBlob(b Blob, marked bool) error {
	if err := validateKey(b.Key); err != nil {
		return err
	}
	enc, err := EncodeBlob(b)
	if err != nil {
		return err
	}
	blobs, err := t.bucket(bucketBlobs)
	if err != nil {
		return err
	}
	key := []byte(b.Key)
	if old := blobs.Get(key); old == nil {
		t.addBlobCount(1)
	} else if !marked {
		oldVersion, err := blobRecordVersion(old)
		if err != nil {
			return fmt.Errorf("put blob %q: replaced record: %w", b.Key, err)
		}
		if oldVersion != b.Version {
			if err := t.clearLocal(key); err != nil {
				return err
			}
		}
	}
	if err := blobs.Put(key, enc); err != nil {
		return fmt.Errorf("put blob %q: %w", b.Key, err)
	}
	if marked {
		return t.putLocal(key, b.Version)
	}
	return nil
}

// DeleteBlob removes the blob under key, and this node's local mark for it.
// Deleting a missing key is a no-op.
func (t *Tx) DeleteBlob(key string) error {
	if err := validateKey(key); err != nil {
		return err
	}
	blobs, err := t.bucket(bucketBlobs)
	if err != nil {
		return err
	}
	k := []byte(key)
	if blobs.Get(k) == nil {
		return nil
	}
	if err := blobs.Delete(k); err != nil {
		return fmt.Errorf("delete blob %q: %w", key, err)
	}
	t.addBlobCount(-1)
	return t.clearLocal(k)
}

func (t *Tx) addBlobCount(delta int64) { t.blobDelta += delta }

// blobCount returns the blob counter as this transaction has changed it.
func (t *Tx) blobCount() (uint64, error) {
	meta, err := t.bucket(bucketMeta)
	if err != nil {
		return 0, err
	}
	n, err := uint64Value(meta.Get([]byte(metaBlobCount)), "blob count")
	if err != nil {
		return 0, err
	}
	if t.blobDelta < 0 && n < uint64(-t.blobDelta) {
		return 0, fmt.Errorf("%w: blob count %d would go negative (%d)", ErrCorrupt, n, t.blobDelta)
	}
	return n + uint64(t.blobDelta), nil
}

// flush writes what the transaction deferred (the blob counter). Update
// calls it after its function returns, before the commit.
func (t *Tx) flush() error {
	if t.blobDelta == 0 {
		return nil
	}
	n, err := t.blobCount()
	if err != nil {
		return err
	}
	meta, err := t.bucket(bucketMeta)
	if err != nil {
		return err
	}
	if err := putUint64(meta, metaBlobCount, n); err != nil {
		return err
	}
	t.blobDelta = 0
	return nil
}

// CountBlobs returns the number of blobs, from a counter kept by PutBlob and
// DeleteBlob (O(1)).
func (t *Tx) CountBlobs() (int, error) {
	n, err := t.blobCount()
	return int(n), err
}

// ListBlobs returns up to limit blobs whose key starts with prefix and sorts
// after startAfter, in byte order of their keys; more reports whether further
// matching keys exist, in which case the last returned key is the next
// startAfter. It seeks straight to the first candidate: the cost is
// O(log n + limit), whatever precedes it. limit must be positive.
func (t *Tx) ListBlobs(prefix, startAfter string, limit int) (blobs []Blob, more bool, err error) {
	if limit <= 0 {
		return nil, false, fmt.Errorf("%w: list limit %d", ErrInvalidArgument, limit)
	}
	bk, err := t.bucket(bucketBlobs)
	if err != nil {
		return nil, false, err
	}
	c := bk.Cursor()
	var k, v []byte
	if startAfter >= prefix {
		k, v = c.Seek([]byte(startAfter))
		if k != nil && string(k) == startAfter {
			k, v = c.Next()
		}
	} else {
		// Every key with the prefix sorts at or after the prefix, hence
		// after startAfter.
		k, v = c.Seek([]byte(prefix))
	}
	p := []byte(prefix)
	for ; k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
		if len(blobs) == limit {
			return blobs, true, nil
		}
		b, err := DecodeBlob(v)
		if err != nil {
			return nil, false, fmt.Errorf("blob %q: %w", k, err)
		}
		b.Key = string(k)
		blobs = append(blobs, b)
	}
	return blobs, false, nil
}

// ForEachBlob calls fn for every blob in key order, stopping at the first
// error, which it returns. fn must not write to the catalog.
func (t *Tx) ForEachBlob(fn func(Blob) error) error {
	bk, err := t.bucket(bucketBlobs)
	if err != nil {
		return err
	}
	return bk.ForEach(func(k, v []byte) error {
		b, err := DecodeBlob(v)
		if err != nil {
			return fmt.Errorf("blob %q: %w", k, err)
		}
		b.Key = string(k)
		return fn(b)
	})
}

// ForEachOwnedExtent calls fn for every extent of every blob and of every
// reservation: the pages the allocator must consider used. Blobs come first
// (in key order), then reservations (in ID order). fn must not write to the
// catalog.
//
// It reads no more of a blob's record than its extents (see blobExtents): a
// rebuild of the allocator walks every blob, and over a million of them
// this takes half the time of decoding each whole (0.3 s against 0.6 s).
func (t *Tx) ForEachOwnedExtent(fn func(Extent) error) error {
	bk, err := t.bucket(bucketBlobs)
	if err != nil {
		return err
	}
	var exts []Extent
	err = bk.ForEach(func(k, v []byte) error {
		var err error
		if exts, err = blobExtents(v, exts[:0]); err != nil {
			return fmt.Errorf("blob %q: %w", k, err)
		}
		for _, e := range exts {
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	return t.ForEachReservation(func(r Reservation) error {
		for _, e := range r.Extents {
			if err := fn(e); err != nil {
				return err
			}
		}
		return nil
	})
}

// Reservations.

func reservationKey(id uint64) []byte {
	return binary.BigEndian.AppendUint64(make([]byte, 0, 8), id)
}

// deadlineKey orders by deadline, then ID. The deadline's sign bit is flipped
// so that negative deadlines sort before positive ones as unsigned bytes.
func deadlineKey(deadline int64, id uint64) []byte {
	k := make([]byte, 16)
	binary.BigEndian.PutUint64(k, uint64(deadline)^(1<<63))
	binary.BigEndian.PutUint64(k[8:], id)
	return k
}

func parseDeadlineKey(k []byte) (deadline int64, id uint64, err error) {
	if len(k) != 16 {
		return 0, 0, fmt.Errorf("%w: deadline index key is %d bytes, want 16", ErrCorrupt, len(k))
	}
	return int64(binary.BigEndian.Uint64(k) ^ (1 << 63)), binary.BigEndian.Uint64(k[8:]), nil
}

// PutReservation stores r under r.ID, replacing any previous reservation with
// that ID, and keeps the deadline index in step. ID 0 is refused.
func (t *Tx) PutReservation(r Reservation) error {
	if r.ID == 0 {
		return fmt.Errorf("put reservation: %w: ID 0", ErrInvalidRecord)
	}
	enc, err := EncodeReservation(r)
	if err != nil {
		return err
	}
	if err := t.DeleteReservation(r.ID); err != nil {
		return err
	}
	resv, err := t.bucket(bucketResv)
	if err != nil {
		return err
	}
	idx, err := t.bucket(bucketDeadline)
	if err != nil {
		return err
	}
	if err := resv.Put(reservationKey(r.ID), enc); err != nil {
		return fmt.Errorf("put reservation %d: %w", r.ID, err)
	}
	if err := idx.Put(deadlineKey(r.Deadline, r.ID), []byte{}); err != nil {
		return fmt.Errorf("put reservation %d deadline: %w", r.ID, err)
	}
	return nil
}

// GetReservation returns the reservation with the given ID; ok is false if
// there is none.
func (t *Tx) GetReservation(id uint64) (r Reservation, ok bool, err error) {
	resv, err := t.bucket(bucketResv)
	if err != nil {
		return Reservation{}, false, err
	}
	v := resv.Get(reservationKey(id))
	if v == nil {
		return Reservation{}, false, nil
	}
	r, err = DecodeReservation(v)
	if err != nil {
		return Reservation{}, false, fmt.Errorf("reservation %d: %w", id, err)
	}
	r.ID = id
	return r, true, nil
}

// DeleteReservation removes a reservation and its deadline index entry.
// Deleting a missing ID is a no-op.
func (t *Tx) DeleteReservation(id uint64) error {
	r, ok, err := t.GetReservation(id)
	if err != nil || !ok {
		return err
	}
	resv, err := t.bucket(bucketResv)
	if err != nil {
		return err
	}
	idx, err := t.bucket(bucketDeadline)
	if err != nil {
		return err
	}
	dk := deadlineKey(r.Deadline, id)
	if idx.Get(dk) == nil {
		return fmt.Errorf("%w: reservation %d has no deadline index entry", ErrCorrupt, id)
	}
	if err := idx.Delete(dk); err != nil {
		return fmt.Errorf("delete reservation %d deadline: %w", id, err)
	}
	if err := resv.Delete(reservationKey(id)); err != nil {
		return fmt.Errorf("delete reservation %d: %w", id, err)
	}
	return nil
}

// ExpiredReservations returns up to limit reservations whose deadline is at
// or before now, earliest deadline first (ties by ID). It reads the deadline
// index, so the cost is O(log n + limit). limit must be positive.
func (t *Tx) ExpiredReservations(now int64, limit int) ([]Reservation, error) {
	if limit <= 0 {
		return nil, fmt.Errorf("%w: expired reservations limit %d", ErrInvalidArgument, limit)
	}
	idx, err := t.bucket(bucketDeadline)
	if err != nil {
		return nil, err
	}
	var out []Reservation
	c := idx.Cursor()
	for k, _ := c.First(); k != nil && len(out) < limit; k, _ = c.Next() {
		deadline, id, err := parseDeadlineKey(k)
		if err != nil {
			return nil, err
		}
		if deadline > now {
			break
		}
		r, ok, err := t.GetReservation(id)
		if err != nil {
			return nil, err
		}
		if !ok || r.Deadline != deadline {
			return nil, fmt.Errorf("%w: deadline index entry (%d, %d) has no matching reservation", ErrCorrupt, deadline, id)
		}
		out = append(out, r)
	}
	return out, nil
}

// ForEachReservation calls fn for every reservation in ID order, stopping at
// the first error, which it returns. fn must not write to the catalog.
func (t *Tx) ForEachReservation(fn func(Reservation) error) error {
	resv, err := t.bucket(bucketResv)
	if err != nil {
		return err
	}
	return resv.ForEach(func(k, v []byte) error {
		if len(k) != 8 {
			return fmt.Errorf("%w: reservation key is %d bytes, want 8", ErrCorrupt, len(k))
		}
		r, err := DecodeReservation(v)
		if err != nil {
			return fmt.Errorf("reservation %x: %w", k, err)
		}
		r.ID = binary.BigEndian.Uint64(k)
		return fn(r)
	})
}

// Applied index and settings.

// AppliedIndex returns the Raft index of the last entry whose effects this
// catalog holds (0 for a new catalog).
func (t *Tx) AppliedIndex() (uint64, error) {
	meta, err := t.bucket(bucketMeta)
	if err != nil {
		return 0, err
	}
	return uint64Value(meta.Get([]byte(metaApplied)), "applied index")
}

// SetAppliedIndex records the Raft index covered by this transaction. Call it
// in the same Update as the changes of that entry, so that both commit or
// neither does. An index below the stored one is refused with
// ErrIndexRegression; an equal one is accepted.
func (t *Tx) SetAppliedIndex(index uint64) error {
	cur, err := t.AppliedIndex()
	if err != nil {
		return err
	}
	if index < cur {
		return fmt.Errorf("%w: %d after %d", ErrIndexRegression, index, cur)
	}
	meta, err := t.bucket(bucketMeta)
	if err != nil {
		return err
	}
	return putUint64(meta, metaApplied, index)
}

func validateMetaName(name string) error {
	if name == "" || len(name) > MaxKeyLen {
		return fmt.Errorf("%w: setting name of %d bytes", ErrInvalidKey, len(name))
	}
	return nil
}

// GetMeta returns a copy of a replicated setting, or an error wrapping
// ErrNotFound if it was never set.
func (t *Tx) GetMeta(name string) ([]byte, error) {
	if err := validateMetaName(name); err != nil {
		return nil, err
	}
	s, err := t.bucket(bucketSettings)
	if err != nil {
		return nil, err
	}
	v := s.Get([]byte(name))
	if v == nil {
		return nil, fmt.Errorf("setting %q: %w", name, ErrNotFound)
	}
	return bytes.Clone(v), nil
}

// PutMeta stores a small replicated setting (at most MaxMetaValueLen bytes),
// such as the volume geometry. A nil value stores an empty one.
func (t *Tx) PutMeta(name string, v []byte) error {
	if err := validateMetaName(name); err != nil {
		return err
	}
	if len(v) > MaxMetaValueLen {
		return fmt.Errorf("%w: setting %q is %d bytes, more than %d", ErrInvalidArgument, name, len(v), MaxMetaValueLen)
	}
	s, err := t.bucket(bucketSettings)
	if err != nil {
		return err
	}
	// bbolt keeps the value until commit: hand it a private copy.
	if err := s.Put([]byte(name), append([]byte{}, v...)); err != nil {
		return fmt.Errorf("put setting %q: %w", name, err)
	}
	return nil
}

// Node-local bookkeeping.

// MarkLocal records that this node holds verified data for version of key.
// The blob must exist at that version in this transaction (otherwise an error
// wrapping ErrNotFound): a mark never outlives the version it vouches for,
// because PutBlob with another version and DeleteBlob clear it.
func (t *Tx) MarkLocal(key string, version uint64) error {
	if err := validateKey(key); err != nil {
		return err
	}
	blobs, err := t.bucket(bucketBlobs)
	if err != nil {
		return err
	}
	k := []byte(key)
	v := blobs.Get(k)
	if v == nil {
		return fmt.Errorf("mark local %q v%d: %w", key, version, ErrNotFound)
	}
	cur, err := blobRecordVersion(v)
	if err != nil {
		return fmt.Errorf("mark local %q: %w", key, err)
	}
	if cur != version {
		return fmt.Errorf("mark local %q v%d: current version is %d: %w", key, version, cur, ErrNotFound)
	}
	return t.putLocal(k, version)
}

// putLocal writes the local mark of key (a mark it replaces is for an
// older version of the same key, or the same one).
func (t *Tx) putLocal(key []byte, version uint64) error {
	local, err := t.bucket(bucketLocal)
	if err != nil {
		return err
	}
	if err := local.Put(key, binary.BigEndian.AppendUint64(make([]byte, 0, 8), version)); err != nil {
		return fmt.Errorf("mark local %q: %w", key, err)
	}
	return nil
}

// LocalVersion returns the version of key this node holds verified data for;
// ok is false if none.
func (t *Tx) LocalVersion(key string) (version uint64, ok bool, err error) {
	if err := validateKey(key); err != nil {
		return 0, false, err
	}
	local, err := t.bucket(bucketLocal)
	if err != nil {
		return 0, false, err
	}
	v := local.Get([]byte(key))
	if v == nil {
		return 0, false, nil
	}
	version, err = uint64Value(v, "local version of "+key)
	return version, err == nil, err
}

// ClearLocal forgets this node's mark for key (for example when the scrubber
// finds its data corrupt). Clearing a missing mark is a no-op.
func (t *Tx) ClearLocal(key string) error {
	if err := validateKey(key); err != nil {
		return err
	}
	return t.clearLocal([]byte(key))
}

func (t *Tx) clearLocal(k []byte) error {
	local, err := t.bucket(bucketLocal)
	if err != nil {
		return err
	}
	if err := local.Delete(k); err != nil {
		return fmt.Errorf("clear local %q: %w", k, err)
	}
	return nil
}

// Check verifies the catalog invariants inside this transaction and returns
// every violation found (each wraps ErrCorrupt; the list is capped):
// every record decodes; the blob counter equals the number of blobs; each
// reservation has exactly one deadline index entry with its deadline and the
// index has no other entries; settings are within bounds; each recorded
// request has exactly one by-index entry with its index, that index is not
// above the applied index, and the by-index bucket has no other entries;
// each member has a valid ID; each local mark names an existing blob at the
// marked version. It reads every record.
func (t *Tx) Check() []error {
	return t.check(true)
}

const maxCheckErrors = 100

func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
}

func (t *Tx) check(withLocal bool) []error {
	var errs []error
	dropped := 0
	report := func(err error) {
		if len(errs) == maxCheckErrors {
			dropped++
			return
		}
		errs = append(errs, err)
	}
	if t.tx == nil {
		return []error{ErrTxClosed}
	}
	if err := checkLayout(t.tx); err != nil {
		return []error{err}
	}
	meta, _ := t.bucket(bucketMeta)
	blobs, _ := t.bucket(bucketBlobs)
	resv, _ := t.bucket(bucketResv)
	idx, _ := t.bucket(bucketDeadline)
	settings, _ := t.bucket(bucketSettings)

	applied, err := uint64Value(meta.Get([]byte(metaApplied)), "applied index")
	if err != nil {
		report(err)
	}
	counter, err := t.blobCount()
	if err != nil {
		report(err)
	}
	var nBlobs uint64
	_ = blobs.ForEach(func(k, v []byte) error {
		nBlobs++
		if len(k) > MaxKeyLen {
			report(corruptf("blob key of %d bytes", len(k)))
		}
		if _, err := DecodeBlob(v); err != nil {
			report(fmt.Errorf("blob %q: %w", k, err))
		}
		return nil
	})
	if err == nil && counter != nBlobs {
		report(corruptf("blob counter says %d, bucket holds %d", counter, nBlobs))
	}

	var nResv uint64
	_ = resv.ForEach(func(k, v []byte) error {
		nResv++
		if len(k) != 8 || binary.BigEndian.Uint64(k) == 0 {
			report(corruptf("reservation key %x", k))
			return nil
		}
		r, err := DecodeReservation(v)
		if err != nil {
			report(fmt.Errorf("reservation %x: %w", k, err))
			return nil
		}
		if idx.Get(deadlineKey(r.Deadline, binary.BigEndian.Uint64(k))) == nil {
			report(corruptf("reservation %d has no deadline index entry", binary.BigEndian.Uint64(k)))
		}
		return nil
	})
	var nIdx uint64
	_ = idx.ForEach(func(k, v []byte) error {
		nIdx++
		deadline, id, err := parseDeadlineKey(k)
		if err != nil {
			report(err)
			return nil
		}
		if len(v) != 0 {
			report(corruptf("deadline index entry (%d, %d) has a %d-byte value", deadline, id, len(v)))
		}
		rv := resv.Get(reservationKey(id))
		if rv == nil {
			report(corruptf("deadline index entry (%d, %d) has no reservation", deadline, id))
		}
		return nil
	})
	if nIdx != nResv {
		report(corruptf("deadline index has %d entries for %d reservations", nIdx, nResv))
	}

	_ = settings.ForEach(func(k, v []byte) error {
		if len(k) > MaxKeyLen || len(v) > MaxMetaValueLen {
			report(corruptf("setting %q: %d-byte name, %d-byte value", k, len(k), len(v)))
		}
		return nil
	})

	t.checkRequests(applied, report)
	t.checkMembers(report)

	if withLocal {
		t.checkLocal(blobs, report)
	}
	if dropped > 0 {
		errs = append(errs, fmt.Errorf("%w: %d more problems not listed", ErrCorrupt, dropped))
	}
	return errs
}

// checkLocal verifies that every local mark names a blob at its version.
func (t *Tx) checkLocal(blobs *bbolt.Bucket, report func(error)) {
	local, err := t.bucket(bucketLocal)
	if err != nil {
		report(err)
		return
	}
	_ = local.ForEach(func(k, v []byte) error {
		ver, err := uint64Value(v, "local version")
		if err != nil {
			report(fmt.Errorf("local %q: %w", k, err))
			return nil
		}
		bv := blobs.Get(k)
		if bv == nil {
			report(corruptf("local mark %q v%d names no blob", k, ver))
			return nil
		}
		if cur, err := blobRecordVersion(bv); err == nil && cur != ver {
			report(corruptf("local mark %q v%d, blob is v%d", k, ver, cur))
		}
		return nil
	})
}

// checkRequests verifies the request records against their by-index bucket
// and the applied index.
func (t *Tx) checkRequests(applied uint64, report func(error)) {
	reqs, err := t.bucket(bucketRequests)
	if err != nil {
		report(err)
		return
	}
	idx, err := t.bucket(bucketRequestIndex)
	if err != nil {
		report(err)
		return
	}
	var nReq, nIdx uint64
	_ = reqs.ForEach(func(k, v []byte) error {
		nReq++
		if len(k) != 8 || binary.BigEndian.Uint64(k) == 0 {
			report(corruptf("request key %x", k))
			return nil
		}
		id := binary.BigEndian.Uint64(k)
		r, err := decodeRequest(v)
		if err != nil {
			report(fmt.Errorf("request %d: %w", id, err))
			return nil
		}
		if r.Index > applied {
			report(corruptf("request %d recorded at index %d, above the applied index %d", id, r.Index, applied))
		}
		if idx.Get(requestIndexKey(r.Index, id)) == nil {
			report(corruptf("request %d has no index entry", id))
		}
		return nil
	})
	_ = idx.ForEach(func(k, v []byte) error {
		nIdx++
		index, id, err := parseRequestIndexKey(k)
		if err != nil {
			report(err)
			return nil
		}
		if len(v) != 0 {
			report(corruptf("request index entry (%d, %d) has a %d-byte value", index, id, len(v)))
		}
		rv := reqs.Get(requestKey(id))
		if rv == nil {
			report(corruptf("request index entry (%d, %d) has no request", index, id))
		} else if ri, err := requestRecordIndex(rv); err == nil && ri != index {
			report(corruptf("request index entry (%d, %d), request is at index %d", index, id, ri))
		}
		return nil
	})
	if nIdx != nReq {
		report(corruptf("request index has %d entries for %d requests", nIdx, nReq))
	}
}

// checkMembers verifies every member record.
func (t *Tx) checkMembers(report func(error)) {
	members, err := t.bucket(bucketMembers)
	if err != nil {
		report(err)
		return
	}
	_ = members.ForEach(func(k, v []byte) error {
		if err := validateMemberID(string(k)); err != nil {
			report(corruptf("member key: %v", err))
		}
		if _, err := decodeMember(v); err != nil {
			report(fmt.Errorf("member %q: %w", k, err))
		}
		return nil
	})
}
