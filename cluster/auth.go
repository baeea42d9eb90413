package cluster

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/blobnode/blobnode/raftfsm"
)

// MaxClockSkew bounds how far a peer request's timestamp may be from the
// receiver's clock.
const MaxClockSkew = 5 * time.Minute

const authScheme = "BlobnodePeer "

// ErrPeerAuth refuses a peer request that does not prove the sender holds
// the cluster secret.
var ErrPeerAuth = errors.New("cluster: peer request not authenticated")

// signer signs and verifies peer requests with a key derived from the
// cluster secret. Copies share its sequence and its replay guard.
type signer struct {
	key []byte
	now func() time.Time
	// epoch (random, drawn at start) and seq number this sender's
	// requests: each signature is unique, and a receiver accepts each
	// (epoch, seq) of a request that changes something once (seen).
	epoch uint64
	seq   *atomic.Uint64
	seen  *replayGuard
	// refused counts the peer requests refused as not authenticated
	// (replays included).
	refused *atomic.Uint64
}

func newSigner(secret []byte) signer {
	var b [8]byte
	rand.Read(b[:])
	return signer{key: raftfsm.PeerKey(secret, "peer api"), now: time.Now,
		epoch: binary.LittleEndian.Uint64(b[:]) | 1, seq: new(atomic.Uint64), seen: newReplayGuard(), refused: new(atomic.Uint64)}
}

// bodyDigestHeader carries the SHA-256 of the part of a request's body
// that the MAC covers: all of a POST's body (a signature seen on the wire
// cannot be reused for another command, another node to remove), the
// manifest at the head of a streamed PUT /peer/data (not for another
// upload's reservations). A stream's chunks carry tags of their own (see
// chunkTagger).
const bodyDigestHeader = "X-Blobnode-Body-Sha256"

// mac covers the request's method, the node it is for (Host: a signature
// for one node is refused by the others), its URI, its time, its sender's
// epoch and sequence number and the digest of its signed part.
func (s signer) mac(method, host, uri string, ts int64, epoch, seq uint64, bodyDigest string) []byte {
	m := hmac.New(sha256.New, s.key)
	fmt.Fprintf(m, "%s %s %s %d %016x %d %s", method, host, uri, ts, epoch, seq, bodyDigest)
	return m.Sum(nil)
}

// sign adds the Authorization header to req. signed is the part of req's
// body the signature then covers (see bodyDigestHeader), or nil for a
// request without a body.
func (s signer) sign(req *http.Request, signed []byte) {
	digest := ""
	if signed != nil {
		sum := sha256.Sum256(signed)
		digest = hex.EncodeToString(sum[:])
		req.Header.Set(bodyDigestHeader, digest)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	ts := s.now().Unix()
	seq := uint64(0) // a read: never checked for replay, so it takes no number
	if changes(req.Method) {
		seq = s.seq.Add(1)
	}
	mac := s.mac(req.Method, host, req.URL.RequestURI(), ts, s.epoch, seq, digest)
	h := append([]byte(authScheme), strconv.FormatInt(ts, 10)...)
	h = fmt.Appendf(append(h, '.'), "%016x", s.epoch)
	h = strconv.AppendUint(append(h, '.'), seq, 10)
	h = hex.AppendEncode(append(h, '.'), mac)
	req.Header.Set("Authorization", string(h))
}

// changes reports whether a peer request of method may change something:
// only those are numbered and accepted once.
func changes(method string) bool { return method != http.MethodGet && method != http.MethodHead }

// verify checks req's Authorization header: "BlobnodePeer
// <unix seconds>.<epoch, 16 hex digits>.<seq>.<hex MAC>". A request that
// changes something (any method but GET and HEAD) is accepted once: its
// sender's (epoch, seq) again is a replay (see replayGuard).
func (s signer) verify(req *http.Request) error {
	h := req.Header.Get("Authorization")
	if !strings.HasPrefix(h, authScheme) {
		return fmt.Errorf("%w: no BlobnodePeer authorization", ErrPeerAuth)
	}
	parts := strings.Split(strings.TrimPrefix(h, authScheme), ".")
	if len(parts) != 4 || len(parts[1]) != 16 {
		return fmt.Errorf("%w: malformed authorization", ErrPeerAuth)
	}
	ts, err1 := strconv.ParseInt(parts[0], 10, 64)
	epoch, err2 := strconv.ParseUint(parts[1], 16, 64)
	seq, err3 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return fmt.Errorf("%w: malformed authorization", ErrPeerAuth)
	}
	if d := s.now().Sub(time.Unix(ts, 0)); d > MaxClockSkew || d < -MaxClockSkew {
		return fmt.Errorf("%w: timestamp %v away from this node's clock", ErrPeerAuth, d.Round(time.Second))
	}
	got, err := hex.DecodeString(parts[3])
	if err != nil || !hmac.Equal(got, s.mac(req.Method, req.Host, req.RequestURI, ts, epoch, seq, req.Header.Get(bodyDigestHeader))) {
		return fmt.Errorf("%w: wrong MAC (another cluster secret?)", ErrPeerAuth)
	}
	if !changes(req.Method) {
		return nil // a read: sent again, it changes nothing
	}
	return s.seen.accept(epoch, seq, ts, s.now())
}

