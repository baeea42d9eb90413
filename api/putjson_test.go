package api

import (
	"bytes"
	"encoding/json"
	"testing"
)

func encoderBytes(t testing.TB, p putResponse) []byte {
	var want bytes.Buffer
	if err := json.NewEncoder(&want).Encode(p); err != nil {
		t.Fatal(err)
	}
	return want.Bytes()
}

func TestPutResponseJSONMatchesEncoder(t *testing.T) {
	for _, p := range []putResponse{
		{},
		{Key: "a/b/c.txt", Size: 1024, ETag: `"0123456789abcdef"`, Version: 42},
		{Key: `quote " backslash \ slash /`, Size: -1, Version: 1<<64 - 1},
		{Key: "ctl \x00\x01\x1f\x7f \b\f\n\r\t", Size: 1 << 62},
		{Key: "html <a href='x'>&amp;</a>"},
		{Key: "utf8 é ü 日本 😀 \u2028 \u2029 \u2027 \u202a"},
		{Key: "bad \xff \xc3 \xe2\x80 \xed\xa0\x80 end\xc3"},
		{ETag: "\"\xff\""},
	} {
		got := appendPutResponse(nil, p)
		if want := encoderBytes(t, p); !bytes.Equal(got, want) {
			t.Errorf("%+q:\n got %s\nwant %s", p.Key, got, want)
		}
	}
}

func FuzzPutResponseJSON(f *testing.F) {
	f.Add("k", int64(1), `"e"`, uint64(1))
	f.Add("<\u2028\xff\x00>", int64(-5), "\\", uint64(0))
	f.Fuzz(func(t *testing.T, key string, size int64, etag string, version uint64) {
		p := putResponse{Key: key, Size: size, ETag: etag, Version: version}
		if got, want := appendPutResponse(nil, p), encoderBytes(t, p); !bytes.Equal(got, want) {
			t.Fatalf("%+q %+q:\n got %s\nwant %s", key, etag, got, want)
		}
	})
}
