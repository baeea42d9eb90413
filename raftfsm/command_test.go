package raftfsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

// sampleCommands holds one or more valid commands of every kind, including
// the extreme values each field can take.
func sampleCommands() []Command {
	return []Command{
		{Kind: KindNoop},
		{Kind: KindInit, Geometry: "spage=4096 lpage=262144 volume=16777216"},
		{Kind: KindInit, Geometry: ""},
		{Kind: KindInit, Geometry: strings.Repeat("g", maxGeometryLen)},
		{Kind: KindReserve, ReservationID: 1, Size: 1, Deadline: 0},
		{Kind: KindReserve, ReservationID: math.MaxUint64, Size: math.MaxInt64 / 2, Deadline: math.MinInt64},
		{Kind: KindReserve, ReservationID: 300, Size: 0, Deadline: math.MaxInt64},
		{Kind: KindCommit, ReservationIDs: nil, Key: "empty", Checksums: []uint32{}},
		{
			Kind: KindCommit, ReservationIDs: []uint64{1, 2, math.MaxUint64}, Size: 1 << 20,
			Key: "a/b/c", Identity: 42, ContentType: "application/octet-stream",
			Created: 1_700_000_000_000_000_000, ChunkSize: 256 << 10,
			Checksums: []uint32{0, 1, math.MaxUint32, 0xdeadbeef}, IfMatch: 7, IfNoneMatch: true,
		},
		{
			Kind: KindCommit, ReservationIDs: []uint64{9}, Size: 5, Key: strings.Repeat("k", maxKeyLen),
			ContentType: strings.Repeat("c", maxContentType), Created: -1, ChunkSize: 5,
			Checksums: []uint32{3}, IfMatch: math.MaxUint64,
		},
		{Kind: KindAbort, ReservationID: 0},
		{Kind: KindAbort, ReservationID: math.MaxUint64},
		{Kind: KindExpire, Now: 0},
		{Kind: KindExpire, Now: -5},
		{Kind: KindExpire, Now: math.MaxInt64},
		{Kind: KindDelete, Key: "k", IfMatch: 0},
		{Kind: KindDelete, Key: "", IfMatch: 1 << 40},
		{Kind: KindReserveBatch, ReservationIDs: []uint64{1, 2, math.MaxUint64}, Size: 4096, Deadline: 5},
		{Kind: KindReserveBatch, Size: math.MaxInt64 / 2, Deadline: math.MinInt64},
		{
			Kind: KindCommitInline, Size: 3, Key: "small", Identity: 99, ContentType: "text/plain",
			Created: 5, ChunkSize: 256 << 10, Checksums: []uint32{0xabcdef01}, IfNoneMatch: true,
			Data: []byte("abc"),
		},
		{
			Kind: KindCommitInline, Size: MaxInlineSize, Key: "k", ChunkSize: MaxInlineSize,
			Checksums: []uint32{1}, IfMatch: 3, Data: bytes.Repeat([]byte{7}, MaxInlineSize),
		},
		{Kind: KindCommitInline, Key: "k", Checksums: []uint32{}},
	}
}

// normalise gives a command the shape DecodeCommand returns, so a round trip
// can be compared with reflect.DeepEqual: Commit always has a non-nil
// checksum slice.
func normalise(c Command) Command {
	if (c.Kind == KindCommit || c.Kind == KindCommitInline) && c.Checksums == nil {
		c.Checksums = []uint32{}
	}
	if len(c.ReservationIDs) == 0 {
		c.ReservationIDs = nil
	}
	if len(c.Data) == 0 {
		c.Data = nil
	}
	return c
}

func TestCommandRoundTrip(t *testing.T) {
	for _, c := range sampleCommands() {
		enc := c.Encode()
		got, err := DecodeCommand(enc)
		if err != nil {
			t.Fatalf("DecodeCommand(Encode(%+v)): %v", c, err)
		}
		if want := normalise(c); !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
		}
		if re := got.Encode(); !bytes.Equal(re, enc) {
			t.Fatalf("re-encoding of kind %d differs:\n got %x\nwant %x", c.Kind, re, enc)
		}
	}
}

