package catalog

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// sampleRequests are valid request records reaching every field's extremes.
func sampleRequests() []Request {
	old := testBlob("old/key", 9, 3*testChunk+1)
	empty := Blob{Key: "e", Version: 3}
	return []Request{
		{Index: 1},
		{Index: 7, Fingerprint: 0xdeadbeef, Code: 3},
		{Index: 2, Extents: []Extent{{0, 4096}, {1 << 40, 8192}}},
		{Index: 9, Batch: [][]Extent{{{0, 4096}}, {{4096, 4096}, {1 << 30, 4096}}}},
		{Index: 10, Version: 10, Old: &old},
		{Index: 11, Version: 11, Old: &empty},
		{Index: math.MaxUint64, Fingerprint: math.MaxUint32, Code: math.MaxUint64, Version: math.MaxUint64,
			Extents: []Extent{{math.MaxInt64 - 1, 1}}},
		{Index: 12, Old: &Blob{Key: strings.Repeat("k", MaxKeyLen), Version: 1}},
	}
}

func TestRequestRoundTrip(t *testing.T) {
	for i, r := range sampleRequests() {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			enc, err := encodeRequest(r)
			if err != nil {
				t.Fatalf("encodeRequest: %v", err)
			}
			got, err := decodeRequest(enc)
			if err != nil {
				t.Fatalf("decodeRequest: %v", err)
			}
			if !reflect.DeepEqual(got, r) {
				t.Fatalf("round trip:\n got %+v\nwant %+v", got, r)
			}
			if again, err := encodeRequest(got); err != nil || !bytes.Equal(again, enc) {
				t.Fatalf("re-encoding differs (%v):\n%x\n%x", err, again, enc)
			}
			if idx, err := requestRecordIndex(enc); err != nil || idx != r.Index {
				t.Fatalf("requestRecordIndex = %d, %v; want %d", idx, err, r.Index)
			}
			// Every strict prefix is refused; no bit flip panics or decodes
			// to a non-canonical record.
			for n := range len(enc) {
				if _, err := decodeRequest(enc[:n]); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("prefix of %d bytes: %v", n, err)
				}
			}
			for n := range min(len(enc), 64) {
				for bit := range 8 {
					c := bytes.Clone(enc)
					c[n] ^= 1 << bit
					if d, err := decodeRequest(c); err == nil {
						if again, _ := encodeRequest(d); !bytes.Equal(again, c) {
							t.Fatalf("flip at %d.%d decoded to a non-canonical record", n, bit)
						}
					} else if !errors.Is(err, ErrCorrupt) {
						t.Fatalf("flip at %d.%d: %v", n, bit, err)
					}
				}
			}
		})
	}
}

func TestEncodeRequestRefusesInvalid(t *testing.T) {
	bad := testBlob("x", 1, 10)
	bad.Checksums = nil
	tests := []struct {
		name string
		r    Request
	}{
		{"index 0", Request{}},
		{"empty extent", Request{Index: 1, Extents: []Extent{{0, 0}}}},
		{"negative offset", Request{Index: 1, Extents: []Extent{{-1, 4096}}}},
		{"bad batch extent", Request{Index: 1, Batch: [][]Extent{{{0, 4096}}, {{0, -1}}}}},
		{"batch too long", Request{Index: 1, Batch: make([][]Extent, MaxRequestBatch+1)}},
		{"old without key", Request{Index: 1, Old: &Blob{Version: 1}}},
		{"old key too long", Request{Index: 1, Old: &Blob{Key: strings.Repeat("k", MaxKeyLen+1), Version: 1}}},
		{"old breaks a blob invariant", Request{Index: 1, Old: &bad}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := encodeRequest(tc.r); !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("encodeRequest: %v; want ErrInvalidRecord", err)
			}
		})
	}
}

