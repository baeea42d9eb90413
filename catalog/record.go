package catalog

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
)

// Record limits. They are part of the on-disk contract: a record that breaks
// one is refused on write and reported as corrupt on read.
const (
	// MaxKeyLen is the longest blob key (and setting name), in bytes.
	MaxKeyLen = 1024
	// MaxContentTypeLen is the longest content type stored with a blob.
	MaxContentTypeLen = 1024
	// MaxExtents is the most extents one blob or reservation may own.
	MaxExtents = 1 << 20
	// MaxChecksums is the most chunk checksums one blob may carry
	// (16 TiB at 256 KiB chunks).
	MaxChecksums = 1 << 26
	// MaxReplicas is the most node IDs a blob's replica set may hold.
	MaxReplicas = 16
	// MaxMetaValueLen is the largest value PutMeta accepts.
	MaxMetaValueLen = 64 << 10
)

// Record format versions: the first byte of every encoded record.
const (
	blobFormatV1        = 1
	blobFormatV2        = 2 // format 1 with the replica set
	reservationFormatV1 = 1
)

// Extent is a run of pages on the volume, in absolute device offsets.
type Extent struct {
	Offset int64
	Length int64
}

// Blob is one committed version of a blob.
type Blob struct {
	Key     string
	Version uint64 // Raft index of the Commit that created this version
	Size    int64
	Extents []Extent
	// ChunkSize is the number of bytes covered by each checksum; the last
	// chunk may be shorter. Zero only for an empty blob.
	ChunkSize int64
	// Checksums holds one CRC32C per chunk: exactly ceil(Size/ChunkSize).
	Checksums   []uint32
	ContentType string
	// Created is in unix nanoseconds, taken from the Raft entry.
	Created       int64
	ReservationID uint64
	// Replicas are the IDs of the nodes that held the bytes durably when
	// the blob was committed (a streamed upload's majority, in the order
	// they acknowledged); nil when every replica writes the bytes from
	// the log (inline blobs) and for blobs of older releases. Repair asks
	// these nodes first.
	Replicas []string
}

// Reservation is space allocated for an upload that is not committed yet.
type Reservation struct {
	ID       uint64 // never 0
	Size     int64
	Extents  []Extent
	Deadline int64 // unix nanoseconds; expired once Deadline <= now
}

// chunkCount returns ceil(size/chunk) for size >= 0, chunk > 0.
func chunkCount(size, chunk int64) int64 {
	return size/chunk + min(size%chunk, 1)
}

// validateExtents checks that every extent is a non-empty run of
// non-negative offsets and that together they hold at least size bytes.
func validateExtents(exts []Extent, size int64) error {
	if len(exts) > MaxExtents {
		return fmt.Errorf("%d extents, more than %d", len(exts), MaxExtents)
	}
	var total int64
	for i, e := range exts {
		if e.Offset < 0 || e.Length <= 0 || e.Offset > math.MaxInt64-e.Length {
			return fmt.Errorf("extent %d {%d, %d} is not a valid run", i, e.Offset, e.Length)
		}
		if total > math.MaxInt64-e.Length {
			return fmt.Errorf("extent lengths overflow int64")
		}
		total += e.Length
	}
	if total < size {
		return fmt.Errorf("extents hold %d bytes, less than the size %d", total, size)
	}
	return nil
}

// validateBlob checks the invariants every stored blob record satisfies. The
// key is checked separately: it is not part of the encoding.
func validateBlob(b *Blob) error {
	if b.Size < 0 {
		return fmt.Errorf("negative size %d", b.Size)
	}
	if b.ChunkSize < 0 || (b.ChunkSize == 0 && b.Size > 0) {
		return fmt.Errorf("chunk size %d for size %d", b.ChunkSize, b.Size)
	}
	var want int64
	if b.ChunkSize > 0 {
		want = chunkCount(b.Size, b.ChunkSize)
	}
	if want > MaxChecksums {
		return fmt.Errorf("%d chunks, more than %d", want, MaxChecksums)
	}
	if int64(len(b.Checksums)) != want {
		return fmt.Errorf("%d checksums for %d chunks", len(b.Checksums), want)
	}
	if len(b.ContentType) > MaxContentTypeLen {
		return fmt.Errorf("content type of %d bytes, more than %d", len(b.ContentType), MaxContentTypeLen)
	}
	if len(b.Replicas) > MaxReplicas {
		return fmt.Errorf("%d replicas, more than %d", len(b.Replicas), MaxReplicas)
	}
	for _, id := range b.Replicas {
		if len(id) == 0 || len(id) > MaxMemberIDLen {
			return fmt.Errorf("replica id of %d bytes, want 1..%d", len(id), MaxMemberIDLen)
		}
	}
	return validateExtents(b.Extents, b.Size)
}

func validateReservation(r *Reservation) error {
	if r.Size < 0 {
		return fmt.Errorf("negative size %d", r.Size)
	}
	return validateExtents(r.Extents, r.Size)
}

