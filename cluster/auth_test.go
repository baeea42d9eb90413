package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
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

// streamBody is a PUT /peer/data body: manifest, salt, then a frame per
// chunk (its checksum, its bytes, the tag tags gives it as chunk number
// at[i], or i).
func streamBody(t *testing.T, manifest, salt []byte, tags chunkTagger, chunks [][]byte, at ...int64) []byte {
	t.Helper()
	body := append(binary.BigEndian.AppendUint32(nil, uint32(len(manifest))), manifest...)
	body = append(body, salt...)
	for i, c := range chunks {
		frame := append(binary.BigEndian.AppendUint32(nil, crc32.Checksum(c, crc32.MakeTable(crc32.Castagnoli))), c...)
		n := int64(i)
		if i < len(at) {
			n = at[i]
		}
		body = append(body, tags.appendTag(frame, n, frame)...)
	}
	return body
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
			salt := newStreamSalt()
			tags, err := c.sign.chunkTagger(tc.sent, salt)
			if err != nil {
				t.Fatal(err)
			}
			body := streamBody(t, tc.sent, salt, tags, [][]byte{[]byte("ten bytes!")})
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

// recorded keeps the bytes a replica was given.
type recorded struct{ got []byte }

func (rc *recorded) ReceiveReplica(_ context.Context, w store.ReplicaWrite, body io.Reader) error {
	b, err := io.ReadAll(body)
	rc.got = b
	if err != nil {
		return fmt.Errorf("%w: %w", store.ErrIncompleteBody, err)
	}
	return nil
}

// TestPeerDataChunksTagged: an upload stream's chunks reach the replica
// only with the tags the coordinator gave them for that stream, in their
// place: whoever replays a seen signature (and manifest) with bytes of
// their own, or another stream's tags, or the chunks in another order, is
// refused before any of those bytes is handed on, even when the bytes
// keep their CRC.
func TestPeerDataChunksTagged(t *testing.T) {
	c := &Coordinator{sign: newSigner([]byte("the cluster secret, long enough")), log: slog.New(slog.DiscardHandler)}
	var rc recorded
	h := authenticated(c.sign, c.log, c.serveData(&rc))
	const size = 2*store.ChunkSize + 10
	data := make([]byte, size)
	for i := range data {
		data[i] = byte(i * 7)
	}
	chunks := [][]byte{data[:store.ChunkSize], data[store.ChunkSize : 2*store.ChunkSize], data[2*store.ChunkSize:]}
	manifest, err := json.Marshal(store.ReplicaWrite{ReservationIDs: []uint64{1}, Index: 9, Identity: 1, Size: size})
	if err != nil {
		t.Fatal(err)
	}
	other, err := json.Marshal(store.ReplicaWrite{ReservationIDs: []uint64{2}, Index: 9, Identity: 2, Size: size})
	if err != nil {
		t.Fatal(err)
	}
	salt := newStreamSalt()
	tags, err := c.sign.chunkTagger(manifest, salt)
	if err != nil {
		t.Fatal(err)
	}
	good := streamBody(t, manifest, salt, tags, chunks)
	wantBytes := func(chunks ...[]byte) []byte {
		var b []byte
		for _, c := range chunks {
			b = append(b, binary.BigEndian.AppendUint32(nil, crc32.Checksum(c, crc32.MakeTable(crc32.Castagnoli)))...)
			b = append(b, c...)
		}
		return b
	}

	// The second chunk's bytes replaced, with their own CRC-32C in the
	// frame, under the tag the coordinator gave the real ones.
	forged := slices.Clone(data)
	forged[store.ChunkSize] ^= 1
	forgedChunks := [][]byte{forged[:store.ChunkSize], forged[store.ChunkSize : 2*store.ChunkSize], forged[2*store.ChunkSize:]}
	replayed := streamBody(t, manifest, salt, tags, chunks) // the tags of the good stream...
	frame1 := 4 + len(manifest) + streamSaltSize + 4 + store.ChunkSize + chunkTagSize
	copy(replayed[frame1+4:], forgedChunks[1]) // ...over other bytes
	binary.BigEndian.PutUint32(replayed[frame1:], crc32.Checksum(forgedChunks[1], crc32.MakeTable(crc32.Castagnoli)))

	otherSalt := newStreamSalt()
	otherTags, err := c.sign.chunkTagger(other, otherSalt)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		body   []byte
		status int
		want   []byte // what the replica was handed
	}{
		{"the coordinator's stream", good, http.StatusOK, wantBytes(chunks...)},
		{"a chunk's bytes replaced", replayed, http.StatusUnauthorized, wantBytes(chunks[0])},
		{"another stream's tags", streamBody(t, manifest, otherSalt, otherTags, chunks), http.StatusUnauthorized, nil},
		{"another salt", streamBody(t, manifest, otherSalt, tags, chunks), http.StatusUnauthorized, nil},
		{"chunks swapped", streamBody(t, manifest, salt, tags, [][]byte{chunks[1], chunks[0], chunks[2]}, 1, 0, 2), http.StatusUnauthorized, nil},
		{"cut inside a frame", good[:len(good)-1], http.StatusBadRequest, wantBytes(chunks[:2]...)},
		{"no salt", good[:4+len(manifest)+3], http.StatusBadRequest, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rc = recorded{}
			r := httptest.NewRequest(http.MethodPut, "/peer/data", bytes.NewReader(tc.body))
			c.sign.sign(r, manifest)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tc.status {
				t.Fatalf("status %d (%s); want %d", w.Code, strings.TrimSpace(w.Body.String()), tc.status)
			}
			if !bytes.Equal(rc.got, tc.want) {
				t.Fatalf("the replica was handed %d bytes, want %d", len(rc.got), len(tc.want))
			}
		})
	}
}

