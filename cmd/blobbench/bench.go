package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Config describes one run. The zero value is not usable; main fills every
// field from flags.
type Config struct {
	Addr        string        // base URL of the node, e.g. http://127.0.0.1:8080, or several, comma-separated
	N           int           // blobs per run; no phase issues more requests than this
	Size        int64         // bytes per blob
	Concurrency int           // concurrent clients, each with its own keep-alive connection
	Ops         []Op          // phases, run in order
	Prefix      string        // key prefix; keys are Prefix + 10-digit index
	Timeout     time.Duration // per request, body included
	Duration    time.Duration // if > 0, a phase issues no request after this long
	JSON        bool          // one JSON object per phase instead of a table
	Token       string        // if set, sent as "Authorization: Bearer <Token>"
	Verify      bool          // GET compares every body byte with the key's pattern
}

// maxShownErrors is how many failures of a phase are printed; all are counted.
const maxShownErrors = 5

// copyBufSize is the size of each worker's two GET buffers.
const copyBufSize = 32 << 10

// errMismatch marks a GET whose answer was 200 but whose body or length
// differs from what the PUT phase wrote.
var errMismatch = errors.New("verification failed")

// StatusError is an answer with an unexpected status code.
type StatusError struct {
	Code int
	Body string // start of the response body
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("status %d: %s", e.Code, e.Body)
}

// addrs splits Addr into its base URLs. Each must be http://host:port or
// https://host:port; an empty entry is refused, so a stray comma is
// noticed rather than silently dropped.
func (c *Config) addrs() ([]string, error) {
	var out []string
	for a := range strings.SplitSeq(c.Addr, ",") {
		a = strings.TrimSpace(a)
		u, err := url.Parse(a)
		if err != nil {
			return nil, fmt.Errorf("addr %q: %w", a, err)
		}
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("addr %q: want http://host:port or https://host:port (comma-separated for several)", a)
		}
		out = append(out, a)
	}
	return out, nil
}

func (c *Config) validate() error {
	if _, err := c.addrs(); err != nil {
		return err
	}
	switch {
	case c.N < 1:
		return fmt.Errorf("n %d: want at least 1", c.N)
	case c.Size < 0:
		return fmt.Errorf("size %d: want at least 0", c.Size)
	case c.Concurrency < 1:
		return fmt.Errorf("c %d: want at least 1", c.Concurrency)
	case len(c.Ops) == 0:
		return errors.New("ops: no phase given")
	case c.Prefix == "":
		return errors.New("prefix: must not be empty")
	case c.Timeout <= 0:
		return fmt.Errorf("timeout %v: want a positive duration", c.Timeout)
	case c.Duration < 0:
		return fmt.Errorf("duration %v: want zero (no cap) or a positive duration", c.Duration)
	}
	return nil
}

// bench is the state shared by the phases of one run.
type bench struct {
	cfg    Config
	client *http.Client
	// bases holds, for each address of Addr, the address without a
	// trailing '/', then "/blobs/" and the escaped prefix.
	bases  []string
	errOut io.Writer
	outMu  sync.Mutex // guards writes to errOut from workers
}

