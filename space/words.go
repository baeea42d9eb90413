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

// appendRuns appends one write per run of dirty words to tx and clears the
// dirty bits. buf is scratch space reused across calls.
func (ws *words) appendRuns(tx *volume.Txn, buf []byte) []byte {
	for di, d := range ws.dirty {
		for d != 0 {
			start := di*64 + bits.TrailingZeros64(d)
			end := start
			for end < len(ws.w) && ws.dirty[end>>6]&(1<<(end&63)) != 0 {
				ws.dirty[end>>6] &^= 1 << (end & 63)
				end++
			}
			buf = buf[:0]
			for _, v := range ws.w[start:end] {
				buf = binary.LittleEndian.AppendUint64(buf, v)
			}
			tx.Write(ws.off+int64(start)*8, buf)
			d = ws.dirty[di]
		}
	}
	ws.listed = false
	return buf
}
