package main

import (
	"encoding/binary"
	"hash/fnv"
	"io"
)

// pattern is the deterministic pseudo-random byte stream of one blob. The
// stream is a function of the key alone (splitmix64 seeded with the key's
// FNV-1a hash), so a reader can regenerate the expected bytes of any blob
// instead of keeping what it wrote. Filling the stream in pieces of any sizes
// yields the same bytes as filling it at once.
type pattern struct {
	state uint64
	word  [8]byte
	used  int // bytes of word already handed out; 8 means none are left
}

func newPattern(key string) pattern {
	h := fnv.New64a()
	io.WriteString(h, key)
	return pattern{state: h.Sum64(), used: 8}
}

func (p *pattern) next() uint64 {
	p.state += 0x9e3779b97f4a7c15
	z := p.state
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9
	z = (z ^ (z >> 27)) * 0x94d049bb133111eb
	return z ^ (z >> 31)
}

// fill writes the next len(b) bytes of the stream into b.
func (p *pattern) fill(b []byte) {
	for len(b) > 0 && p.used < 8 {
		b[0] = p.word[p.used]
		b = b[1:]
		p.used++
	}
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, p.next())
		b = b[8:]
	}
	if len(b) > 0 {
		binary.LittleEndian.PutUint64(p.word[:], p.next())
		p.used = copy(b, p.word[:])
	}
}

// contentReader is the body of one blob: the first size bytes of its key's
// pattern. It generates into the caller's buffer and holds no copy.
type contentReader struct {
	p      pattern
	remain int64
}

func newContentReader(key string, size int64) *contentReader {
	return &contentReader{p: newPattern(key), remain: size}
}

func (r *contentReader) Read(b []byte) (int, error) {
	if r.remain == 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > r.remain {
		b = b[:r.remain]
	}
	r.p.fill(b)
	r.remain -= int64(len(b))
	return len(b), nil
}
