package space

import (
	"encoding/binary"
	"math/bits"

	"github.com/blobnode/blobnode/volume"
)

// words is a cached run of little-endian u64 words of allocator state at an
// absolute device offset, with a bit per word that says it changed since the
// last transaction was sealed.
type words struct {
	off    int64
	w      []uint64
	dirty  []uint64
	listed bool // on the allocator's dirty list
}

func newWords(off int64, n int) *words {
	return &words{off: off, w: make([]uint64, n), dirty: make([]uint64, (n+63)/64)}
}

func (ws *words) decode(b []byte) {
	for i := range ws.w {
		ws.w[i] = binary.LittleEndian.Uint64(b[i*8:])
	}
}

// markAll marks every word dirty (not the bitmap's bits past the end).
func (ws *words) markAll() {
	for i := range ws.w {
		ws.dirty[i>>6] |= 1 << (i & 63)
	}
}

func (ws *words) bit(i int) bool { return ws.w[i>>6]&(1<<(i&63)) != 0 }

// maxMergeGap is the most clean words appendRuns writes between two dirty
// ones to make their writes one.
//
// Why: a small allocation changes a word at each level of its lpage's
// tree, tens to hundreds of bytes apart, and the journal applies each
// write of a transaction with a write of its own: one word per write was
// most of a node's system calls under small PUTs (strace, 1 KiB PUTs at
// 16 clients: 3.5 heap-volume pwrites per PUT, allocator words nearly all
// of them). A clean word rewritten holds what it held: ws caches all of
// its run, so the bytes come from memory, never read back from the device
// (where, after a failed sync, they may be older).
const maxMergeGap = 64

// appendRuns appends to tx one write per run of dirty words, runs less
// than maxMergeGap clean words apart written as one, and clears the dirty
// bits. buf is scratch space reused across calls.
func (ws *words) appendRuns(tx *volume.Txn, buf []byte) []byte {
	start, end := -1, -1 // the write being gathered: words [start, end)
	flush := func() {
		buf = buf[:0]
		for _, v := range ws.w[start:end] {
			buf = binary.LittleEndian.AppendUint64(buf, v)
		}
		tx.Write(ws.off+int64(start)*8, buf)
	}
	for di, d := range ws.dirty {
		for d != 0 {
			i := di*64 + bits.TrailingZeros64(d)
			d &= d - 1
			if start >= 0 && i-end <= maxMergeGap {
				end = i + 1
				continue
			}
			if start >= 0 {
				flush()
			}
			start, end = i, i+1
		}
		ws.dirty[di] = 0
	}
	if start >= 0 {
		flush()
	}
	ws.listed = false
	return buf
}
