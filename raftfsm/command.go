package raftfsm

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/blobnode/blobnode/catalog"
)

// Kind is a command's type. Values are frozen: they are in the Raft log.
type Kind byte

const (
	// KindNoop does nothing; a new leader proposes one so that the state
	// machine's applied index reaches the commit index (Raft's own no-op
	// entries never reach the state machine).
	KindNoop Kind = 1
	// KindInit records the volume geometry the group uses; every node
	// checks its own volume against it.
	KindInit Kind = 2
	// KindReserve allocates extents for an upload, on every node alike.
	KindReserve Kind = 3
	// KindCommit maps a key to a reservation's extents (data is durable on
	// a majority by then), freeing the version it replaces.
	KindCommit Kind = 4
	// KindAbort frees a reservation whose upload failed.
	KindAbort Kind = 5
	// KindExpire frees every reservation whose deadline is at or before
	// Now, a time carried in the entry (never read from a local clock).
	KindExpire Kind = 6
	// KindDelete removes a key and frees its extents.
	KindDelete Kind = 7
	// KindReserveBatch makes one reservation of Size bytes per id in
	// ReservationIDs (a coordinator's pool for small uploads), stopping at
	// the first that does not fit.
	KindReserveBatch Kind = 8
	// KindCommitInline stores a small blob whose bytes travel in the entry
	// itself: it allocates, maps the key and writes Data to the extents in
	// one step, so the blob is durable once the entry is, with no separate
	// data sync and no reservation. The fields are a Commit's without
	// ReservationIDs; Size == len(Data) <= MaxInlineSize.
	KindCommitInline Kind = 9
	// KindRegister records (or overwrites) a member of the group in the
	// replicated registry: NodeID, the host:port of its HTTP API (APIAddr)
	// and of its Raft transport (RaftAddr). An empty NodeID or an address
	// that is not host:port with a non-empty host and a port in 1..65535
	// is refused (ErrInvalid). The registry says where to reach a node; it
	// is not Raft's configuration (hashicorp/raft's AddVoter and
	// RemoveServer change that).
	KindRegister Kind = 10
	// KindDeregister removes NodeID from the registry; removing an ID that
	// is not registered succeeds (the member is absent either way).
	KindDeregister Kind = 11
	// KindRenew extends the lease of an upload's reservations: each of
	// ReservationIDs still live gets Deadline if that is later than its
	// own. The coordinator renews while the upload makes progress, so a
	// slow upload, coordinated on any node, is never expired under it;
	// one whose coordinator died stops being renewed and expires.
	KindRenew Kind = 12
)

// MaxInlineSize bounds the Data of a KindCommitInline entry.
const MaxInlineSize = 64 << 10

// MaxContentTypeLen bounds a Commit's ContentType, in bytes.
const MaxContentTypeLen = 1024

// Command is one Raft log entry's payload. Which fields matter depends on
// Kind; the others are zero and not encoded.
type Command struct {
	Kind Kind
	// RequestID (any kind; 0 = none) names a proposal so that it applies
	// at most once: the state machine records the Result of the first
	// entry carrying a request id, and a later entry with the same id and
	// the same bytes is not executed but answered with that recorded
	// Result. A proposer whose outcome is unknown (leader lost, timeout)
	// retries the identical command under the same id. Choose ids at
	// random (64 bits): a different command reusing a recorded id is
	// refused with ErrRequestIDReused. The record is kept for DedupWindow
	// entries after the first application; a retry later than that is
	// executed again.
	RequestID uint64

	ReservationID uint64 // Reserve, Abort
	// ReservationIDs (Commit) are the upload's reservations in blob order;
	// the blob's extents are theirs, concatenated. Empty for an empty blob.
	ReservationIDs []uint64
	// Size (Reserve, Commit): bytes; a Commit's size is the sum of its
	// reservations' sizes.
	Size     int64
	Deadline int64 // Reserve: unix ns after which Expire frees it

	Key         string // Commit, Delete
	ContentType string // Commit
	// Identity (Commit) is the upload's identity, which seeded its chunk
	// checksums; stored as the blob record's ReservationID.
	Identity  uint64
	Created   int64    // Commit: unix ns, the coordinator's clock at proposal
	ChunkSize int64    // Commit
	Checksums []uint32 // Commit: one per chunk
	// Replicas (Commit) are the IDs of the nodes that hold the upload's
	// bytes durably, recorded with the blob (catalog.Blob.Replicas).
	// Encoded after the blob fields only when there are some, so a Commit
	// without them has the encoding of releases before replica sets.
	Replicas []string
	// IfMatch (Commit, Delete) requires the key's current version to be
	// this one; 0 means no condition.
	IfMatch uint64
	// IfNoneMatch (Commit) requires the key to be absent.
	IfNoneMatch bool

	Now int64 // Expire

	Geometry string // Init: the volume layout, volume.Placement.String() (a bare volume.Geometry.String() from releases before format 3)

	Data []byte // CommitInline: the blob's bytes

	NodeID   string // Register, Deregister: the member's Raft server ID
	APIAddr  string // Register: host:port of the member's HTTP API
	RaftAddr string // Register: host:port of the member's Raft transport
}