// replayGuard remembers, per sender epoch, which sequence numbers of
// requests that change something it accepted, so that a request seen on
// the wire and sent again is refused. Per epoch it keeps the highest
// number accepted and a bitmap of the replayWindow numbers below it. A
// sender numbers only such requests (reads take none), a few thousand a
// second at most, so a request overtaken by replayWindow later ones of its
// sender (a minute or more of them) is refused as too old to tell; the
// coordinator's own retries sign again. An epoch is forgotten once
// 2*MaxClockSkew have passed since it last had a request accepted: each
// of its requests is refused by its timestamp by then. When maxEpochs are
// remembered, the one whose last request is oldest is forgotten, and a
// request of an epoch not remembered is then refused if its timestamp is
// not after that last request's (it could be a replay of the forgotten
// one's). A restart forgets every epoch: within MaxClockSkew of it, a
// request accepted before can be sent again (documented).
type replayGuard struct {
	mu      sync.Mutex
	epochs  map[uint64]*seqWindow
	horizon int64 // unknown epochs' requests must be newer (unix seconds)
}

const (
	replayWindow = 1 << 18
	// maxEpochs bounds the senders remembered (one per node start and
	// per join): 8 MiB of windows at most.
	maxEpochs = 256
)

type seqWindow struct {
	max  uint64 // highest sequence number accepted
	bits [replayWindow / 64]uint64
	// last is the receiver's time of the newest timestamp accepted, the
	// timestamp capped at the receiver's clock (a request dated ahead is
	// refused by its timestamp MaxClockSkew after its date, which is
	// within 2*MaxClockSkew of when it arrived).
	last int64
}

func newReplayGuard() *replayGuard { return &replayGuard{epochs: map[uint64]*seqWindow{}} }

func (w *seqWindow) bit(seq uint64) (word *uint64, mask uint64) {
	i := seq % replayWindow
	return &w.bits[i/64], 1 << (i % 64)
}

// accept records (epoch, seq) of a request with timestamp ts, or refuses
// it with ErrPeerAuth if it was accepted before or is too old to tell.
func (g *replayGuard) accept(epoch, seq uint64, ts int64, now time.Time) error {
	if seq == 0 {
		return fmt.Errorf("%w: sequence number 0", ErrPeerAuth)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	w := g.epochs[epoch]
	if w == nil {
		if ts <= g.horizon {
			return fmt.Errorf("%w: a sender not remembered, and dated before the oldest one forgotten", ErrPeerAuth)
		}
		g.forget(now)
		if len(g.epochs) >= maxEpochs {
			g.forgetOldest()
		}
		w = &seqWindow{}
		g.epochs[epoch] = w
	}
	switch {
	case seq > w.max:
		if d := seq - w.max; d >= replayWindow {
			clear(w.bits[:])
		} else {
			for i := uint64(1); i <= d; i++ { // their bits are of numbers replayWindow below
				word, mask := w.bit(w.max + i)
				*word &^= mask
			}
		}
		w.max = seq
	case w.max-seq >= replayWindow:
		return fmt.Errorf("%w: request %d of its sender is older than the %d this node remembers", ErrPeerAuth, seq, replayWindow)
	default:
		if word, mask := w.bit(seq); *word&mask != 0 {
			return fmt.Errorf("%w: request %d of its sender was seen before (a replay)", ErrPeerAuth, seq)
		}
	}
	word, mask := w.bit(seq)
	*word |= mask
	w.last = max(w.last, min(ts, now.Unix()))
	return nil
}

// forgetOldest forgets the epoch whose last request is oldest, and keeps
// its time as the horizon. REQUIRES: g.mu held.
func (g *replayGuard) forgetOldest() {
	var oldest uint64
	t := int64(math.MaxInt64)
	for e, w := range g.epochs {
		if w.last < t {
			oldest, t = e, w.last
		}
	}
	delete(g.epochs, oldest)
	g.horizon = max(g.horizon, t)
}

// forget drops the epochs whose requests are all refused by their
// timestamps by now. REQUIRES: g.mu held.
func (g *replayGuard) forget(now time.Time) {
	for e, w := range g.epochs {
		if now.Sub(time.Unix(w.last, 0)) > 2*MaxClockSkew {
			delete(g.epochs, e)
		}
	}
}

// errBodyTooLarge: a whole body over the limit of its endpoint.
var errBodyTooLarge = errors.New("cluster: peer request body too large")

// readSignedBody reads req's whole body, at most limit bytes, once verify
// has accepted req, and checks it against the digest its signature
// covers: a body without one, or another body than the one signed, is
// refused with ErrPeerAuth.
func readSignedBody(req *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("cluster: read the peer request body: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: over %d bytes", errBodyTooLarge, limit)
	}
	return b, checkSigned(req, b)
}

// checkSigned checks that part is the part of req's body its signature
// covers (verify has accepted req): ErrPeerAuth if req has no digest, or
// another.
func checkSigned(req *http.Request, part []byte) error {
	want, err := hex.DecodeString(req.Header.Get(bodyDigestHeader))
	if err != nil || len(want) != sha256.Size {
		return fmt.Errorf("%w: the body is not signed", ErrPeerAuth)
	}
	if got := sha256.Sum256(part); !hmac.Equal(got[:], want) {
		return fmt.Errorf("%w: the body is not the one signed", ErrPeerAuth)
	}
	return nil
}
