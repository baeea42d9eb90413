// Package workload drives concurrent clients against blobnode's HTTP blob
// API and records every operation in a history.Recorder, for
// history.Check to judge.
//
// Each client is one goroutine sending one request at a time to one node
// (client i to node i mod len(URLs)): a random mix of PUT (each of a value
// unique in the run), GET and DELETE on a few keys. What a client learns is
// classified from the API's answer:
//
//	PUT 201, DELETE 204, GET 200 with a body this package wrote  OK
//	GET or DELETE 404                                            NotFound
//	any other 4xx                                                Failed (no effect)
//	5xx, a timeout, a connection lost after dialling, a cut body, anything else Unknown;
//	a dial that fails (no connection, so no request) Failed
//
// A GET whose body is not one this package wrote is recorded as OK with a
// value no PUT wrote ("corrupt:..."), which the checker reports.
package workload

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/blobnode/blobnode/internal/history"
)

// Config is one run. Zero fields take the defaults in brackets.
type Config struct {
	URLs  []string // base URL of each node, e.g. http://127.0.0.11:8081
	Names []string // node names for the history, parallel to URLs [the URLs]
	// HTTP sends every request [a client of its own, closed after the run].
	HTTP *http.Client
	// Header is added to every request (e.g. Authorization).
	Header http.Header

	Clients      int           // concurrent clients [6]
	Keys         []string      // keys the clients share [wl/k0, wl/k1, wl/k2]
	OpsPerClient int           // most operations a client sends [200]
	Duration     time.Duration // longest run [10s]
	// RequestTimeout bounds one request [5s]; past it the op is Unknown.
	RequestTimeout time.Duration
	// Seed picks operations and makes values unique across runs: two runs
	// on one Recorder need different seeds.
	Seed uint64
	// PutPercent and DeletePercent of the operations; the rest are GETs
	// [40 and 15].
	PutPercent, DeletePercent int
	// ReadQuery is added to every GET, e.g. "consistency=stale" [none].
	ReadQuery string
	// ValueSize is the size of a PUT body [64 bytes; at least the value].
	ValueSize int
	// Think is how long a client waits between two operations [none].
	Think time.Duration
	// Backoff is how long a client waits after an operation without a
	// definite answer (Failed or Unknown) [none]: during a fault, clients
	// that retry at once fill the history with unknown writes, each of
	// which widens the linearizability search.
	Backoff time.Duration
}

func (c *Config) fill() error {
	if len(c.URLs) == 0 {
		return errors.New("workload: no URLs")
	}
	if c.Names == nil {
		c.Names = c.URLs
	}
	if len(c.Names) != len(c.URLs) {
		return fmt.Errorf("workload: %d names for %d URLs", len(c.Names), len(c.URLs))
	}
	if c.Clients <= 0 {
		c.Clients = 6
	}
	if len(c.Keys) == 0 {
		c.Keys = []string{"wl/k0", "wl/k1", "wl/k2"}
	}
	if c.OpsPerClient <= 0 {
		c.OpsPerClient = 200
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 5 * time.Second
	}
	if c.PutPercent == 0 && c.DeletePercent == 0 {
		c.PutPercent, c.DeletePercent = 40, 15
	}
	if c.PutPercent < 0 || c.DeletePercent < 0 || c.PutPercent+c.DeletePercent > 100 {
		return fmt.Errorf("workload: bad mix: %d%% puts, %d%% deletes", c.PutPercent, c.DeletePercent)
	}
	if c.ValueSize <= 0 {
		c.ValueSize = 64
	}
	return nil
}

// Run runs the clients until each has sent OpsPerClient operations, the
// Duration has passed, or ctx is done, and returns when every request has
// ended. Every operation is in rec, whatever its outcome; the error is for
// a bad Config only.
func Run(ctx context.Context, cfg Config, rec *history.Recorder) error {
	if err := cfg.fill(); err != nil {
		return err
	}
	hc, closeHTTP := cfg.client()
	defer closeHTTP()
	ctx, cancel := context.WithTimeout(ctx, cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	for c := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(cfg.Seed, uint64(c)))
			node := c % len(cfg.URLs)
			for i := 0; i < cfg.OpsPerClient && ctx.Err() == nil; i++ {
				key := cfg.Keys[rng.IntN(len(cfg.Keys))]
				var out history.Outcome
				switch p := rng.IntN(100); {
				case p < cfg.PutPercent:
					value := fmt.Sprintf("s%d-c%d-%d", cfg.Seed, c, i)
					out = doPut(ctx, hc, &cfg, rec, c, node, key, value)
				case p < cfg.PutPercent+cfg.DeletePercent:
					out = doDelete(ctx, hc, &cfg, rec, c, node, key)
				default:
					out = doGet(ctx, hc, &cfg, rec, c, node, key)
				}
				wait := cfg.Think
				if out != history.OK && out != history.NotFound {
					wait = max(wait, cfg.Backoff)
				}
				sleep(ctx, wait)
			}
		}()
	}
	wg.Wait()
	return nil
}

