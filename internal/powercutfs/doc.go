// Package powercutfs is a FUSE filesystem for tests that loses what a power
// cut loses. It passes through to a backing directory that holds only the
// durable state; everything not yet made durable by an fsync is kept in
// memory, and reads see durable and unsynced state together. [FS.Cut]
// stops the mount at once (every operation fails with EIO), decides what
// of the unsynced state reached the "disk" (drop all, keep a random subset,
// or tear some writes; seeded, see [Mode]) and unmounts. Mounting the
// backing directory again shows only what survived.
//
// # The model
//
// File data. A write, a truncate (also O_TRUNC) and a size-extending
// fallocate are unsynced changes of that file. fsync or fdatasync of the
// file (the same thing here) makes all of its unsynced changes durable,
// and nothing else: no other file's, and not the file's name. A cut keeps
// none of them (DropAll), or each with probability 1/2, applied in the
// order they were made (KeepRandom), or like KeepRandom with half of the
// kept writes torn (Tear). A torn write lands only a prefix of its pieces,
// the pieces being the write's range split at 512-byte sector boundaries
// of the file; with probability 1/2 the piece after that prefix reads back
// as garbage, bytes that are neither the old nor the new ones. A torn
// write grows the file only as far as the bytes that landed, a dropped
// one not at all.
//
// Namespace. Creating a file, mkdir, unlink, rmdir and rename are unsynced
// namespace operations, kept in one ordered log for the whole mount, as a
// journaling filesystem (ext4, XFS) keeps them. An fsync of a directory
// makes durable every logged operation up to and including the last one
// that changed an entry of that directory; a cut keeps a random prefix of
// the log (nothing, with DropAll). So a new file's name is durable only
// after its directory is fsynced (POSIX; ext4 happens to be kinder), but a
// directory fsync also carries the operations logged before it, as every
// journaling filesystem does (hashicorp/raft's snapshot store relies on
// that: it fsyncs the snapshots directory after renaming a temporary
// directory whose own entries were never fsynced). A file's data and its
// name are independent: data synced into a file whose create was lost is
// lost with it, as an unlinked inode is freed; a durable name whose data
// was never synced is an empty or shorter file.
//
// The durable state is the backing directory's "tree" subdirectory; files
// not yet durably linked, or durably unlinked while open, live in its
// "orphans" subdirectory, which a mount empties. The backing files
// themselves are never fsynced: the host does not lose power during a
// test, only the model does.
//
// # Failing an fsync
//
// [FS.FailNextFsync] arms a failure of the next fsync or fdatasync of a
// file with a given name, as a disk whose writeback fails makes Linux
// fail one. Linux reports a failed writeback once, to the next fsync of
// the file, and marks the pages it could not write clean: they are never
// written again, so no later fsync makes them durable, and reads see them
// for as long as they stay in the page cache. Here that fsync returns
// EIO, and all of the file's unsynced writes and size changes are
// dropped: they are not durable, a later fsync of the file makes durable
// only what was changed after the failure (applied to the durable
// content, not to what reads show), and a cut or a clean unmount loses
// them too. Reads through the mount keep seeing them until the mount ends
// (the model's page cache never evicts), as does a process that reopens
// the file, just as after a process restart without a reboot; only after
// a cut, or an unmount, and a new mount are they gone. The fault fires
// once; it says which file, whether it was an fdatasync, and what was
// dropped. Other files, and the file's name, are not affected.
//
// # Failing reads
//
// [FS.FailReads] makes reads of a byte range of a file with a given name
// fail with EIO, as a disk with unreadable sectors does, until
// [FS.ClearReadFaults]; the bytes themselves are not touched and read back
// once the faults are cleared. Since the kernel answers reads from its
// page cache (see "Serving"), FailReads drops the cached pages of the
// range before it returns, so that every read of those bytes reaches the
// FS and fails. Reads fail whole pages, as the kernel asks for them;
// writes, fsyncs and cuts are not affected.
//
// # What it does not model
//
//   - Durability of attributes: mode, owner and times are kept in memory
//     only and are not part of the durable state (mode is reloaded from
//     the backing file, the others are the host's).
//   - Hard links, symbolic links, special files, extended attributes,
//     RENAME_EXCHANGE, fallocate modes other than 0 and KEEP_SIZE
//     (allocation itself: backing files are sparse), ENOSPC, and I/O
//     errors of the device other than an armed failed fsync or failing
//     read.
//   - Of a failing read: a write into the range after arming lands in the
//     page cache, and reads of those pages are then served from there
//     without failing (a real bad sector may or may not be remapped by a
//     write).
//   - Of a failed fsync: Linux reports it to every open file description
//     of the file that was open at the failure (and, since 4.16, to an
//     open after it if no one saw it), here to exactly one fsync; Linux's
//     journaling filesystems still commit size changes as metadata, here
//     they are dropped with the writes; and Linux evicts the clean pages
//     in time, after which reads see the old bytes, here never within a
//     mount.
//   - A garbage sector wider than the torn write: only bytes the write
//     covered become garbage, never bytes of the sector it did not touch.
//     (On a real disk a sector torn mid-write is unreadable whole; code
//     that appends at unaligned offsets, such as raft-wal, would lose
//     synced bytes sharing the sector, and that is not what these tests
//     are about.)
//   - Reordering of writes to the same bytes: kept writes land in the
//     order they were made, so a later write is never overwritten by an
//     earlier one.
//   - Unsynced state surviving a cut by the kernel's own writeback ahead
//     of time is modelled only as the random subset KeepRandom keeps.
//   - Locks: flock and POSIX locks are the kernel's, local to the mount
//     (they vanish with it, as with a reboot).
//
// # Serving
//
// Everything is served under one mutex, which also makes the cut a single
// instant. The kernel caches pages, entries and attributes, which is
// coherent because every change passes through the kernel (FUSE without
// writeback caching: a write goes into the page cache and on to the FS
// before it returns), and a cut ends the mount and its caches. The page
// cache is kept across opens and never dropped because an mtime or size
// changed: the kernel copies a write into a cached page before it sends
// it on, and a page dropped in that window would be fetched again from
// the FS without the write and stay stale (bbolt, reading through mmap
// while it writes with pwrite, then reads a page of zeros).
//
// A process must not fault on a mapping of a mount that it serves itself:
// the faulting thread waits for the FUSE server, which cannot run while
// the Go runtime waits for that thread to stop the world. Serve the mount
// from the test and run what maps files (blobnode, bbolt) as another
// process.
package powercutfs