// TestPeerReplayRefused: a peer request that changes something is
// accepted once; the same request again (seen on the wire and resent) is
// refused and reaches no handler, whatever order concurrent requests
// arrive in. Reads may be sent again. A request older than the window,
// and every epoch's requests once its timestamps are out of the skew,
// are refused; another sender's numbers are its own.
func TestPeerReplayRefused(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	secret := []byte("the cluster secret, long enough")
	receiver := newSigner(secret)
	receiver.now = func() time.Time { return now }
	sender := newSigner(secret)
	sender.now = receiver.now
	handled := 0
	h := authenticated(receiver, slog.New(slog.DiscardHandler), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled++
	}))
	signed := func(s signer, method string) *http.Request {
		body := []byte("a command")
		r := httptest.NewRequest(method, "http://n1:8080/peer/propose", bytes.NewReader(body))
		s.sign(r, body)
		return r
	}
	send := func(r *http.Request) int {
		in := httptest.NewRequest(r.Method, "/peer/propose", bytes.NewReader([]byte("a command")))
		in.Host = "n1:8080"
		in.Header = r.Header.Clone()
		w := httptest.NewRecorder()
		h.ServeHTTP(w, in)
		return w.Code
	}
	refusals := uint64(0)
	expect := func(what string, r *http.Request, want int) {
		t.Helper()
		if want == http.StatusUnauthorized {
			refusals++
		}
		before := handled
		if got := send(r); got != want {
			t.Fatalf("%s: status %d, want %d", what, got, want)
		}
		if reached := handled > before; reached != (want == http.StatusOK) {
			t.Fatalf("%s: reached the handler: %v", what, reached)
		}
	}

	a, b, c := signed(sender, http.MethodPost), signed(sender, http.MethodPost), signed(sender, http.MethodPost)
	expect("c", c, http.StatusOK)
	expect("a, after c", a, http.StatusOK)
	expect("c again", c, http.StatusUnauthorized)
	expect("b, after a and c", b, http.StatusOK)
	expect("a again", a, http.StatusUnauthorized)
	expect("b again", b, http.StatusUnauthorized)

	get := signed(sender, http.MethodGet)
	expect("a read", get, http.StatusOK)
	expect("the read again", get, http.StatusOK)

	other := newSigner(secret)
	other.now = receiver.now
	other.seq.Store(sender.seq.Load() - 1) // the same numbers, another epoch
	expect("another sender's request", signed(other, http.MethodPost), http.StatusOK)

	old := signed(sender, http.MethodPost)
	sender.seq.Add(replayWindow)
	expect("a request past the window", signed(sender, http.MethodPost), http.StatusOK)
	expect("one the window left behind", old, http.StatusUnauthorized)

	now = now.Add(2*MaxClockSkew + time.Second)
	fresh := newSigner(secret)
	fresh.now = receiver.now
	expect("a new sender, later", signed(fresh, http.MethodPost), http.StatusOK)
	receiver.seen.mu.Lock()
	remembered := len(receiver.seen.epochs)
	receiver.seen.mu.Unlock()
	if remembered != 1 {
		t.Fatalf("%d epochs remembered, want 1: those whose requests are all out of the skew are forgotten", remembered)
	}
	if got := receiver.refused.Load(); got != refusals {
		t.Fatalf("%d refusals counted (blobnode_peer_requests_refused_total), want %d", got, refusals)
	}
}

