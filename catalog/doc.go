// Package catalog is the node's bbolt-backed catalog: committed blobs and
// their extents, open reservations, small replicated settings, the outcomes
// of recent requests, the member registry, the last applied Raft index, and
// node-local bookkeeping.
//
// # Who writes what
//
// The replicated buckets are written only by the Raft state machine, inside
// DB.Update, one transaction per applied batch, with SetAppliedIndex in the
// same transaction as the changes it covers: after a crash the catalog holds
// exactly the effects of entries up to its applied index. Nothing here reads
// a clock or a random source, and every iteration is in key order, so the
// same entries applied to the same state give the same records on every node.
// The local bucket is written by this node's data path, repairer and
// scrubber; it never enters replicated state.
//
// # Durability
//
// Without Options.NoSync every Update is durable when it returns. With NoSync
// commits are written but not synced; the Raft log is the durable record and
// the state machine calls DB.Sync before a Raft snapshot is taken, so the
// catalog is durable up to any snapshot's index.
//
// # Buckets (layout version 2)
//
// All integers in keys are big-endian so that byte order is numeric order.
//
//	meta                      replicated; catalog bookkeeping
//	  "layout"                uint64: bucket layout version (2). Open
//	                          upgrades layout 1 (below) and refuses any other
//	                          value with ErrUnknownLayout.
//	  "applied-index"         uint64: last applied Raft index (absent = 0)
//	  "blob-count"            uint64: number of keys in blobs (absent = 0)
//	blobs                     replicated
//	  key (1..1024 bytes)     blob record
//	reservations              replicated
//	  id (uint64, never 0)    reservation record
//	reservations-by-deadline  replicated; index maintained by PutReservation
//	                          and DeleteReservation
//	  deadline^(1<<63) (uint64) | id (uint64)  -> empty value
//	                          (the sign bit is flipped so negative deadlines
//	                          sort first)
//	settings                  replicated; PutMeta/GetMeta
//	  name (1..1024 bytes)    opaque value, at most 64 KiB
//	requests                  replicated (layout 2); PutRequest/GetRequest
//	  id (uint64, never 0)    request record: the outcome of the command
//	                          that carried request id (raftfsm's
//	                          deduplication table)
//	requests-by-index         replicated (layout 2); index maintained by
//	                          PutRequest and PruneRequests
//	  index (uint64) | id (uint64)  -> empty value, where index is the
//	                          request record's Index. Invariant: exactly one
//	                          entry per request, none above the applied index.
//	members                   replicated (layout 2); PutMember/DeleteMember
//	  id (1..256 bytes)       member record (a node's Raft server ID)
//	local                     node-local; never trusted from a snapshot
//	  key                     uint64: the blob version this node holds
//	                          verified data for. Invariant: a blob with this
//	                          key and version exists (MarkLocal checks it;
//	                          PutBlob with a new version and DeleteBlob
//	                          remove the mark).
//
// Layout 1 (releases before request deduplication) lacks the requests,
// requests-by-index and members buckets; everything else is identical. Open
// upgrades a layout-1 file in place and Restore upgrades a layout-1
// snapshot before checking it, both in one synced transaction that creates
// the three buckets empty (a layout-1 node recorded no requests or members)
// and sets the version to 2. A build of layout 1 refuses a layout-2 file or
// snapshot with ErrUnknownLayout: upgrade every node of a group before any
// of them sends a snapshot.
//
// # Record encodings (format versions 1 and 2)
//
// Records start with a format-version byte. uvarint is encoding/binary's
// unsigned varint, which must be minimally encoded (no trailing 0x00 byte);
// varint is its zig-zag signed form. Every record has exactly one encoding,
// so decoding and re-encoding gives back the same bytes, and nodes that
// applied the same entries hold the same record bytes.
//
// Blob (the key is the bbolt key, not repeated in the value):
//
//	byte     0x01 (no Replicas) or 0x02 (Replicas recorded)
//	uvarint  Version
//	uvarint  Size (<= MaxInt64)
//	uvarint  ChunkSize (<= MaxInt64; 0 only when Size is 0)
//	varint   Created (unix ns)
//	uvarint  ReservationID
//	uvarint  len(ContentType) (<= 1024), then its bytes
//	uvarint  extent count n (<= MaxExtents), then n times:
//	           uvarint Offset, uvarint Length
//	format 2 only: uvarint replica count r (1..MaxReplicas), then r times:
//	           uvarint len(ID) (1..MaxMemberIDLen), then its bytes
//	         ceil(Size/ChunkSize) CRC32C values, uint32 big-endian each,
//	         to the end of the record (their count is implied, not stored)
//
// Format 1 is exactly the record of releases before replica sets; a blob
// with no Replicas is always written in it, so each blob has one encoding.
//
// Reservation (the ID is the bbolt key):
//
//	byte     0x01
//	uvarint  Size
//	varint   Deadline (unix ns)
//	uvarint  extent count n, then n times: uvarint Offset, uvarint Length
//
// Request (the ID is the bbolt key):
//
//	byte     0x01
//	uvarint  Index (never 0)
//	uint32   Fingerprint, big-endian
//	uvarint  Code
//	uvarint  Version
//	uvarint  extent count n, then n times: uvarint Offset, uvarint Length
//	uvarint  batch count m (<= MaxRequestBatch), then m extent lists, each
//	         as above
//	byte     0x00 (no Old blob) and the end of the record, or 0x01 and:
//	uvarint  len(Old.Key) (1..1024), then its bytes
//	         the Old blob's record (as above, format byte included) to the
//	         end of the record
//
// Member (the ID is the bbolt key):
//
//	byte     0x01
//	uvarint  len(APIAddr) (<= 512), then its bytes
//	uvarint  len(RaftAddr) (<= 512), then its bytes
//
// Blob, reservation and request records require every extent to have
// Offset >= 0 and Length > 0, without overflow, and (blob and reservation)
// the lengths to sum to at least Size. Encoders refuse a record breaking an invariant (ErrInvalidRecord);
// decoders report it, and any other malformed input, as ErrCorrupt, never
// panic, and allocate at most in proportion to the input.
//
// # Snapshots
//
// A snapshot is a framed image of the whole bbolt file as one read
// transaction saw it:
//
//	"BNCATSN1" | body length (uint64) | body (bbolt Tx.WriteTo) | CRC32C(body) (uint32)
//
// Restore checks the frame before bbolt sees the bytes (a truncated image
// would otherwise be mapped past the end of the file), then checks the
// received file, keeps only this node's local marks that still match a
// received blob, and swaps the file in with a rename.
package catalog