func appendExtents(dst []byte, exts []Extent) []byte {
	dst = binary.AppendUvarint(dst, uint64(len(exts)))
	for _, e := range exts {
		dst = binary.AppendUvarint(dst, uint64(e.Offset))
		dst = binary.AppendUvarint(dst, uint64(e.Length))
	}
	return dst
}

// EncodeBlob returns the stored form of b (see the package documentation).
// b.Key is not encoded: it is the bbolt key the record is stored under. The
// result is the only encoding of b: decoding it and encoding again yields the
// same bytes. A blob that breaks a record invariant is refused with
// ErrInvalidRecord.
func EncodeBlob(b Blob) ([]byte, error) {
	return AppendBlob(nil, b)
}

// AppendBlob is EncodeBlob appending to dst.
func AppendBlob(dst []byte, b Blob) ([]byte, error) {
	if err := validateBlob(&b); err != nil {
		return dst, fmt.Errorf("encode blob %q: %w: %w", b.Key, ErrInvalidRecord, err)
	}
	if dst == nil {
		dst = make([]byte, 0, 6*binary.MaxVarintLen64+len(b.ContentType)+
			len(b.Extents)*2*binary.MaxVarintLen64+4*len(b.Checksums))
	}
	if len(b.Replicas) == 0 {
		dst = append(dst, blobFormatV1)
	} else {
		dst = append(dst, blobFormatV2)
	}
	dst = binary.AppendUvarint(dst, b.Version)
	dst = binary.AppendUvarint(dst, uint64(b.Size))
	dst = binary.AppendUvarint(dst, uint64(b.ChunkSize))
	dst = binary.AppendVarint(dst, b.Created)
	dst = binary.AppendUvarint(dst, b.ReservationID)
	dst = binary.AppendUvarint(dst, uint64(len(b.ContentType)))
	dst = append(dst, b.ContentType...)
	dst = appendExtents(dst, b.Extents)
	if len(b.Replicas) > 0 {
		dst = binary.AppendUvarint(dst, uint64(len(b.Replicas)))
		for _, id := range b.Replicas {
			dst = binary.AppendUvarint(dst, uint64(len(id)))
			dst = append(dst, id...)
		}
	}
	for _, c := range b.Checksums {
		dst = binary.BigEndian.AppendUint32(dst, c)
	}
	return dst, nil
}

// EncodeReservation returns the stored form of r. r.ID is not encoded: it is
// the bbolt key. A reservation that breaks a record invariant is refused with
// ErrInvalidRecord.
func EncodeReservation(r Reservation) ([]byte, error) {
	if err := validateReservation(&r); err != nil {
		return nil, fmt.Errorf("encode reservation %d: %w: %w", r.ID, ErrInvalidRecord, err)
	}
	dst := make([]byte, 0, 1+3*binary.MaxVarintLen64+len(r.Extents)*2*binary.MaxVarintLen64)
	dst = append(dst, reservationFormatV1)
	dst = binary.AppendUvarint(dst, uint64(r.Size))
	dst = binary.AppendVarint(dst, r.Deadline)
	dst = appendExtents(dst, r.Extents)
	return dst, nil
}

// decoder reads a record field by field. The first error sticks; every later
// read returns zero values, so a decode function checks d.err once per step
// that allocates.
type decoder struct {
	rec string // record type, for messages
	b   []byte
	off int // offset of b[0] in the record, for messages
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s record at byte %d: %s", ErrCorrupt, d.rec, d.off, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) advance(n int) {
	d.b = d.b[n:]
	d.off += n
}

// uvarint reads a minimally encoded unsigned varint.
func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	switch {
	case n == 0:
		d.fail("%s: truncated", field)
		return 0
	case n < 0:
		d.fail("%s: varint overflows 64 bits", field)
		return 0
	case n > 1 && d.b[n-1] == 0:
		d.fail("%s: varint is not minimally encoded", field)
		return 0
	}
	d.advance(n)
	return v
}

// nonNegative reads a uvarint that must fit in an int64.
func (d *decoder) nonNegative(field string) int64 {
	v := d.uvarint(field)
	if v > math.MaxInt64 {
		d.fail("%s: %d overflows int64", field, v)
		return 0
	}
	return int64(v)
}

// varint reads a minimally encoded zig-zag varint.
func (d *decoder) varint(field string) int64 {
	u := d.uvarint(field)
	return int64(u>>1) ^ -int64(u&1)
}

func (d *decoder) bytes(field string, n uint64) []byte {
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("%s: %d bytes, only %d left", field, n, len(d.b))
		return nil
	}
	v := d.b[:n]
	d.advance(int(n))
	return v
}

// format reads the format-version byte, which must be one of want, and
// returns it (0 after an error).
func (d *decoder) format(want ...byte) byte {
	if len(d.b) == 0 {
		d.fail("empty")
		return 0
	}
	f := d.b[0]
	if !slices.Contains(want, f) {
		d.fail("unknown format version %d (want one of %v)", f, want)
		return 0
	}
	d.advance(1)
	return f
}

