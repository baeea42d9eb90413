package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
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
// cluster secret.
type signer struct {
	key []byte
	now func() time.Time
}

func newSigner(secret []byte) signer {
	return signer{key: raftfsm.PeerKey(secret, "peer api"), now: time.Now}
}

// bodyDigestHeader carries the SHA-256 of the part of a request's body
// that the MAC covers: all of a POST's body (a signature seen on the wire
// cannot be reused for another command, another node to remove), the
// manifest at the head of a streamed PUT /peer/data (not for another
// upload's reservations). A stream's chunks carry tags of their own (see
// chunkTagger).
const bodyDigestHeader = "X-Blobnode-Body-Sha256"

// mac covers the request's method, the node it is for (Host: a signature
// for one node is refused by the others), its URI, its time and the
// digest of its signed part.
func (s signer) mac(method, host, uri string, ts int64, bodyDigest string) []byte {
	m := hmac.New(sha256.New, s.key)
	fmt.Fprintf(m, "%s %s %s %d %s", method, host, uri, ts, bodyDigest)
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
	req.Header.Set("Authorization", authScheme+strconv.FormatInt(ts, 10)+"."+hex.EncodeToString(s.mac(req.Method, host, req.URL.RequestURI(), ts, digest)))
}

// verify checks req's Authorization header.
func (s signer) verify(req *http.Request) error {
	h := req.Header.Get("Authorization")
	if !strings.HasPrefix(h, authScheme) {
		return fmt.Errorf("%w: no BlobnodePeer authorization", ErrPeerAuth)
	}
	tsText, macText, ok := strings.Cut(strings.TrimPrefix(h, authScheme), ".")
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if !ok || err != nil {
		return fmt.Errorf("%w: malformed authorization", ErrPeerAuth)
	}
	if d := s.now().Sub(time.Unix(ts, 0)); d > MaxClockSkew || d < -MaxClockSkew {
		return fmt.Errorf("%w: timestamp %v away from this node's clock", ErrPeerAuth, d.Round(time.Second))
	}
	got, err := hex.DecodeString(macText)
	if err != nil || !hmac.Equal(got, s.mac(req.Method, req.Host, req.RequestURI, ts, req.Header.Get(bodyDigestHeader))) {
		return fmt.Errorf("%w: wrong MAC (another cluster secret?)", ErrPeerAuth)
	}
	return nil
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
