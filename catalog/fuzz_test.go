package catalog

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"slices"
	"testing"
)

func FuzzDecodeBlob(f *testing.F) {
	seeds := []Blob{
		{Version: 1},
		testBlob("", 2, 1),
		testBlob("", 3, 2*testChunk+3),
		{Version: math.MaxUint64, Size: 9, ChunkSize: 4, Checksums: []uint32{1, 2, 3},
			Extents: []Extent{{0, 4096}, {1 << 40, 8}}, Created: math.MinInt64, ContentType: "text/plain; ü"},
		{Version: 5, Size: 3, ChunkSize: 4, Checksums: []uint32{7}, Extents: []Extent{{0, 4096}}, Replicas: []string{"n1", "n3"}},
	}
	for _, b := range seeds {
		enc, err := EncodeBlob(b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
		f.Add(enc[:len(enc)/2])
	}
	f.Add([]byte{})
	f.Add([]byte{blobFormatV1, 0x80, 0x00})
	f.Add([]byte{blobFormatV2, 1, 0, 0, 0, 0, 0, 0, 0}) // a replica count of 0
	f.Add([]byte{blobFormatV1, 1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 1, 0, 0, 0, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f})

	f.Fuzz(func(t *testing.T, data []byte) {
		exts, extErr := blobExtents(data, nil)
		if extErr != nil && !errors.Is(extErr, ErrCorrupt) {
			t.Fatalf("blobExtents: error does not wrap ErrCorrupt: %v", extErr)
		}
		b, err := DecodeBlob(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		// What the allocator's rebuild reads of a valid record is its extents.
		if extErr != nil || !slices.Equal(exts, b.Extents) {
			t.Fatalf("blobExtents = %v, %v; DecodeBlob's extents are %v", exts, extErr, b.Extents)
		}
		enc, err := EncodeBlob(b)
		if err != nil {
			t.Fatalf("decoded blob does not encode: %v (%+v)", err, b)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("not canonical:\n in  %x\n out %x", data, enc)
		}
		again, err := DecodeBlob(enc)
		if err != nil || !reflect.DeepEqual(again, b) {
			t.Fatalf("second decode: %v\n%+v\n%+v", err, again, b)
		}
	})
}

func FuzzDecodeReservation(f *testing.F) {
	seeds := []Reservation{
		{},
		testReservation(1, 4096, 1_700_000_000_000_000_000),
		{Size: 10, Extents: []Extent{{0, 4}, {8, 6}}, Deadline: -7},
		{Deadline: math.MaxInt64},
	}
	for _, r := range seeds {
		enc, err := EncodeReservation(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
		f.Add(enc[:len(enc)-1])
	}
	f.Add([]byte{reservationFormatV1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})

	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := DecodeReservation(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		enc, err := EncodeReservation(r)
		if err != nil {
			t.Fatalf("decoded reservation does not encode: %v (%+v)", err, r)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("not canonical:\n in  %x\n out %x", data, enc)
		}
		again, err := DecodeReservation(enc)
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("second decode: %v\n%+v\n%+v", err, again, r)
		}
	})
}

// FuzzDecodeRequest: the request decoder never panics, refuses with
// ErrCorrupt, and accepts only canonical records.
func FuzzDecodeRequest(f *testing.F) {
	for _, r := range sampleRequests() {
		enc, err := encodeRequest(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
		f.Add(enc[:len(enc)-1])
	}
	f.Add([]byte{requestFormatV1, 1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{requestFormatV1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 'k', blobFormatV1, 1, 0, 0, 0, 0, 0, 0})

	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := decodeRequest(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		enc, err := encodeRequest(r)
		if err != nil {
			t.Fatalf("decoded request does not encode: %v (%+v)", err, r)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("not canonical:\n in  %x\n out %x", data, enc)
		}
		again, err := decodeRequest(enc)
		if err != nil || !reflect.DeepEqual(again, r) {
			t.Fatalf("second decode: %v\n%+v\n%+v", err, again, r)
		}
		if idx, err := requestRecordIndex(data); err != nil || idx != r.Index {
			t.Fatalf("requestRecordIndex = %d, %v; want %d", idx, err, r.Index)
		}
	})
}

// FuzzDecodeMember: the member decoder never panics, refuses with
// ErrCorrupt, and accepts only canonical records.
func FuzzDecodeMember(f *testing.F) {
	for _, m := range []Member{{ID: "n"}, {ID: "n", APIAddr: "h:1", RaftAddr: "[::1]:7000"}} {
		enc, err := encodeMember(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(enc)
		f.Add(enc[:len(enc)-1])
	}
	f.Add([]byte{memberFormatV1, 0x81, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := decodeMember(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error does not wrap ErrCorrupt: %v", err)
			}
			return
		}
		m.ID = "n"
		enc, err := encodeMember(m)
		if err != nil {
			t.Fatalf("decoded member does not encode: %v (%+v)", err, m)
		}
		if !bytes.Equal(enc, data) {
			t.Fatalf("not canonical:\n in  %x\n out %x", data, enc)
		}
	})
}