func (d *decoder) extents() []Extent {
	n := d.uvarint("extent count")
	if d.err != nil {
		return nil
	}
	// Each extent takes at least two bytes: bound the allocation by the input.
	if n > MaxExtents || n > uint64(len(d.b)/2) {
		d.fail("extent count %d does not fit in %d remaining bytes (max %d)", n, len(d.b), MaxExtents)
		return nil
	}
	if n == 0 {
		return nil
	}
	exts := make([]Extent, n)
	for i := range exts {
		exts[i].Offset = d.nonNegative("extent offset")
		exts[i].Length = d.nonNegative("extent length")
	}
	if d.err != nil {
		return nil
	}
	return exts
}

func (d *decoder) end() {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
}

// DecodeBlob parses a record written by EncodeBlob. The returned Blob has an
// empty Key (the key is not part of the record). It never panics; any
// malformed input, including one that decodes to a blob breaking a record
// invariant or one that is not the canonical encoding, yields an error
// wrapping ErrCorrupt. Allocation is bounded by len(data).
func DecodeBlob(data []byte) (Blob, error) {
	d := decoder{rec: "blob", b: data}
	var b Blob
	format := d.format(blobFormatV1, blobFormatV2)
	b.Version = d.uvarint("version")
	b.Size = d.nonNegative("size")
	b.ChunkSize = d.nonNegative("chunk size")
	b.Created = d.varint("created")
	b.ReservationID = d.uvarint("reservation id")
	ctLen := d.uvarint("content type length")
	if d.err == nil && ctLen > MaxContentTypeLen {
		d.fail("content type length %d, more than %d", ctLen, MaxContentTypeLen)
	}
	b.ContentType = string(d.bytes("content type", ctLen))
	b.Extents = d.extents()
	if format == blobFormatV2 {
		n := d.uvarint("replica count")
		if d.err == nil && (n == 0 || n > MaxReplicas) {
			d.fail("replica count %d, want 1..%d", n, MaxReplicas)
		}
		for i := uint64(0); d.err == nil && i < n; i++ {
			idLen := d.uvarint("replica id length")
			if d.err == nil && (idLen == 0 || idLen > MaxMemberIDLen) {
				d.fail("replica id length %d, want 1..%d", idLen, MaxMemberIDLen)
			}
			b.Replicas = append(b.Replicas, string(d.bytes("replica id", idLen)))
		}
	}
	if d.err != nil {
		return Blob{}, d.err
	}
	// The checksum count follows from size and chunk size; the checksums
	// are exactly the rest of the record.
	var n int64
	if b.ChunkSize > 0 {
		n = chunkCount(b.Size, b.ChunkSize)
	}
	if n > MaxChecksums || int64(len(d.b)) != 4*n {
		d.fail("%d bytes left for %d checksums", len(d.b), n)
		return Blob{}, d.err
	}
	if n > 0 {
		b.Checksums = make([]uint32, n)
		for i := range b.Checksums {
			b.Checksums[i] = binary.BigEndian.Uint32(d.b[4*i:])
		}
		d.advance(int(4 * n))
	}
	if err := validateBlob(&b); err != nil {
		d.fail("%v", err)
		return Blob{}, d.err
	}
	return b, nil
}

// blobExtents appends the extents of the blob record data to exts: the
// fields before them are stepped over, and nothing after them is read, so
// it allocates nothing beyond exts. It checks only what it reads; a record
// DecodeBlob refuses may pass. For walks of a catalog that was checked
// (Open, Restore) and that need no more than the pages blobs hold.
func blobExtents(data []byte, exts []Extent) ([]Extent, error) {
	d := decoder{rec: "blob", b: data}
	d.format(blobFormatV1, blobFormatV2)
	for _, field := range [...]string{"version", "size", "chunk size", "created", "reservation id"} {
		d.uvarint(field)
	}
	d.bytes("content type", d.uvarint("content type length"))
	n := d.uvarint("extent count")
	if d.err == nil && (n > MaxExtents || n > uint64(len(d.b)/2)) {
		d.fail("extent count %d does not fit in %d remaining bytes (max %d)", n, len(d.b), MaxExtents)
	}
	for i := uint64(0); d.err == nil && i < n; i++ {
		e := Extent{Offset: d.nonNegative("extent offset"), Length: d.nonNegative("extent length")}
		exts = append(exts, e)
	}
	return exts, d.err
}

// DecodeReservation parses a record written by EncodeReservation. The
// returned Reservation has a zero ID (the ID is the record's key). Errors
// wrap ErrCorrupt, as for DecodeBlob.
func DecodeReservation(data []byte) (Reservation, error) {
	d := decoder{rec: "reservation", b: data}
	var r Reservation
	d.format(reservationFormatV1)
	r.Size = d.nonNegative("size")
	r.Deadline = d.varint("deadline")
	r.Extents = d.extents()
	d.end()
	if d.err != nil {
		return Reservation{}, d.err
	}
	if err := validateReservation(&r); err != nil {
		d.fail("%v", err)
		return Reservation{}, d.err
	}
	return r, nil
}