// Run executes cfg.Ops in order against cfg.Addr, writes one result per
// phase to out as the phase ends and the first failures of each phase to
// errOut, and returns the results. A returned error means the run could not
// start or ctx ended it; failed requests are counted in the results, not
// returned. Every goroutine Run starts has ended when it returns.
//
// A phase after a PUT phase touches only the blobs that PUT phase issued,
// so a PUT cut short by Duration does not make later phases fail.
//
// With several addresses, each client spreads its requests over them
// round-robin, client j sending its k-th request of a phase to address
// (j+k) mod len: every client uses every address, and at any moment the
// clients are spread evenly. The addresses must serve the same blobs (the
// nodes of one group): a GET may go to another address than its PUT.
func Run(ctx context.Context, cfg Config, out, errOut io.Writer) ([]Result, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	addrs, _ := cfg.addrs()
	b := &bench{
		cfg:    cfg,
		client: newClient(cfg, len(addrs)),
		errOut: errOut,
	}
	for _, a := range addrs {
		b.bases = append(b.bases, strings.TrimRight(a, "/")+"/blobs/"+escapeKey(cfg.Prefix))
	}
	defer b.client.CloseIdleConnections()

	if !cfg.JSON {
		fmt.Fprintf(out, "# blobbench addr=%s n=%d size=%s c=%d prefix=%s verify=%t\n",
			cfg.Addr, cfg.N, formatSize(cfg.Size), cfg.Concurrency, cfg.Prefix, cfg.Verify)
		writeHeader(out)
	}
	limit := cfg.N
	var results []Result
	for _, op := range cfg.Ops {
		if err := ctx.Err(); err != nil {
			return results, err
		}
		r := b.phase(ctx, op, limit)
		if op == OpPut {
			limit = r.Ops
		}
		results = append(results, r)
		if cfg.JSON {
			writeJSON(out, r)
		} else {
			writeRow(out, r)
		}
	}
	return results, ctx.Err()
}

// newClient returns a client that keeps one idle connection per worker and
// address (hosts of them) and asks for no compression, so bytes on the
// wire are the blob bytes.
func newClient(cfg Config, hosts int) *http.Client {
	dialer := &net.Dialer{Timeout: cfg.Timeout, KeepAlive: 30 * time.Second}
	return &http.Client{
		Timeout: cfg.Timeout,
		Transport: &http.Transport{
			Proxy:               nil, // measure the node, not a proxy
			DialContext:         dialer.DialContext,
			MaxIdleConns:        cfg.Concurrency * hosts,
			MaxIdleConnsPerHost: cfg.Concurrency,
			MaxConnsPerHost:     cfg.Concurrency,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			WriteBufferSize:     copyBufSize,
			ReadBufferSize:      copyBufSize,
		},
	}
}

// escapeKey percent-encodes each '/'-separated segment of key, so the server,
// which decodes the path once, sees key itself.
func escapeKey(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return strings.Join(segs, "/")
}

// key returns the i-th key; keys sort in index order.
func (b *bench) key(i int) string {
	return b.cfg.Prefix + indexString(i)
}

// url returns the i-th key's URL at address a (an index into bases).
func (b *bench) url(a, i int) string {
	return b.bases[a] + indexString(i)
}

func indexString(i int) string {
	s := strconv.Itoa(i)
	const width = 10
	if len(s) < width {
		s = strings.Repeat("0", width-len(s)) + s
	}
	return s
}

// worker holds the buffers one client reuses for every request, and the
// address its next request goes to.
type worker struct {
	got, want []byte
	addr      int // index into bench.bases
}