// TestEncodeIgnoresOtherKindsFields: fields that do not belong to a kind are
// not encoded, so they cannot change a command's bytes.
func TestEncodeIgnoresOtherKindsFields(t *testing.T) {
	noise := Command{
		ReservationID: 5, ReservationIDs: []uint64{1}, Size: 9, Deadline: 3, Key: "x",
		ContentType: "y", Identity: 1, Created: 2, ChunkSize: 3, Checksums: []uint32{1},
		IfMatch: 4, IfNoneMatch: true, Now: 8, Geometry: "z",
	}
	noise.Kind = KindNoop
	if got := noise.Encode(); !bytes.Equal(got, []byte{commandFormatV1, byte(KindNoop)}) {
		t.Fatalf("noop with noise encodes as %x", got)
	}
	noise.Kind = KindAbort
	if got, want := noise.Encode(), (&Command{Kind: KindAbort, ReservationID: 5}).Encode(); !bytes.Equal(got, want) {
		t.Fatalf("abort with noise encodes as %x, want %x", got, want)
	}
}

func TestDecodeCommandMalformed(t *testing.T) {
	hdr := func(k Kind) []byte { return []byte{commandFormatV1, byte(k)} }
	uv := binary.AppendUvarint
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	// commitFrom builds a Commit encoding from its reservation-count field on.
	commitTail := func() []byte {
		b := binary.AppendVarint(nil, 0) // size
		b = uv(b, 1)                     // key length
		b = append(b, 'k')
		b = uv(b, 0)                  // identity
		b = uv(b, 0)                  // content type length
		b = binary.AppendVarint(b, 0) // created
		b = binary.AppendVarint(b, 0) // chunk size
		b = uv(b, 0)                  // if-match
		return append(b, 0)           // if-none-match
	}
	cases := []struct {
		name string
		data []byte
	}{
		{"empty", nil},
		{"one byte", []byte{commandFormatV1}},
		{"format 0", []byte{0, byte(KindNoop)}},
		{"format 2", []byte{2, byte(KindNoop)}},
		{"kind 0", hdr(0)},
		{"kind 10", hdr(10)},
		{"inline data over limit", cat(hdr(KindCommitInline), commitTail(), []byte{0}, uv(nil, MaxInlineSize+1), make([]byte, MaxInlineSize+1))},
		{"inline data past end", cat(hdr(KindCommitInline), commitTail(), []byte{0}, uv(nil, 4), []byte("abc"))},
		{"inline data missing", cat(hdr(KindCommitInline), commitTail(), []byte{0})},
		{"kind 255", hdr(255)},
		{"noop trailing byte", append(hdr(KindNoop), 0)},
		{"reserve trailing byte", append((&Command{Kind: KindReserve, ReservationID: 1, Size: 1}).Encode(), 0)},
		{"delete trailing bytes", append((&Command{Kind: KindDelete, Key: "k"}).Encode(), 1, 2, 3)},
		{"varint overflow", cat(hdr(KindAbort), bytes.Repeat([]byte{0xff}, 10), []byte{0x01})},
		{"varint too long", cat(hdr(KindAbort), bytes.Repeat([]byte{0x80}, 11), []byte{0x00})},
		{"non-minimal uvarint", cat(hdr(KindAbort), []byte{0x81, 0x00})},
		{"non-minimal uvarint zero", cat(hdr(KindAbort), []byte{0x80, 0x80, 0x00})},
		{"non-minimal varint", cat(hdr(KindExpire), []byte{0x82, 0x80, 0x00})},
		{"non-minimal string length", cat(hdr(KindInit), []byte{0x81, 0x00}, []byte("g"))},
		{"geometry too long", cat(hdr(KindInit), uv(nil, maxGeometryLen+1), bytes.Repeat([]byte{'g'}, maxGeometryLen+1))},
		{"string past end", cat(hdr(KindDelete), uv(nil, 5), []byte("abc"))},
		{"string length huge", cat(hdr(KindDelete), uv(nil, math.MaxUint64), []byte("abc"))},
		{"key too long", cat(hdr(KindDelete), uv(nil, maxKeyLen+1), bytes.Repeat([]byte{'k'}, maxKeyLen+1), []byte{0})},
		{"reserve negative size", (&Command{Kind: KindReserve, ReservationID: 1, Size: -1}).Encode()},
		{"reserve size too large", (&Command{Kind: KindReserve, ReservationID: 1, Size: math.MaxInt64/2 + 1}).Encode()},
		{"commit negative chunk size", (&Command{Kind: KindCommit, Key: "k", ChunkSize: -1}).Encode()},
		{"commit reservation count huge", cat(hdr(KindCommit), uv(nil, math.MaxUint64), commitTail(), []byte{0})},
		{"commit reservation count over limit", cat(hdr(KindCommit), uv(nil, maxReservations+1), bytes.Repeat([]byte{1}, maxReservations+1), commitTail(), []byte{0})},
		{"commit reservation count past end", cat(hdr(KindCommit), uv(nil, 3), []byte{1, 2})},
		{"reserve batch count past end", cat(hdr(KindReserveBatch), uv(nil, 3), []byte{1, 2})},
		{"reserve batch count over limit", cat(hdr(KindReserveBatch), uv(nil, maxReservations+1), bytes.Repeat([]byte{1}, maxReservations+1), []byte{2, 2})},
		{"reserve batch negative size", (&Command{Kind: KindReserveBatch, ReservationIDs: []uint64{1}, Size: -4096}).Encode()},
		{"reserve batch non-minimal id", cat(hdr(KindReserveBatch), uv(nil, 1), []byte{0x81, 0x00}, []byte{2, 2})},
		{"commit checksum count huge", cat(hdr(KindCommit), uv(nil, 0), commitTail(), uv(nil, math.MaxUint64))},
		{"commit checksum count over limit", cat(hdr(KindCommit), uv(nil, 0), commitTail(), uv(nil, maxChecksums+1), make([]byte, 4*(maxChecksums+1)))},
		{"commit checksum count past end", cat(hdr(KindCommit), uv(nil, 0), commitTail(), uv(nil, 2), make([]byte, 7))},
		{"commit checksums trailing byte", cat(hdr(KindCommit), uv(nil, 0), commitTail(), uv(nil, 1), make([]byte, 5))},
		{"commit bool 2", cat(hdr(KindCommit), uv(nil, 0), commitTail()[:len(commitTail())-1], []byte{2}, uv(nil, 0))},
		{"commit bool missing", cat(hdr(KindCommit), uv(nil, 0), commitTail()[:len(commitTail())-1])},
	}
	// Every strict prefix of a valid encoding is malformed: the format is
	// self-delimiting, so no encoding is a prefix of another.
	for _, c := range sampleCommands() {
		enc := c.Encode()
		for n := range len(enc) {
			cases = append(cases, struct {
				name string
				data []byte
			}{name: "truncated kind " + string(rune('0'+c.Kind)), data: enc[:n]})
		}
	}
	for _, tc := range cases {
		got, err := DecodeCommand(tc.data)
		if !errors.Is(err, ErrBadCommand) {
			t.Errorf("%s (%x): DecodeCommand = %+v, %v; want an error wrapping ErrBadCommand", tc.name, truncateHex(tc.data), got, err)
		}
	}
	// The commit helpers above must build a valid encoding when intact, or
	// the commit cases prove nothing.
	if _, err := DecodeCommand(cat(hdr(KindCommit), uv(nil, 0), commitTail(), uv(nil, 0))); err != nil {
		t.Fatalf("valid hand-built commit refused: %v", err)
	}
}

