package catalog

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestBlobRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		b    Blob
	}{
		{"empty blob", Blob{Version: 1}},
		{"empty blob with chunk size", Blob{Version: 2, ChunkSize: testChunk, ContentType: "text/plain"}},
		{"one byte", testBlob("", 3, 1)},
		{"exact chunk", testBlob("", 4, testChunk)},
		{"chunk plus one", testBlob("", 5, testChunk+1)},
		{"many chunks", testBlob("", 6, 10*testChunk-17)},
		{"negative created", Blob{Version: 7, Size: 5, ChunkSize: 4, Checksums: []uint32{1, 2},
			Extents: []Extent{{0, 4}, {4096, 4}}, Created: -123456789}},
		{"extremes", Blob{Version: math.MaxUint64, Size: math.MaxInt64 - 1, ChunkSize: math.MaxInt64,
			Checksums: []uint32{math.MaxUint32}, Created: math.MinInt64, ReservationID: math.MaxUint64,
			Extents:     []Extent{{0, math.MaxInt64}},
			ContentType: strings.Repeat("x", MaxContentTypeLen)}},
		{"unicode content type", Blob{Version: 9, ContentType: "text/plain; charset=utf-8; name=\"ünï\""}},
		{"many extents", Blob{Version: 10, Size: 3 * 4096, ChunkSize: testChunk, Checksums: []uint32{42},
			Extents: []Extent{{8192, 4096}, {0, 4096}, {1 << 40, 4096}}}},
		{"replica set (format 2)", Blob{Version: 11, Size: 5, ChunkSize: 4, Checksums: []uint32{1, 2},
			Extents: []Extent{{0, 8192}}, Replicas: []string{"n2", "n1"}}},
		{"largest replica set", Blob{Version: 12, Replicas: func() []string {
			ids := make([]string, MaxReplicas)
			for i := range ids {
				ids[i] = strings.Repeat(string(rune('a'+i)), MaxMemberIDLen)
			}
			return ids
		}()}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := EncodeBlob(tc.b)
			if err != nil {
				t.Fatalf("EncodeBlob: %v", err)
			}
			got, err := DecodeBlob(enc)
			if err != nil {
				t.Fatalf("DecodeBlob: %v", err)
			}
			want := tc.b
			want.Key = "" // not part of the record
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
			}
			again, err := EncodeBlob(got)
			if err != nil || !bytes.Equal(again, enc) {
				t.Fatalf("re-encoding differs (err %v):\n%x\n%x", err, again, enc)
			}
			// Appending to a non-empty buffer leaves the prefix alone.
			app, err := AppendBlob([]byte("prefix"), tc.b)
			if err != nil || !bytes.Equal(app, append([]byte("prefix"), enc...)) {
				t.Fatalf("AppendBlob: %v %x", err, app)
			}
		})
	}
}

func TestReservationRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		r    Reservation
	}{
		{"zero size", Reservation{Deadline: 5}},
		{"one extent", testReservation(1, 4096, 1_700_000_000_000_000_000)},
		{"negative deadline", Reservation{Size: 1, Extents: []Extent{{4096, 4096}}, Deadline: -1}},
		{"min deadline", Reservation{Deadline: math.MinInt64}},
		{"max deadline", Reservation{Deadline: math.MaxInt64}},
		{"split", Reservation{Size: 6000, Extents: []Extent{{1 << 20, 4096}, {0, 2048}}, Deadline: 99}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			enc, err := EncodeReservation(tc.r)
			if err != nil {
				t.Fatalf("EncodeReservation: %v", err)
			}
			got, err := DecodeReservation(enc)
			if err != nil {
				t.Fatalf("DecodeReservation: %v", err)
			}
			want := tc.r
			want.ID = 0 // not part of the record
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, want)
			}
			again, err := EncodeReservation(got)
			if err != nil || !bytes.Equal(again, enc) {
				t.Fatalf("re-encoding differs (err %v)", err)
			}
		})
	}
}

