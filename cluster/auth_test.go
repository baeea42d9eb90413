package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/blobnode/blobnode/store"
)

func TestPeerAuth(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	clock := func(d time.Duration) func() time.Time { return func() time.Time { return now.Add(d) } }
	good := newSigner([]byte("the cluster secret, long enough"))
	good.now = clock(0)
	other := newSigner([]byte("another cluster secret entirely"))
	other.now = clock(0)
	skewed := good
	skewed.now = clock(MaxClockSkew + time.Second)

	for _, tc := range []struct {
		name   string
		sign   func(*http.Request, []byte)
		mutate func(*http.Request)
		ok     bool
	}{
		{"signed", good.sign, nil, true},
		{"unsigned", func(*http.Request, []byte) {}, nil, false},
		{"another secret", other.sign, nil, false},
		{"clock too far", skewed.sign, nil, false},
		{"other path", good.sign, func(r *http.Request) { r.RequestURI = "/peer/readindex" }, false},
		{"other method", good.sign, func(r *http.Request) { r.Method = http.MethodGet }, false},
		{"other node", good.sign, func(r *http.Request) { r.Host = "n2:8080" }, false},
		{"other body digest", good.sign, func(r *http.Request) { r.Header.Set(bodyDigestHeader, strings.Repeat("00", 32)) }, false},
		{"body digest removed", good.sign, func(r *http.Request) { r.Header.Del(bodyDigestHeader) }, false},
		{"garbage", func(r *http.Request, _ []byte) { r.Header.Set("Authorization", "BlobnodePeer x.y") }, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := httptest.NewRequest(http.MethodPost, "http://n1:8080/peer/propose?x=1", nil)
			tc.sign(out, []byte("a command"))
			in := httptest.NewRequest(http.MethodPost, "/peer/propose?x=1", nil)
			in.Host = "n1:8080"
			in.Header = out.Header
			if tc.mutate != nil {
				tc.mutate(in)
			}
			err := good.verify(in)
			if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrPeerAuth)) {
				t.Fatalf("verify: %v; want ok=%v", err, tc.ok)
			}
		})
	}
}

// TestPeerAuthBindsTheBody: a signature seen on the wire (say, of a
// command, or of the removal of one node) cannot carry another body; the
// handler behind the check sees only the body that was signed.
func TestPeerAuthBindsTheBody(t *testing.T) {
	sign := newSigner([]byte("the cluster secret, long enough"))
	var served [][]byte
	h := authenticated(sign, slog.New(slog.DiscardHandler), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("read the body: %v", err)
		}
		served = append(served, b)
		w.WriteHeader(http.StatusOK)
	}))
	signed := func(method string, signedBody, sentBody []byte) *http.Request {
		r := httptest.NewRequest(method, "/peer/remove", bytes.NewReader(sentBody))
		sign.sign(r, signedBody)
		return r
	}
	big := bytes.Repeat([]byte{'x'}, maxCommandBytes+1)
	for _, tc := range []struct {
		name   string
		req    *http.Request
		status int
		served string // the body the handler saw, if it was called
	}{
		{"the signed body", signed(http.MethodPost, []byte(`{"id":"n3"}`), []byte(`{"id":"n3"}`)), http.StatusOK, `{"id":"n3"}`},
		{"an empty signed body", signed(http.MethodPost, []byte{}, nil), http.StatusOK, ""},
		{"another body", signed(http.MethodPost, []byte(`{"id":"n3"}`), []byte(`{"id":"n2"}`)), http.StatusUnauthorized, ""},
		{"a longer body", signed(http.MethodPost, []byte(`{"id":"n3"}`), []byte(`{"id":"n3"} `)), http.StatusUnauthorized, ""},
		{"a POST without a body digest", signed(http.MethodPost, nil, []byte(`{"id":"n3"}`)), http.StatusUnauthorized, ""},
		{"a body over the limit", signed(http.MethodPost, big, big), http.StatusRequestEntityTooLarge, ""},
		{"a stream (PUT) is not read here", signed(http.MethodPut, nil, []byte("frames")), http.StatusOK, "frames"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			served = nil
			w := httptest.NewRecorder()
			h.ServeHTTP(w, tc.req)
			if w.Code != tc.status {
				t.Fatalf("status %d (%s); want %d", w.Code, strings.TrimSpace(w.Body.String()), tc.status)
			}
			if tc.status != http.StatusOK {
				if len(served) != 0 {
					t.Fatalf("a refused request reached the handler with %q", served[0])
				}
				return
			}
			if len(served) != 1 || string(served[0]) != tc.served {
				t.Fatalf("the handler saw %q; want %q", served, tc.served)
			}
		})
	}
}

// manifests is a Receiver that records the manifests it is given.
type manifests []store.ReplicaWrite

func (m *manifests) ReceiveReplica(_ context.Context, w store.ReplicaWrite, body io.Reader) error {
	*m = append(*m, w)
	_, err := io.Copy(io.Discard, body)
	return err
}

// TestPeerDataManifestSigned: a replica stream's signature covers its
// manifest (which reservations, at which index, how many bytes): seen on
// the wire, it cannot carry bytes to another upload's reservations.
func TestPeerDataManifestSigned(t *testing.T) {
	c := &Coordinator{sign: newSigner([]byte("the cluster secret, long enough")), log: slog.New(slog.DiscardHandler)}
	var got manifests
	h := authenticated(c.sign, c.log, c.serveData(&got))
	manifest := func(id uint64) []byte {
		b, err := json.Marshal(store.ReplicaWrite{ReservationIDs: []uint64{id}, Index: 9, Identity: id, Size: 10})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name         string
		signed, sent []byte
		status       int
	}{
		{"the signed manifest", manifest(1), manifest(1), http.StatusOK},
		{"another manifest", manifest(1), manifest(2), http.StatusUnauthorized},
		{"no manifest digest", nil, manifest(1), http.StatusUnauthorized},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got = nil
			body := append(binary.BigEndian.AppendUint32(nil, uint32(len(tc.sent))), tc.sent...)
			r := httptest.NewRequest(http.MethodPut, "/peer/data", bytes.NewReader(body))
			c.sign.sign(r, tc.signed)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("status %d (%s); want %d", w.Code, strings.TrimSpace(w.Body.String()), tc.status)
			}
			if want := tc.status == http.StatusOK; want != (len(got) == 1) {
				t.Fatalf("the receiver was given %d manifests", len(got))
			}
		})
	}
}
