// Package volume is the preallocated volume file under a blobnode: the
// superblock, the region layout, the metadata journal that makes allocator
// changes atomic and durable, unjournaled data I/O on the heap, and
// batched fsyncs.
//
// Everything below the package goes through a [Device] (ReadAt, WriteAt,
// Sync, Size, Close). [FileDevice] is a preallocated regular file;
// [MemDevice] is an in-memory twin that loses, keeps or tears unsynced
// writes on [MemDevice.Crash] and can crash at an exact operation, for
// crash tests here and in the packages above. A [Recorder] records one
// run's writes and syncs, with the test's own events between them, as a
// [Trace] that rebuilds, on a fresh MemDevice, the state a power cut
// leaves at any of the run's sync boundaries: crash sweeps enumerate them.
//
// # Layout
//
// A volume is one device divided into regions, each starting on a
// 4096-byte boundary, fixed at [Format] time and recorded in the
// superblock:
//
//	[0, 4096)                        superblock
//	[4096, 12288)                    data mark: two slots, one per page (versions 2 and 3)
//	[JournalOffset, +JournalSize)    metadata journal (JournalOffset = 12288; 4096 in version 1)
//	[StateOffset, +StateSize)        allocator state (package space owns its contents)
//	[HeapOffset, +HeapSize)          blob data; HeapSize = floor((VolumeSize-HeapOffset)/lpage)*lpage
//
// Every offset the API takes (Txn.Write, ReadMeta, WriteMetaDirect, ReadAt,
// WriteAt) is absolute in the device, and is checked against its region.
//
// # Superblock (frozen, versions 1 to 3)
//
// Version 2 differs from version 1 only in where the data mark lives (its
// own two pages, so that marks never rewrite the superblock's page; in
// version 1, sectors 2 and 3 of the superblock's page) and so where the
// journal starts. Version 3 differs from version 2 only inside the
// journal region: each header slot has a page of its own. This code
// writes version 3 and opens all three.
//
// At offset 0, 4096 bytes reserved, integers little-endian:
//
//	offset size field
//	     0    8 magic "BLOBNODE"
//	     8    4 format version, u32 = 1, 2 or 3
//	    12   16 volume UUID
//	    28    8 VolumeSize, u64 (bytes)
//	    36    1 SpageShift, u8 (12..20)
//	    37    1 LpageShift, u8 (SpageShift..min(SpageShift+15, 30))
//	    38    2 padding, zero (not checked)
//	    40    8 JournalOffset, u64
//	    48    8 JournalSize, u64
//	    56    8 StateOffset, u64
//	    64    8 StateSize, u64
//	    72    8 HeapOffset, u64
//	    80    8 HeapSize, u64
//	    88    4 CRC32C (Castagnoli) of bytes [0, 88)
//	    92 4004 reserved, zero, not checked (version 1: data mark slots at 1024 and 1536)
//
// [DecodeSuperblock] checks, in order: length ([ErrTruncated]), magic
// ([ErrNotVolume]), version ([ErrUnsupportedVersion]), CRC ([ErrChecksum]),
// then the geometry ranges and the layout (regions adjacent in the order
// above, aligned, inside VolumeSize, heap a whole number of lpages with
// less than one lpage left over), both [ErrBadGeometry].
//
// # Journal region (frozen)
//
// The journal region starts with two header slots, written alternately
// (ping-pong). In version 3 each has a 4096-byte page of its own, A at +0
// and B at +4096, and the log area runs from +8192 to the region's end: a
// checkpoint rewrites one slot, and no torn page write can damage both. In
// versions 1 and 2 both share the first page (A at +0, B at +512) and the
// log area starts at +4096. A header slot (512 bytes), integers
// little-endian:
//
//	offset size field
//	     0    4 magic "BNJH"
//	     4    8 generation, u64
//	    12    8 nextSeq, u64: sequence number of the record at the log start
//	    20    4 CRC32C of bytes [0, 20)
//	    24  488 zero
//
// Open uses the valid slot with the higher generation; if neither is valid
// the journal is corrupt ([CorruptError]). Format writes slot A with
// generation 1 and nextSeq 1 and zeroes slot B.
//
// The log is a sequence of records written from the log start. Each record
// holds one group of transactions that were committed together, so a torn
// group is a torn record. Records start on 512-byte boundaries and are
// zero-padded to a multiple of 512 bytes. The record header (32 bytes):
//
//	offset size field
//	     0    4 magic "BNJR"
//	     4    8 seq, u64: nextSeq for the first record after a checkpoint, then +1 each
//	    12    4 payloadLen, u32
//	    16    4 payloadCRC, u32: CRC32C of the payload
//	    20    8 volume tag, u64: UUID[0:8] XOR UUID[8:16] (as two little-endian u64)
//	    28    4 headerCRC, u32: CRC32C of bytes [0, 28)
//
// The payload (payloadLen bytes, directly after the header):
//
//	count u32, then count times: offset u64 (absolute), len u32, len bytes
//
// The volume tag sits where the brief had 8 bytes of padding: it keeps a
// record left in the log area by an earlier format of the same file from
// ever being replayed into this volume.
//
// # Journal protocol
//
// A [Txn] is an ordered list of writes into the state region. [Journal.Submit]
// queues it; one goroutine owned by the Journal takes everything queued
// (up to 4 MiB of payload, never more than the log can hold), encodes it
// as one record with the next sequence number (writes that overlap or
// touch merged into one, each byte as the last of them wrote it; a record
// carries only bytes its transactions wrote, never bytes read back from
// the device), and then:
//
//  1. WriteAt the record at the log tail, then Device.Sync. This fsync is the
//     commit point: once it returns, the group survives a crash and will be
//     replayed, so only now may anyone be told it committed or see its
//     effects. Many concurrent transactions share it (group commit).
//  2. Apply each write in place with WriteAt, in order, then complete the
//     futures ([Commit.Wait] returns nil). The in-place writes are not
//     synced here: until they are, the record in the log covers them.
//
// When the next record does not fit between the tail and the end of the
// log, the journal checkpoints:
//
//  1. Device.Sync, so every in-place write of every logged record is durable
//     and the log is no longer needed.
//  2. Write the other header slot with generation+1 and nextSeq = the next
//     sequence number, then Device.Sync. Until this fsync returns the old
//     slot wins, and replaying the old log is harmless (records carry
//     after-images and are applied in order, so replay is idempotent).
//     Nothing is written at the log start before this fsync returns, so a
//     new record can never be paired with the old header.
//  3. Continue at the log start.
//
// Sequence numbers never repeat, so a stale record from an earlier lap of
// the log (seq below nextSeq) is never mistaken for a new one.
//
// Open replays from the log start with expected = nextSeq: it stops (a torn
// tail, normal) at the first header that is invalid, belongs to another
// volume, or carries a sequence number other than expected. A record whose
// header is valid but whose payload CRC fails is a torn tail too, unless
// the next padded position holds a valid header with seq = expected+1: a
// record is written only after the one before it was synced, so that is
// corruption in the middle of the log, and Open refuses with a
// [*CorruptError] (matching [ErrCorrupt]). A valid record whose writes fall
// outside the state region is also corruption. After applying any records
// Open syncs and checkpoints, so the log is empty again. A cleanly closed
// volume (Close checkpoints) therefore opens reading O(1) bytes: the
// superblock, the two header slots and one record header.
//
// The weakness of this scheme, shared with every redo log that cannot tell
// a torn write from a damaged one: corruption of the last record is taken
// for a torn tail, and that record's transactions are lost silently.
//
// # Other durability invariants
//
//   - Format writes the journal header slots and syncs before it writes the
//     superblock and syncs again: a valid superblock always points at an
//     initialised journal, and a crash during Format leaves a device Open
//     rejects with ErrNotVolume.
//   - Blob data is not journaled. [Volume.SyncData] is a group fdatasync: a
//     caller returns after a Device.Sync that started after it was called
//     has completed, so its completed writes are durable. A failed Sync is
//     sticky (after fdatasync fails the kernel may have dropped the dirty
//     pages; a later successful Sync proves nothing about them).
//   - A device error inside the journal is sticky too: the journal stops
//     writing and fails every later transaction; reopening replays the log.
//   - [Volume.WriteMetaDirect] checkpoints the journal first, so no logged
//     record can replay over a direct write.
//   - [CreateFileDevice] preallocates with fallocate and fsyncs the file and
//     its directory, so the file, its size and its extents survive a crash
//     and later fdatasyncs need not change the file's size.
package volume
