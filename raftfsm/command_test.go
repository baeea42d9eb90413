package raftfsm

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
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
		{Kind: KindCommit, ReservationIDs: []uint64{3}, Size: 2, Key: "r", ChunkSize: 2, Checksums: []uint32{5},
			Replicas: []string{"n1", strings.Repeat("n", maxNodeIDLen)}},
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
		{Kind: KindRegister, NodeID: "n1", APIAddr: "10.0.0.1:8080", RaftAddr: "10.0.0.1:7000"},
		{Kind: KindRegister},
		{Kind: KindRegister, NodeID: strings.Repeat("n", maxNodeIDLen), APIAddr: strings.Repeat("a", maxAddrLen), RaftAddr: strings.Repeat("r", maxAddrLen)},
		{Kind: KindDeregister, NodeID: "n1"},
		{Kind: KindDeregister},
		{Kind: KindRenew, ReservationIDs: []uint64{1, 1 << 60}, Deadline: -5},
		{Kind: KindRenew, RequestID: 3, Deadline: 1 << 62},
		// Format 2: the same kinds with a request id.
		{Kind: KindNoop, RequestID: 1},
		{Kind: KindReserve, RequestID: math.MaxUint64, ReservationID: 7, Size: 4096, Deadline: 9},
		{Kind: KindReserveBatch, RequestID: 300, ReservationIDs: []uint64{1, 2}, Size: 4096, Deadline: 5},
		{
			Kind: KindCommit, RequestID: 0x123456789abcdef, ReservationIDs: []uint64{1}, Size: 1, Key: "k",
			ChunkSize: 1, Checksums: []uint32{1}, IfNoneMatch: true,
		},
		{
			Kind: KindCommitInline, RequestID: 2, Size: 1, Key: "k", ChunkSize: 4096,
			Checksums: []uint32{5}, IfMatch: 3, Data: []byte{9},
		},
		{Kind: KindAbort, RequestID: 3, ReservationID: 3},
		{Kind: KindExpire, RequestID: 4, Now: 5},
		{Kind: KindDelete, RequestID: 5, Key: "k", IfMatch: 2},
		{Kind: KindInit, RequestID: 6, Geometry: "g"},
		{Kind: KindRegister, RequestID: 7, NodeID: "n2", APIAddr: "[::1]:8080", RaftAddr: "[::1]:7000"},
		{Kind: KindDeregister, RequestID: 8, NodeID: "n2"},
	}
}