// Limits on decoded commands, so a hostile or corrupt entry cannot make the
// decoder allocate without bound.
const (
	maxKeyLen       = 1024
	maxContentType  = MaxContentTypeLen
	maxChecksums    = 1 << 20
	maxGeometryLen  = 256
	maxReservations = 1 << 16
	maxNodeIDLen    = catalog.MaxMemberIDLen
	maxAddrLen      = catalog.MaxMemberAddrLen
)

// Command formats (frozen: both are in the log). Format 1 is every command
// without a request id, exactly as releases before request ids wrote it;
// format 2 is format 1 with the request id, a uvarint that is never 0,
// right after the kind byte. Encode picks the format from RequestID, and
// DecodeCommand refuses format 2 with request id 0, so each command has one
// encoding.
const (
	commandFormatV1 = 1
	commandFormatV2 = 2
)

// ErrBadCommand is returned by DecodeCommand for bytes that are not a
// command. In the log that is a bug: the state machine stops loudly.
var ErrBadCommand = errors.New("raftfsm: malformed command")

// Validate checks the limits DecodeCommand enforces, so that nothing is
// proposed that the state machine would refuse to decode (an entry that
// does not decode stops every replica, at every replay).
func (c *Command) Validate() error {
	switch {
	case len(c.Key) > maxKeyLen:
		return fmt.Errorf("%w: key of %d bytes", ErrBadCommand, len(c.Key))
	case len(c.ContentType) > maxContentType:
		return fmt.Errorf("%w: content type of %d bytes", ErrBadCommand, len(c.ContentType))
	case len(c.Checksums) > maxChecksums:
		return fmt.Errorf("%w: %d checksums, at most %d", ErrBadCommand, len(c.Checksums), maxChecksums)
	case len(c.ReservationIDs) > maxReservations:
		return fmt.Errorf("%w: %d reservations, at most %d", ErrBadCommand, len(c.ReservationIDs), maxReservations)
	case len(c.Geometry) > maxGeometryLen:
		return fmt.Errorf("%w: geometry of %d bytes", ErrBadCommand, len(c.Geometry))
	case c.Size < 0 || c.ChunkSize < 0:
		return fmt.Errorf("%w: negative size", ErrBadCommand)
	case len(c.Data) > MaxInlineSize:
		return fmt.Errorf("%w: %d inline bytes, at most %d", ErrBadCommand, len(c.Data), MaxInlineSize)
	case len(c.NodeID) > maxNodeIDLen:
		return fmt.Errorf("%w: node id of %d bytes, at most %d", ErrBadCommand, len(c.NodeID), maxNodeIDLen)
	case len(c.Replicas) > catalog.MaxReplicas:
		return fmt.Errorf("%w: %d replicas, at most %d", ErrBadCommand, len(c.Replicas), catalog.MaxReplicas)
	case slices.ContainsFunc(c.Replicas, func(id string) bool { return id == "" || len(id) > maxNodeIDLen }):
		return fmt.Errorf("%w: a replica id that is empty or longer than %d bytes", ErrBadCommand, maxNodeIDLen)
	case len(c.APIAddr) > maxAddrLen || len(c.RaftAddr) > maxAddrLen:
		return fmt.Errorf("%w: address of %d/%d bytes, at most %d", ErrBadCommand, len(c.APIAddr), len(c.RaftAddr), maxAddrLen)
	}
	return nil
}