// TestPeerReplayWindowEdges: reads take no sequence number, so any number
// of them between two writes never pushes the older write out of the
// window; a number at the top of the range does not hang the guard; and
// a full table of senders forgets its oldest instead of refusing a new
// one (a peer that restarted), while a request of the forgotten sender,
// dated before its last one, stays refused.
func TestPeerReplayWindowEdges(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	secret := []byte("the cluster secret, long enough")
	s := newSigner(secret)
	s.now = func() time.Time { return now }
	sign := func(method string) *http.Request {
		r := httptest.NewRequest(method, "http://n1:8080/peer/propose", nil)
		s.sign(r, []byte("x"))
		return r
	}
	seqOf := func(r *http.Request) uint64 {
		parts := strings.Split(strings.TrimPrefix(r.Header.Get("Authorization"), authScheme), ".")
		n, err := strconv.ParseUint(parts[2], 10, 64)
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	first := seqOf(sign(http.MethodPost))
	for range 1000 {
		if n := seqOf(sign(http.MethodGet)); n != 0 {
			t.Fatalf("a read was numbered %d", n)
		}
	}
	if second := seqOf(sign(http.MethodPost)); second != first+1 {
		t.Fatalf("writes numbered %d then %d around reads", first, second)
	}

	g := newReplayGuard()
	done := make(chan error, 1)
	go func() {
		_ = g.accept(7, math.MaxUint64-1, now.Unix(), now)
		done <- g.accept(7, math.MaxUint64, now.Unix(), now)
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the top sequence number: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("accept of the top sequence number did not return")
	}

	g = newReplayGuard()
	ahead := now.Add(MaxClockSkew).Unix() // dated as far ahead as is accepted
	if err := g.accept(1, 1, now.Unix()-10, now); err != nil {
		t.Fatal(err)
	}
	for e := uint64(2); e <= maxEpochs; e++ {
		if err := g.accept(e, 1, ahead, now); err != nil {
			t.Fatal(err)
		}
	}
	later := now.Add(time.Minute)
	if err := g.accept(1000, 1, later.Unix(), later); err != nil {
		t.Fatalf("a new sender with the table full: %v", err)
	}
	if err := g.accept(1, 2, now.Unix()-20, later); err == nil {
		t.Fatal("a request of the forgotten sender, dated before its last one, was accepted")
	}
	if len(g.epochs) != maxEpochs {
		t.Fatalf("%d epochs remembered, want %d", len(g.epochs), maxEpochs)
	}
}