// phase issues up to limit requests of kind op, on indices 0..limit-1, from
// cfg.Concurrency workers, and stops issuing new ones once cfg.Duration has
// passed or ctx is done. Requests in flight at that moment finish.
func (b *bench) phase(ctx context.Context, op Op, limit int) Result {
	// lat[i] is written only by the worker that claimed index i; -1 means
	// not issued or failed.
	lat := make([]time.Duration, limit)
	for i := range lat {
		lat[i] = -1
	}
	var (
		next             atomic.Int64
		failed, mismatch atomic.Int64
		shown            atomic.Int64
		wg               sync.WaitGroup
		deadline         time.Time
		start            = time.Now()
	)
	if b.cfg.Duration > 0 {
		deadline = start.Add(b.cfg.Duration)
	}
	for j := range b.cfg.Concurrency {
		wg.Go(func() {
			w := &worker{addr: j % len(b.bases)}
			if op == OpGet && b.cfg.Verify {
				w.got = make([]byte, copyBufSize)
				w.want = make([]byte, copyBufSize)
			}
			for ctx.Err() == nil && (deadline.IsZero() || time.Now().Before(deadline)) {
				i := int(next.Add(1) - 1)
				if i >= limit {
					return
				}
				t0 := time.Now()
				err := b.do(ctx, w, op, i)
				w.addr = (w.addr + 1) % len(b.bases)
				d := time.Since(t0)
				if err == nil {
					lat[i] = d
					continue
				}
				failed.Add(1)
				if errors.Is(err, errMismatch) {
					mismatch.Add(1)
				}
				if shown.Add(1) <= maxShownErrors {
					b.outMu.Lock()
					fmt.Fprintf(b.errOut, "%s %s: %v\n", op, b.key(i), err)
					b.outMu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)

	issued := min(int(next.Load()), limit)
	ok := slices.DeleteFunc(lat[:issued], func(d time.Duration) bool { return d < 0 })
	slices.Sort(ok)
	r := Result{
		Phase:       op,
		Ops:         issued,
		Errors:      int(failed.Load()),
		Mismatches:  int(mismatch.Load()),
		Elapsed:     elapsed,
		Size:        b.cfg.Size,
		Concurrency: b.cfg.Concurrency,
		latencies:   ok,
	}
	if op != OpDelete {
		r.Bytes = int64(len(ok)) * b.cfg.Size
	}
	r.summarize()
	return r
}

// do issues one request and checks its answer.
func (b *bench) do(ctx context.Context, w *worker, op Op, i int) error {
	var (
		body io.Reader = http.NoBody
		want           = http.StatusOK
	)
	method := http.MethodGet
	switch op {
	case OpPut:
		method, want = http.MethodPut, http.StatusCreated
		if b.cfg.Size > 0 {
			body = newContentReader(b.key(i), b.cfg.Size)
		}
	case OpDelete:
		method, want = http.MethodDelete, http.StatusNoContent
	}
	req, err := http.NewRequestWithContext(ctx, method, b.url(w.addr, i), body)
	if err != nil {
		return err
	}
	if op == OpPut {
		req.ContentLength = b.cfg.Size
	}
	if b.cfg.Token != "" {
		req.Header.Set("Authorization", "Bearer "+b.cfg.Token)
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != want {
		snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
		drain(resp.Body)
		return &StatusError{Code: resp.StatusCode, Body: strings.TrimSpace(string(snippet))}
	}
	if op == OpGet && b.cfg.Verify {
		err = b.verify(w, resp, b.key(i))
	}
	drain(resp.Body)
	return err
}

// drain reads what is left of a body, up to a bound, so the connection can
// be reused; a longer remainder is dropped with the connection.
func drain(r io.Reader) {
	io.Copy(io.Discard, io.LimitReader(r, 256<<10))
}

// verify compares a GET answer with the first cfg.Size bytes of key's
// pattern, streaming through the worker's buffers. A Content-Length, when
// present, must equal cfg.Size; a body without one (chunked) must still be
// exactly cfg.Size bytes long.
func (b *bench) verify(w *worker, resp *http.Response, key string) error {
	size := b.cfg.Size
	if resp.ContentLength >= 0 && resp.ContentLength != size {
		return fmt.Errorf("%w: Content-Length %d, want %d", errMismatch, resp.ContentLength, size)
	}
	p := newPattern(key)
	var off int64
	for {
		n, err := resp.Body.Read(w.got)
		if n > 0 {
			if off+int64(n) > size {
				return fmt.Errorf("%w: body longer than %d bytes", errMismatch, size)
			}
			p.fill(w.want[:n])
			if !bytes.Equal(w.got[:n], w.want[:n]) {
				j := 0
				for w.got[j] == w.want[j] {
					j++
				}
				return fmt.Errorf("%w: body differs at byte %d", errMismatch, off+int64(j))
			}
			off += int64(n)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("read body at byte %d: %w", off, err)
		}
	}
	if off != size {
		return fmt.Errorf("%w: body is %d bytes, want %d", errMismatch, off, size)
	}
	return nil
}