// Encode returns the command's frozen encoding: a format byte, the kind,
// the request id if there is one (format 2), then the kind's fields as
// varints and length-prefixed strings.
func (c *Command) Encode() []byte {
	b := make([]byte, 0, 50+len(c.Key)+len(c.ContentType)+4*len(c.Checksums)+len(c.Data)+
		len(c.NodeID)+len(c.APIAddr)+len(c.RaftAddr))
	if c.RequestID == 0 {
		b = append(b, commandFormatV1, byte(c.Kind))
	} else {
		b = append(b, commandFormatV2, byte(c.Kind))
		b = binary.AppendUvarint(b, c.RequestID)
	}
	switch c.Kind {
	case KindNoop:
	case KindInit:
		b = appendString(b, c.Geometry)
	case KindReserve:
		b = binary.AppendUvarint(b, c.ReservationID)
		b = binary.AppendVarint(b, c.Size)
		b = binary.AppendVarint(b, c.Deadline)
	case KindCommit:
		b = appendIDs(b, c.ReservationIDs)
		b = c.appendBlobFields(b)
		if len(c.Replicas) > 0 {
			b = binary.AppendUvarint(b, uint64(len(c.Replicas)))
			for _, id := range c.Replicas {
				b = appendString(b, id)
			}
		}
	case KindCommitInline:
		b = c.appendBlobFields(b)
		b = binary.AppendUvarint(b, uint64(len(c.Data)))
		b = append(b, c.Data...)
	case KindAbort:
		b = binary.AppendUvarint(b, c.ReservationID)
	case KindReserveBatch:
		b = appendIDs(b, c.ReservationIDs)
		b = binary.AppendVarint(b, c.Size)
		b = binary.AppendVarint(b, c.Deadline)
	case KindExpire:
		b = binary.AppendVarint(b, c.Now)
	case KindDelete:
		b = appendString(b, c.Key)
		b = binary.AppendUvarint(b, c.IfMatch)
	case KindRegister:
		b = appendString(b, c.NodeID)
		b = appendString(b, c.APIAddr)
		b = appendString(b, c.RaftAddr)
	case KindDeregister:
		b = appendString(b, c.NodeID)
	case KindRenew:
		b = appendIDs(b, c.ReservationIDs)
		b = binary.AppendVarint(b, c.Deadline)
	}
	return b
}

// appendBlobFields encodes the fields a Commit and a CommitInline share,
// after a Commit's reservation ids.
func (c *Command) appendBlobFields(b []byte) []byte {
	b = binary.AppendVarint(b, c.Size)
	b = appendString(b, c.Key)
	b = binary.AppendUvarint(b, c.Identity)
	b = appendString(b, c.ContentType)
	b = binary.AppendVarint(b, c.Created)
	b = binary.AppendVarint(b, c.ChunkSize)
	b = binary.AppendUvarint(b, c.IfMatch)
	b = appendBool(b, c.IfNoneMatch)
	b = binary.AppendUvarint(b, uint64(len(c.Checksums)))
	for _, s := range c.Checksums {
		b = binary.LittleEndian.AppendUint32(b, s)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendIDs(b []byte, ids []uint64) []byte {
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		b = binary.AppendUvarint(b, id)
	}
	return b
}

func appendBool(b []byte, v bool) []byte {
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: %s", ErrBadCommand, what)
	}
}