func truncateHex(b []byte) []byte {
	if len(b) > 32 {
		return b[:32]
	}
	return b
}

// FuzzDecodeCommand: DecodeCommand never panics, refuses with ErrBadCommand,
// and accepts only canonical encodings: anything it accepts encodes back to
// exactly the input bytes. (Replicas compare and replay log bytes; two
// encodings of one command would make "the same entry" ambiguous.)
func FuzzDecodeCommand(f *testing.F) {
	for _, c := range sampleCommands() {
		enc := c.Encode()
		f.Add(enc)
		if len(enc) > 2 {
			f.Add(enc[:len(enc)-1])
			flipped := bytes.Clone(enc)
			flipped[2] ^= 0x80
			f.Add(flipped)
			// Stretch the first varint into a non-minimal one.
			if enc[2] < 0x80 {
				f.Add(append(append(bytes.Clone(enc[:2]), enc[2]|0x80, 0x00), enc[3:]...))
			}
		}
		f.Add(append(bytes.Clone(enc), 0))
		bad := bytes.Clone(enc)
		bad[1] = 0xee
		f.Add(bad)
	}
	f.Add([]byte{})
	f.Add([]byte{commandFormatV1, byte(KindCommit), 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCommand(data)
		if err != nil {
			if !errors.Is(err, ErrBadCommand) {
				t.Fatalf("error %v does not wrap ErrBadCommand", err)
			}
			return
		}
		enc := c.Encode()
		if !bytes.Equal(enc, data) {
			t.Fatalf("accepted a non-canonical encoding:\n input %x\nre-enc %x", truncateHex(data), truncateHex(enc))
		}
		again, err := DecodeCommand(enc)
		if err != nil || !reflect.DeepEqual(again, c) {
			t.Fatalf("re-decoding: %+v, %v; want %+v", again, err, c)
		}
	})
}
