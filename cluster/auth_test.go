package cluster

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
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
		sign   func(*http.Request)
		mutate func(*http.Request)
		ok     bool
	}{
		{"signed", good.sign, nil, true},
		{"unsigned", func(*http.Request) {}, nil, false},
		{"another secret", other.sign, nil, false},
		{"clock too far", skewed.sign, nil, false},
		{"other path", good.sign, func(r *http.Request) { r.RequestURI = "/peer/readindex" }, false},
		{"other method", good.sign, func(r *http.Request) { r.Method = http.MethodGet }, false},
		{"garbage", func(r *http.Request) { r.Header.Set("Authorization", "BlobnodePeer x.y") }, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := httptest.NewRequest(http.MethodPost, "http://n1:8080/peer/propose?x=1", nil)
			tc.sign(out)
			in := httptest.NewRequest(http.MethodPost, "/peer/propose?x=1", nil)
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