func (r *reader) uvarint(what string) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b)
	if n <= 0 || !minimal(r.b[:n]) {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

// minimal reports whether a (u)varint's bytes are its shortest encoding:
// a last byte of zero after a continuation byte only pads. Refusing padding
// keeps the encoding canonical: a decoded command re-encodes to the same
// bytes.
func minimal(v []byte) bool { return len(v) == 1 || v[len(v)-1] != 0 }

func (r *reader) varint(what string) int64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Varint(r.b)
	if n <= 0 || !minimal(r.b[:n]) {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) string(what string, limit int) string {
	n := r.uvarint(what)
	if r.err != nil {
		return ""
	}
	if n > uint64(limit) || n > uint64(len(r.b)) {
		r.fail(what + " length")
		return ""
	}
	s := string(r.b[:n])
	r.b = r.b[n:]
	return s
}

func (r *reader) ids() []uint64 {
	n := r.uvarint("reservation count")
	if r.err == nil && (n > maxReservations || n > uint64(len(r.b))) {
		r.fail("reservation count")
	}
	var ids []uint64
	for i := uint64(0); r.err == nil && i < n; i++ {
		ids = append(ids, r.uvarint("reservation id"))
	}
	return ids
}

func (r *reader) bool(what string) bool {
	if r.err != nil {
		return false
	}
	if len(r.b) < 1 || r.b[0] > 1 {
		r.fail(what)
		return false
	}
	v := r.b[0] == 1
	r.b = r.b[1:]
	return v
}

func (r *reader) blobFields(c *Command) {
	c.Size = r.varint("size")
	c.Key = r.string("key", maxKeyLen)
	c.Identity = r.uvarint("identity")
	c.ContentType = r.string("content type", maxContentType)
	c.Created = r.varint("created")
	c.ChunkSize = r.varint("chunk size")
	c.IfMatch = r.uvarint("if-match")
	c.IfNoneMatch = r.bool("if-none-match")
	n := r.uvarint("checksum count")
	if r.err == nil && (n > maxChecksums || n*4 > uint64(len(r.b))) {
		r.fail("checksum count")
	}
	if r.err == nil {
		c.Checksums = make([]uint32, n)
		for i := range c.Checksums {
			c.Checksums[i] = binary.LittleEndian.Uint32(r.b[4*i:])
		}
		r.b = r.b[4*n:]
	}
}

// DecodeCommand parses an encoding made by Encode. It never panics; any
// other input returns an error wrapping ErrBadCommand.
func DecodeCommand(data []byte) (Command, error) {
	if len(data) < 2 {
		return Command{}, fmt.Errorf("%w: %d bytes", ErrBadCommand, len(data))
	}
	c := Command{Kind: Kind(data[1])}
	r := &reader{b: data[2:]}
	switch data[0] {
	case commandFormatV1:
	case commandFormatV2:
		c.RequestID = r.uvarint("request id")
		if r.err == nil && c.RequestID == 0 {
			// Format 1 is the one encoding of a command without an id.
			r.fail("request id 0 in format 2")
		}
	default:
		return Command{}, fmt.Errorf("%w: format %d", ErrBadCommand, data[0])
	}
	switch c.Kind {
	case KindNoop:
	case KindInit:
		c.Geometry = r.string("geometry", maxGeometryLen)
	case KindReserve:
		c.ReservationID = r.uvarint("reservation id")
		c.Size = r.varint("size")
		c.Deadline = r.varint("deadline")
	case KindCommit:
		c.ReservationIDs = r.ids()
		r.blobFields(&c)
		if r.err == nil && len(r.b) > 0 {
			n := r.uvarint("replica count")
			if r.err == nil && (n == 0 || n > catalog.MaxReplicas) {
				r.fail("replica count")
			}
			for i := uint64(0); r.err == nil && i < n; i++ {
				id := r.string("replica id", maxNodeIDLen)
				if r.err == nil && id == "" {
					r.fail("empty replica id")
				}
				c.Replicas = append(c.Replicas, id)
			}
		}
	case KindCommitInline:
		r.blobFields(&c)
		n := r.uvarint("data length")
		if r.err == nil && (n > MaxInlineSize || n > uint64(len(r.b))) {
			r.fail("data length")
		}
		if r.err == nil {
			c.Data = append([]byte(nil), r.b[:n]...)
			r.b = r.b[n:]
		}
	case KindAbort:
		c.ReservationID = r.uvarint("reservation id")
	case KindReserveBatch:
		c.ReservationIDs = r.ids()
		c.Size = r.varint("size")
		c.Deadline = r.varint("deadline")
	case KindExpire:
		c.Now = r.varint("now")
	case KindDelete:
		c.Key = r.string("key", maxKeyLen)
		c.IfMatch = r.uvarint("if-match")
	case KindRegister:
		c.NodeID = r.string("node id", maxNodeIDLen)
		c.APIAddr = r.string("api address", maxAddrLen)
		c.RaftAddr = r.string("raft address", maxAddrLen)
	case KindDeregister:
		c.NodeID = r.string("node id", maxNodeIDLen)
	case KindRenew:
		c.ReservationIDs = r.ids()
		c.Deadline = r.varint("deadline")
	default:
		return Command{}, fmt.Errorf("%w: unknown kind %d", ErrBadCommand, data[1])
	}
	if r.err != nil {
		return Command{}, r.err
	}
	if len(r.b) != 0 {
		return Command{}, fmt.Errorf("%w: %d trailing bytes", ErrBadCommand, len(r.b))
	}
	if c.Size < 0 || c.ChunkSize < 0 || c.Size > math.MaxInt64/2 {
		return Command{}, fmt.Errorf("%w: negative size", ErrBadCommand)
	}
	return c, nil
}

// RandomID returns 64 random bits, never 0: an id no one else is drawing
// (a reservation's, or a request id that must not collide).
func RandomID() uint64 {
	var b [8]byte
	for {
		rand.Read(b[:])
		if id := binary.LittleEndian.Uint64(b[:]); id != 0 {
			return id
		}
	}
}