// FinalReads marks the history's final phase and reads every key from
// every node, one request at a time, as client id cfg.Clients (a client no
// worker of Run uses). Call it after the faults have healed and the nodes
// have caught up; a read that gets no definite answer is recorded as such.
func FinalReads(ctx context.Context, cfg Config, rec *history.Recorder) error {
	if err := cfg.fill(); err != nil {
		return err
	}
	hc, closeHTTP := cfg.client()
	defer closeHTTP()
	rec.BeginFinal()
	for node := range cfg.URLs {
		for _, key := range cfg.Keys {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			doGet(ctx, hc, &cfg, rec, cfg.Clients, node, key)
		}
	}
	return nil
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func (c *Config) client() (*http.Client, func()) {
	if c.HTTP != nil {
		return c.HTTP, func() {}
	}
	tr := &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, DisableCompression: true}
	return &http.Client{Transport: tr}, tr.CloseIdleConnections
}

// Body is the PUT body of value: the value, a newline, then filler derived
// from the value up to size bytes. Decode inverts it.
func Body(value string, size int) []byte {
	b := make([]byte, 0, max(size, len(value)+1))
	b = append(b, value...)
	b = append(b, '\n')
	sum := sha256.Sum256([]byte(value))
	for i := 0; len(b) < size; i++ {
		b = append(b, "0123456789abcdef"[sum[i%len(sum)]&0xf])
	}
	return b
}

// Decode returns the value a body of Body carries, or ok false for a body
// Body did not make (of any size).
func Decode(body []byte) (value string, ok bool) {
	head, _, found := bytes.Cut(body, []byte{'\n'})
	if !found {
		return "", false
	}
	value = string(head)
	return value, bytes.Equal(body, Body(value, len(body)))
}

func blobURL(base, key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.TrimRight(base, "/") + "/blobs/" + strings.Join(segs, "/")
}

// send does one request bounded by cfg.RequestTimeout and reads the whole
// answer (at most max bytes of body).
func send(ctx context.Context, hc *http.Client, cfg *Config, method, u string, body []byte, limit int64) (int, []byte, error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.RequestTimeout)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return 0, nil, err
	}
	for k, vs := range cfg.Header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return resp.StatusCode, nil, fmt.Errorf("%s: body: %w", resp.Status, err)
	}
	return resp.StatusCode, b, nil
}

// classify turns an answer into an outcome; want is the status of
// success, body the answer's body. A 503 whose error code is Unavailable
// is a definite failure: the node says nothing was done (the write never
// reached a leader), a claim the history then checks (OutcomeUnknown and
// every other 5xx may have been applied).
func classify(status int, body []byte, err error, want int) (history.Outcome, error) {
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		// No connection, so no request reached the node: nothing applied.
		return history.Failed, err
	case err != nil:
		return history.Unknown, err
	case status == want:
		return history.OK, nil
	case status == http.StatusNotFound:
		return history.NotFound, nil
	case status >= 400 && status < 500:
		return history.Failed, fmt.Errorf("status %d", status)
	case status == http.StatusServiceUnavailable && errorCode(body) == "Unavailable":
		return history.Failed, fmt.Errorf("status %d Unavailable", status)
	}
	return history.Unknown, fmt.Errorf("status %d %s", status, errorCode(body))
}

// errorCode is the code of a blobnode error body, or "".
func errorCode(body []byte) string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil {
		return ""
	}
	return e.Error.Code
}

func doPut(ctx context.Context, hc *http.Client, cfg *Config, rec *history.Recorder, client, node int, key, value string) history.Outcome {
	call := rec.Invoke(client, cfg.Names[node], history.Put, key, value)
	status, body, err := send(ctx, hc, cfg, http.MethodPut, blobURL(cfg.URLs[node], key), Body(value, cfg.ValueSize), 64<<10)
	out, why := classify(status, body, err, http.StatusCreated)
	if out == history.NotFound { // a PUT has no 404 of its own: a refusal
		out = history.Failed
	}
	call.Return(out, "", why)
	return out
}

func doDelete(ctx context.Context, hc *http.Client, cfg *Config, rec *history.Recorder, client, node int, key string) history.Outcome {
	call := rec.Invoke(client, cfg.Names[node], history.Delete, key, "")
	status, body, err := send(ctx, hc, cfg, http.MethodDelete, blobURL(cfg.URLs[node], key), nil, 64<<10)
	out, why := classify(status, body, err, http.StatusNoContent)
	call.Return(out, "", why)
	return out
}

func doGet(ctx context.Context, hc *http.Client, cfg *Config, rec *history.Recorder, client, node int, key string) history.Outcome {
	u := blobURL(cfg.URLs[node], key)
	if cfg.ReadQuery != "" {
		u += "?" + cfg.ReadQuery
	}
	call := rec.Invoke(client, cfg.Names[node], history.Get, key, "")
	status, body, err := send(ctx, hc, cfg, http.MethodGet, u, nil, int64(cfg.ValueSize)+1<<20)
	out, why := classify(status, body, err, http.StatusOK)
	got := ""
	if out == history.OK {
		v, ok := Decode(body)
		if !ok {
			sum := sha256.Sum256(body)
			v = fmt.Sprintf("corrupt:%d-bytes-%x", len(body), sum[:6])
			why = errors.New("the body is no value this workload wrote")
		}
		got = v
	}
	call.Return(out, got, why)
	return out
}
