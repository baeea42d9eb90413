package cluster

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
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

func (s signer) mac(method, uri string, ts int64) []byte {
	m := hmac.New(sha256.New, s.key)
	fmt.Fprintf(m, "%s %s %d", method, uri, ts)
	return m.Sum(nil)
}

// sign adds the Authorization header to req.
func (s signer) sign(req *http.Request) {
	ts := s.now().Unix()
	req.Header.Set("Authorization", authScheme+strconv.FormatInt(ts, 10)+"."+hex.EncodeToString(s.mac(req.Method, req.URL.RequestURI(), ts)))
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
	if err != nil || !hmac.Equal(got, s.mac(req.Method, req.RequestURI, ts)) {
		return fmt.Errorf("%w: wrong MAC (another cluster secret?)", ErrPeerAuth)
	}
	return nil
}