func TestEncodeRefusesInvalidRecords(t *testing.T) {
	good := testBlob("k", 1, 3*testChunk)
	mod := func(f func(*Blob)) Blob {
		b := good
		b.Extents = append([]Extent(nil), good.Extents...)
		b.Checksums = append([]uint32(nil), good.Checksums...)
		f(&b)
		return b
	}
	blobs := []struct {
		name string
		b    Blob
	}{
		{"negative size", mod(func(b *Blob) { b.Size = -1 })},
		{"zero chunk size", mod(func(b *Blob) { b.ChunkSize = 0 })},
		{"negative chunk size", mod(func(b *Blob) { b.ChunkSize = -5 })},
		{"missing checksum", mod(func(b *Blob) { b.Checksums = b.Checksums[1:] })},
		{"extra checksum", mod(func(b *Blob) { b.Checksums = append(b.Checksums, 0) })},
		{"extents too short", mod(func(b *Blob) { b.Extents[0].Length = 10 })},
		{"empty extent", mod(func(b *Blob) { b.Extents = append(b.Extents, Extent{0, 0}) })},
		{"negative offset", mod(func(b *Blob) { b.Extents[0].Offset = -4096 })},
		{"extent overflow", mod(func(b *Blob) { b.Extents[0].Offset = math.MaxInt64 - 10 })},
		{"lengths overflow", mod(func(b *Blob) {
			b.Extents = []Extent{{0, math.MaxInt64}, {0, math.MaxInt64}}
		})},
		{"content type too long", mod(func(b *Blob) { b.ContentType = strings.Repeat("a", MaxContentTypeLen+1) })},
		{"too many replicas", mod(func(b *Blob) { b.Replicas = make([]string, MaxReplicas+1) })},
		{"empty replica id", mod(func(b *Blob) { b.Replicas = []string{"n1", ""} })},
		{"replica id too long", mod(func(b *Blob) { b.Replicas = []string{strings.Repeat("n", MaxMemberIDLen+1)} })},
	}
	for _, tc := range blobs {
		t.Run("blob/"+tc.name, func(t *testing.T) {
			if _, err := EncodeBlob(tc.b); !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("EncodeBlob: got %v, want ErrInvalidRecord", err)
			}
		})
	}
	resv := []struct {
		name string
		r    Reservation
	}{
		{"negative size", Reservation{Size: -1}},
		{"extents too short", Reservation{Size: 5000, Extents: []Extent{{0, 4096}}}},
		{"negative length", Reservation{Extents: []Extent{{0, -1}}}},
	}
	for _, tc := range resv {
		t.Run("reservation/"+tc.name, func(t *testing.T) {
			if _, err := EncodeReservation(tc.r); !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("EncodeReservation: got %v, want ErrInvalidRecord", err)
			}
		})
	}
}

func TestDecodeRejectsMalformed(t *testing.T) {
	valid, err := EncodeBlob(testBlob("", 300, 2*testChunk+1))
	if err != nil {
		t.Fatal(err)
	}
	validResv, err := EncodeReservation(testReservation(1, 4096, 1000))
	if err != nil {
		t.Fatal(err)
	}
	blobCases := []struct {
		name string
		data []byte
	}{
		{"nil", nil},
		{"format only", []byte{blobFormatV1}},
		{"unknown format", append([]byte{2}, valid[1:]...)},
		{"truncated by one", valid[:len(valid)-1]},
		{"truncated in header", valid[:4]},
		{"trailing byte", append(bytes.Clone(valid), 0)},
		// Version 300 is 0xac 0x02; an overlong form of 1 is 0x81 0x00.
		{"overlong varint", []byte{blobFormatV1, 0x81, 0x00, 0, 0, 0, 0, 0, 0}},
		{"varint overflow", append([]byte{blobFormatV1}, bytes.Repeat([]byte{0xff}, 11)...)},
		{"size overflows int64", []byte{blobFormatV1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"huge extent count", []byte{blobFormatV1, 1, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"huge content type", []byte{blobFormatV1, 1, 0, 0, 0, 0, 0xff, 0xff, 0x03}},
		{"size without chunks", []byte{blobFormatV1, 1, 10, 0, 0, 0, 0, 1, 0, 10}},
		{"huge implied checksum count", []byte{blobFormatV1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}},
	}
	for _, tc := range blobCases {
		t.Run("blob/"+tc.name, func(t *testing.T) {
			if b, err := DecodeBlob(tc.data); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("DecodeBlob: got %+v, %v; want ErrCorrupt", b, err)
			}
		})
	}
	resvCases := []struct {
		name string
		data []byte
	}{
		{"empty", []byte{}},
		{"blob record", valid},
		{"truncated", validResv[:len(validResv)-1]},
		{"trailing", append(bytes.Clone(validResv), 1)},
		{"extent count beyond input", []byte{reservationFormatV1, 0, 0, 5, 1, 1}},
		{"extent too short", []byte{reservationFormatV1, 10, 0, 1, 0, 1}},
	}
	for _, tc := range resvCases {
		t.Run("reservation/"+tc.name, func(t *testing.T) {
			if r, err := DecodeReservation(tc.data); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("DecodeReservation: got %+v, %v; want ErrCorrupt", r, err)
			}
		})
	}
}

// Every strict prefix of a valid record is rejected, and no single-byte
// corruption panics.
func TestDecodePrefixesAndBitFlips(t *testing.T) {
	enc, err := EncodeBlob(testBlob("", 77, 3*testChunk+5))
	if err != nil {
		t.Fatal(err)
	}
	for i := range enc {
		if _, err := DecodeBlob(enc[:i]); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("prefix of %d bytes: %v", i, err)
		}
		for bit := range 8 {
			c := bytes.Clone(enc)
			c[i] ^= 1 << bit
			if b, err := DecodeBlob(c); err == nil {
				if again, _ := EncodeBlob(b); !bytes.Equal(again, c) {
					t.Fatalf("flip at %d.%d decoded to a non-canonical record", i, bit)
				}
			}
		}
	}
}