// TestCommandEncodingFrozen: commands without a request id encode to the
// bytes releases before request ids wrote (format 1, taken from the log of
// such a release), and decode from them to the same command: old logs
// replay identically. A request id only adds format 2's header.
func TestCommandEncodingFrozen(t *testing.T) {
	tests := []struct {
		c   Command
		hex string
	}{
		{Command{Kind: KindNoop}, "0101"},
		{Command{Kind: KindInit, Geometry: "spage=4096 lpage=262144 volume=16777216"},
			"01022773706167653d34303936206c706167653d32363231343420766f6c756d653d3136373737323136"},
		{Command{Kind: KindReserve, ReservationID: 1, Size: 1}, "0103010200"},
		{Command{Kind: KindReserve, ReservationID: math.MaxUint64, Size: math.MaxInt64 / 2, Deadline: math.MinInt64},
			"0103ffffffffffffffffff01feffffffffffffff7fffffffffffffffffff01"},
		{Command{
			Kind: KindCommit, ReservationIDs: []uint64{1, 2, math.MaxUint64}, Size: 1 << 20,
			Key: "a/b/c", Identity: 42, ContentType: "application/octet-stream",
			Created: 1_700_000_000_000_000_000, ChunkSize: 256 << 10,
			Checksums: []uint32{0, 1, math.MaxUint32, 0xdeadbeef}, IfMatch: 7, IfNoneMatch: true,
		}, "0104030102ffffffffffffffffff018080800105612f622f632a186170706c69636174696f6e2f6f637465742d73747265616d8080d0e2c6bfce972f8080200701040000000001000000ffffffffefbeadde"},
		{Command{Kind: KindAbort, ReservationID: math.MaxUint64}, "0105ffffffffffffffffff01"},
		{Command{Kind: KindExpire, Now: -5}, "010609"},
		{Command{Kind: KindDelete, IfMatch: 1 << 40}, "010700808080808020"},
		{Command{Kind: KindReserveBatch, ReservationIDs: []uint64{1, 2, math.MaxUint64}, Size: 4096, Deadline: 5},
			"0108030102ffffffffffffffffff0180400a"},
		{Command{
			Kind: KindCommitInline, Size: 3, Key: "small", Identity: 99, ContentType: "text/plain",
			Created: 5, ChunkSize: 256 << 10, Checksums: []uint32{0xabcdef01}, IfNoneMatch: true, Data: []byte("abc"),
		}, "01090605736d616c6c630a746578742f706c61696e0a80802000010101efcdab03616263"},
		// A Commit with a replica set: its ids follow the checksums.
		{Command{Kind: KindCommit, ReservationIDs: []uint64{3}, Size: 2, Key: "r", ChunkSize: 2, Checksums: []uint32{5},
			Replicas: []string{"n1", "n2"}}, "01040103040172000000040000010500000002026e31026e32"},
		// Format 2: format byte 2, kind, uvarint request id, format 1's fields.
		{Command{Kind: KindNoop, RequestID: 1}, "020101"},
		{Command{Kind: KindReserve, RequestID: 300, ReservationID: 1, Size: 1}, "0203ac02010200"},
		{Command{Kind: KindRegister, NodeID: "n", APIAddr: "h:1", RaftAddr: "h:2"}, "010a016e03683a3103683a32"},
		{Command{Kind: KindDeregister, RequestID: 1, NodeID: "n"}, "020b01016e"},
	}
	for _, tc := range tests {
		want, err := hex.DecodeString(tc.hex)
		if err != nil {
			t.Fatal(err)
		}
		if got := tc.c.Encode(); !bytes.Equal(got, want) {
			t.Errorf("Encode(%+v) = %x; want %x", tc.c, got, want)
		}
		got, err := DecodeCommand(want)
		if err != nil {
			t.Errorf("DecodeCommand(%x): %v", want, err)
		} else if !reflect.DeepEqual(got, normalise(tc.c)) {
			t.Errorf("DecodeCommand(%x) = %+v; want %+v", want, got, normalise(tc.c))
		}
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
		NodeID: "n", APIAddr: "a:1", RaftAddr: "r:1",
	}
	noise.Kind = KindNoop
	if got := noise.Encode(); !bytes.Equal(got, []byte{commandFormatV1, byte(KindNoop)}) {
		t.Fatalf("noop with noise encodes as %x", got)
	}
	noise.Kind = KindAbort
	if got, want := noise.Encode(), (&Command{Kind: KindAbort, ReservationID: 5}).Encode(); !bytes.Equal(got, want) {
		t.Fatalf("abort with noise encodes as %x, want %x", got, want)
	}
	noise.Kind = KindDeregister
	if got, want := noise.Encode(), (&Command{Kind: KindDeregister, NodeID: "n"}).Encode(); !bytes.Equal(got, want) {
		t.Fatalf("deregister with noise encodes as %x, want %x", got, want)
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
		{"format 2 without request id", []byte{commandFormatV2, byte(KindNoop)}},
		{"format 2 request id 0", []byte{commandFormatV2, byte(KindNoop), 0}},
		{"format 2 non-minimal request id", []byte{commandFormatV2, byte(KindNoop), 0x81, 0x00}},
		{"format 2 request id overflow", cat([]byte{commandFormatV2, byte(KindNoop)}, bytes.Repeat([]byte{0xff}, 10), []byte{0x01})},
		{"format 2 unknown kind", []byte{commandFormatV2, 12, 1}},
		{"format 2 trailing byte", []byte{commandFormatV2, byte(KindNoop), 1, 0}},
		{"format 3", []byte{3, byte(KindNoop)}},
		{"format 255", []byte{255, byte(KindNoop), 1}},
		{"kind 0", hdr(0)},
		{"kind 12", hdr(12)},
		{"register node id too long", cat(hdr(KindRegister), uv(nil, maxNodeIDLen+1), bytes.Repeat([]byte{'n'}, maxNodeIDLen+1), []byte{0, 0})},
		{"register api address too long", cat(hdr(KindRegister), []byte{1, 'n'}, uv(nil, maxAddrLen+1), bytes.Repeat([]byte{'a'}, maxAddrLen+1), []byte{0})},
		{"register raft address too long", cat(hdr(KindRegister), []byte{1, 'n', 0}, uv(nil, maxAddrLen+1), bytes.Repeat([]byte{'r'}, maxAddrLen+1))},
		{"register raft address missing", cat(hdr(KindRegister), []byte{1, 'n', 0})},
		{"deregister trailing byte", cat(hdr(KindDeregister), []byte{1, 'n', 0})},
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
		{"commit replica count zero", cat((&Command{Kind: KindCommit, Key: "k"}).Encode(), []byte{0})},
		{"commit replica count over limit", cat((&Command{Kind: KindCommit, Key: "k"}).Encode(), uv(nil, 17), bytes.Repeat([]byte{1, 'n'}, 17))},
		{"commit empty replica id", cat((&Command{Kind: KindCommit, Key: "k"}).Encode(), []byte{1, 0})},
		{"commit replica id past end", cat((&Command{Kind: KindCommit, Key: "k"}).Encode(), []byte{1, 5, 'n'})},
		{"commit checksums trailing byte", cat(hdr(KindCommit), uv(nil, 0), commitTail(), uv(nil, 1), make([]byte, 5))},
		{"commit bool 2", cat(hdr(KindCommit), uv(nil, 0), commitTail()[:len(commitTail())-1], []byte{2}, uv(nil, 0))},
		{"commit bool missing", cat(hdr(KindCommit), uv(nil, 0), commitTail()[:len(commitTail())-1])},
	}
	// Every strict prefix of a valid encoding is malformed: the format is
	// self-delimiting, so no encoding is a prefix of another, with one
	// exception: a Commit's replica set is optional, and the Commit cut
	// just before it is that Commit without one.
	for _, c := range sampleCommands() {
		enc := c.Encode()
		bare := c
		bare.Replicas = nil
		for n := range len(enc) {
			if len(c.Replicas) > 0 && n == len(bare.Encode()) {
				continue
			}
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
	f.Add([]byte{commandFormatV2, byte(KindNoop), 0})
	f.Add([]byte{commandFormatV2, byte(KindAbort), 0x81, 0x00, 1})
	f.Add([]byte{commandFormatV2, byte(KindRegister), 1, 1, 'n', 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := DecodeCommand(data)
		if err != nil {
			if !errors.Is(err, ErrBadCommand) {
				t.Fatalf("error %v does not wrap ErrBadCommand", err)
			}
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("decoded command fails Validate (a proposer could not send it): %v", err)
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

// TestValidate: Validate accepts every sample and refuses what DecodeCommand
// would refuse to decode, so nothing proposed can stop the replicas.
func TestValidate(t *testing.T) {
	for _, c := range sampleCommands() {
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v): %v", c.Kind, err)
		}
	}
	long := func(n int) string { return strings.Repeat("x", n) }
	for _, c := range []Command{
		{Kind: KindRegister, NodeID: long(maxNodeIDLen + 1)},
		{Kind: KindRegister, NodeID: "n", APIAddr: long(maxAddrLen + 1)},
		{Kind: KindRegister, NodeID: "n", RaftAddr: long(maxAddrLen + 1)},
		{Kind: KindDeregister, NodeID: long(maxNodeIDLen + 1)},
		{Kind: KindDelete, RequestID: 1, Key: long(maxKeyLen + 1)},
		{Kind: KindCommit, Key: "k", Replicas: make([]string, 17)},
		{Kind: KindCommit, Key: "k", Replicas: []string{long(maxNodeIDLen + 1)}},
	} {
		if err := c.Validate(); !errors.Is(err, ErrBadCommand) {
			t.Errorf("Validate(kind %d, over a limit): %v; want ErrBadCommand", c.Kind, err)
		}
		if _, err := DecodeCommand(c.Encode()); !errors.Is(err, ErrBadCommand) {
			t.Errorf("DecodeCommand(kind %d, over a limit): %v; want ErrBadCommand", c.Kind, err)
		}
	}
}