func TestDecodeRequestMalformed(t *testing.T) {
	valid, err := encodeRequest(Request{Index: 5, Old: &Blob{Key: "k", Version: 1}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		data []byte
	}{
		{"nil", nil},
		{"unknown format", append([]byte{2}, valid[1:]...)},
		{"index 0", []byte{requestFormatV1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"non-minimal index", []byte{requestFormatV1, 0x81, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"batch count beyond input", []byte{requestFormatV1, 1, 0, 0, 0, 0, 0, 0, 0, 5, 0}},
		{"batch count huge", []byte{requestFormatV1, 1, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}},
		{"old flag 2", []byte{requestFormatV1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2}},
		{"trailing byte without old", []byte{requestFormatV1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{"old key empty", []byte{requestFormatV1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, blobFormatV1, 1, 0, 0, 0, 0, 0, 0}},
		{"old blob missing", []byte{requestFormatV1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 'k'}},
		{"old blob trailing byte", append(bytes.Clone(valid), 0)},
		{"empty extent", []byte{requestFormatV1, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if r, err := decodeRequest(tc.data); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("decodeRequest(%x) = %+v, %v; want ErrCorrupt", tc.data, r, err)
			}
		})
	}
	// The hand-built prefix above is right when completed, or the cases
	// prove nothing.
	if _, err := decodeRequest([]byte{requestFormatV1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0}); err != nil {
		t.Fatalf("valid hand-built request refused: %v", err)
	}
}

func TestMemberRecord(t *testing.T) {
	for _, m := range []Member{
		{ID: "n1"},
		{ID: "n1", APIAddr: "10.0.0.1:8080", RaftAddr: "10.0.0.1:7000"},
		{ID: strings.Repeat("i", MaxMemberIDLen), APIAddr: strings.Repeat("a", MaxMemberAddrLen), RaftAddr: strings.Repeat("r", MaxMemberAddrLen)},
	} {
		enc, err := encodeMember(m)
		if err != nil {
			t.Fatalf("encodeMember(%+v): %v", m, err)
		}
		got, err := decodeMember(enc)
		got.ID = m.ID
		if err != nil || got != m {
			t.Fatalf("round trip: %+v, %v; want %+v", got, err, m)
		}
		for n := range len(enc) {
			if _, err := decodeMember(enc[:n]); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("prefix of %d bytes: %v", n, err)
			}
		}
		if _, err := decodeMember(append(enc, 0)); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("trailing byte: %v", err)
		}
	}
	for _, tc := range []struct {
		m    Member
		want error
	}{
		{Member{}, ErrInvalidKey},
		{Member{ID: strings.Repeat("i", MaxMemberIDLen+1)}, ErrInvalidKey},
		{Member{ID: "n", APIAddr: strings.Repeat("a", MaxMemberAddrLen+1)}, ErrInvalidRecord},
		{Member{ID: "n", RaftAddr: strings.Repeat("r", MaxMemberAddrLen+1)}, ErrInvalidRecord},
	} {
		if _, err := encodeMember(tc.m); !errors.Is(err, tc.want) {
			t.Errorf("encodeMember(%.20q...): %v; want %v", tc.m.ID, err, tc.want)
		}
	}
	if _, err := decodeMember([]byte{memberFormatV1, 0x80, 0x04}); !errors.Is(err, ErrCorrupt) {
		t.Errorf("overlong address length: %v", err)
	}
}

// requestIDs lists the recorded request ids in ID order.
func requestIDs(tb testing.TB, db *DB) []uint64 {
	tb.Helper()
	var ids []uint64
	mustView(tb, db, func(tx *Tx) error {
		return tx.ForEachRequest(func(r Request) error {
			ids = append(ids, r.ID)
			return nil
		})
	})
	return ids
}

func TestRequests(t *testing.T) {
	db := openTest(t, Options{})
	old := testBlob("a", 2, 10)
	mustUpdate(t, db, func(tx *Tx) error {
		for _, r := range []Request{
			{ID: 30, Index: 3, Code: 1},
			{ID: 10, Index: 5, Extents: []Extent{{0, 4096}}},
			{ID: 20, Index: 5, Version: 5, Old: &old},
			{ID: 40, Index: 8},
		} {
			if err := tx.PutRequest(r); err != nil {
				return err
			}
		}
		return tx.SetAppliedIndex(8)
	})
	if got := requestIDs(t, db); !slices.Equal(got, []uint64{10, 20, 30, 40}) {
		t.Fatalf("ForEachRequest ids %v", got)
	}
	mustView(t, db, func(tx *Tx) error {
		r, ok, err := tx.GetRequest(20)
		if err != nil || !ok || !reflect.DeepEqual(r, Request{ID: 20, Index: 5, Version: 5, Old: &old}) {
			return fmt.Errorf("GetRequest(20) = %+v, %v, %v", r, ok, err)
		}
		if _, ok, err := tx.GetRequest(99); ok || err != nil {
			return fmt.Errorf("GetRequest(99) = %v, %v", ok, err)
		}
		return nil
	})
	// Refusals.
	mustUpdate(t, db, func(tx *Tx) error {
		if err := tx.PutRequest(Request{ID: 0, Index: 1}); !errors.Is(err, ErrInvalidRecord) {
			return fmt.Errorf("PutRequest ID 0: %v", err)
		}
		if err := tx.PutRequest(Request{ID: 1}); !errors.Is(err, ErrInvalidRecord) {
			return fmt.Errorf("PutRequest index 0: %v", err)
		}
		// Replacing moves the index entry.
		return tx.PutRequest(Request{ID: 30, Index: 6})
	})
	tests := []struct {
		through uint64
		pruned  int
		left    []uint64
	}{
		{0, 0, []uint64{10, 20, 30, 40}},
		{4, 0, []uint64{10, 20, 30, 40}}, // 30 moved from 3 to 6
		{5, 2, []uint64{30, 40}},
		{5, 0, []uint64{30, 40}},
		{7, 1, []uint64{40}},
		{math.MaxUint64, 1, nil},
	}
	for _, tc := range tests {
		var n int
		mustUpdate(t, db, func(tx *Tx) error {
			var err error
			n, err = tx.PruneRequests(tc.through)
			return err
		})
		if got := requestIDs(t, db); n != tc.pruned || !slices.Equal(got, tc.left) {
			t.Fatalf("PruneRequests(%d) = %d, left %v; want %d, %v", tc.through, n, got, tc.pruned, tc.left)
		}
		if err := db.Check(); err != nil {
			t.Fatalf("Check after PruneRequests(%d): %v", tc.through, err)
		}
	}
}

func TestMembers(t *testing.T) {
	db := openTest(t, Options{})
	mustUpdate(t, db, func(tx *Tx) error {
		for _, m := range []Member{
			{ID: "n3", APIAddr: "c:1", RaftAddr: "c:2"},
			{ID: "n1", APIAddr: "a:1", RaftAddr: "a:2"},
			{ID: "n2", APIAddr: "b:1", RaftAddr: "b:2"},
			{ID: "n1", APIAddr: "a2:1", RaftAddr: "a2:2"}, // overwrites
		} {
			if err := tx.PutMember(m); err != nil {
				return err
			}
		}
		if err := tx.PutMember(Member{}); !errors.Is(err, ErrInvalidKey) {
			return fmt.Errorf("PutMember without ID: %v", err)
		}
		if err := tx.DeleteMember(""); !errors.Is(err, ErrInvalidKey) {
			return fmt.Errorf("DeleteMember(\"\"): %v", err)
		}
		if err := tx.DeleteMember("absent"); err != nil {
			return err
		}
		return tx.DeleteMember("n2")
	})
	want := []Member{{ID: "n1", APIAddr: "a2:1", RaftAddr: "a2:2"}, {ID: "n3", APIAddr: "c:1", RaftAddr: "c:2"}}
	mustView(t, db, func(tx *Tx) error {
		got, err := tx.Members()
		if err != nil || !slices.Equal(got, want) {
			return fmt.Errorf("Members = %+v, %v; want %+v", got, err, want)
		}
		m, ok, err := tx.GetMember("n3")
		if err != nil || !ok || m != want[1] {
			return fmt.Errorf("GetMember(n3) = %+v, %v, %v", m, ok, err)
		}
		if _, ok, err := tx.GetMember("n2"); ok || err != nil {
			return fmt.Errorf("GetMember(n2) after delete = %v, %v", ok, err)
		}
		return nil
	})
}
