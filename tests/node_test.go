// Package tests holds the cross-package tests that drive a real blobnode
// process: real files in t.TempDir(), real TCP on 127.0.0.1, real signals.
//
// TestMain builds the daemon once; every test starts its own node on free
// loopback ports and stops it (SIGTERM, then wait) in t.Cleanup. Tests wait
// on events (a condition polled with a deadline), never on a bare sleep.
package tests

import (
	"bufio"
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// blobnodeBin is the daemon built by TestMain; set once before any test runs.
var blobnodeBin string

// Default geometry of a volume formatted without -spage-shift/-lpage-shift.
const (
	spage = 4 << 10
	lpage = 16 << 20
)

// Bounds on waiting; a healthy node is far faster.
const (
	readyTimeout = 30 * time.Second
	stopTimeout  = 30 * time.Second
	pollInterval = 10 * time.Millisecond
	// settleTimeout bounds how long space accounting may take to reflect
	// a finished request (pool refills and aborts run in the background).
	settleTimeout = 10 * time.Second
)

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "blobnode-tests-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin, err := buildBlobnode(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "tests:", err)
		return 1
	}
	blobnodeBin = bin
	return m.Run()
}

// buildBlobnode builds ./cmd/blobnode of this module into dir.
func buildBlobnode(dir string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("go env GOMOD: not inside a module")
	}
	bin := filepath.Join(dir, "blobnode")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/blobnode")
	build.Dir = filepath.Dir(gomod)
	if out, err := build.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/blobnode: %w\n%s", err, out)
	}
	return bin, nil
}

// node is one blobnode process on a data directory. It keeps its ports
// across restarts (the Raft configuration records the Raft address). All
// methods must be called from the test goroutine, except the request
// helpers that take no testing.TB.
type node struct {
	t        testing.TB
	dir      string
	httpAddr string
	raftAddr string
	flags    []string // extra flags, e.g. -volume-size
	logPath  string

	cmd     *exec.Cmd
	exited  chan struct{} // closed when cmd has been waited for
	waitErr error         // cmd.Wait's result, valid once exited is closed
	client  *http.Client
	base    string // http://127.0.0.1:port (https:// after useTLS)
	// clientTLS configures the client for an HTTPS node (nil: plain HTTP).
	clientTLS *tls.Config
}

// newNode prepares a node on a fresh data directory and free loopback
// ports, starts it and waits until it is ready. The node is stopped with
// SIGTERM in t.Cleanup.
func newNode(t testing.TB, flags ...string) *node {
	t.Helper()
	n := prepareNode(t, t.TempDir(), flags...)
	n.start()
	return n
}

// newNodeIn is newNode on the data directory dir.
func newNodeIn(t testing.TB, dir string, flags ...string) *node {
	t.Helper()
	n := prepareNode(t, dir, flags...)
	n.start()
	return n
}

// prepareNode is newNodeIn without the start, for a test that configures
// the node further (useTLS) first.
func prepareNode(t testing.TB, dir string, flags ...string) *node {
	t.Helper()
	return prepareNodeOn(t, "127.0.0.1", dir, flags...)
}

// prepareNodeOn is prepareNode with the API and Raft listening on free
// ports of the loopback IP ip (a cluster gives each node an IP of its own).
func prepareNodeOn(t testing.TB, ip, dir string, flags ...string) *node {
	t.Helper()
	addrs := freeAddrsOn(t, ip, 2)
	n := &node{
		t:        t,
		dir:      dir,
		httpAddr: addrs[0],
		raftAddr: addrs[1],
		flags:    flags,
		logPath:  filepath.Join(t.TempDir(), "blobnode.log"),
	}
	n.base = "http://" + n.httpAddr
	t.Cleanup(func() {
		if n.running() {
			n.stop()
		}
		if t.Failed() {
			t.Logf("blobnode log (%s), last lines:\n%s", n.logPath, tailFile(n.logPath, 80))
		}
	})
	return n
}

// useTLS makes the node's client speak HTTPS, trusting what cfg trusts.
func (n *node) useTLS(cfg *tls.Config) {
	n.clientTLS = cfg
	n.base = "https://" + n.httpAddr
}

// freeAddr returns a loopback address whose port was free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	return freeAddrsOn(t, "127.0.0.1", 1)[0]
}

// freeAddrs returns n loopback addresses, no two with the same port.
func freeAddrs(t testing.TB, n int) []string {
	t.Helper()
	return freeAddrsOn(t, "127.0.0.1", n)
}

// freeAddrsOn returns n addresses ip:port whose ports were free a moment
// ago, all different: every listener is held until the last is chosen
// (closed one by one, the kernel may hand the same port out twice).
func freeAddrsOn(t testing.TB, ip string, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip, "0"))
		if err != nil {
			t.Fatalf("find a free port: %v", err)
		}
		defer ln.Close()
		addrs[i] = ln.Addr().String()
	}
	return addrs
}

func (n *node) running() bool {
	if n.cmd == nil {
		return false
	}
	select {
	case <-n.exited:
		return false
	default:
		return true
	}
}

// start runs the process on n.dir and waits for /readyz to answer 200.
func (n *node) start() {
	n.t.Helper()
	n.launch()
	n.waitReady()
}

// launch runs the process on n.dir without waiting for it to be ready
// (a node of a group is ready only once a quorum runs).
func (n *node) launch() {
	n.t.Helper()
	if n.running() {
		n.t.Fatal("start: node already running")
	}
	args := append([]string{
		"-data-dir", n.dir, "-http-addr", n.httpAddr, "-raft-addr", n.raftAddr,
	}, n.flags...)
	logf, err := os.OpenFile(n.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		n.t.Fatal(err)
	}
	fmt.Fprintf(logf, "=== start %s %s\n", blobnodeBin, strings.Join(args, " "))
	cmd := exec.Command(blobnodeBin, args...)
	cmd.Env = nodeEnv()
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		n.t.Fatalf("start blobnode: %v", err)
	}
	logf.Close() // the child holds its own descriptor
	n.cmd = cmd
	n.exited = make(chan struct{})
	exited := n.exited
	go func() {
		n.waitErr = cmd.Wait()
		close(exited)
	}()
	n.client = newClient(n.clientTLS)
}

// nodeEnv is the test's environment without BLOBNODE_* variables, so a
// developer's settings cannot change what a test starts, and with text
// logs (the default for a log file is JSON), which tests read with
// strings.Contains.
func nodeEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "BLOBNODE_") {
			env = append(env, kv)
		}
	}
	return append(env, "BLOBNODE_LOG_FORMAT=text")
}

// newClient returns a client for one node; tlsCfg is for HTTPS (nil: the
// default, unused for http:// URLs).
func newClient(tlsCfg *tls.Config) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			TLSClientConfig:     tlsCfg,
			Proxy:               nil, // traffic goes to 127.0.0.1 only
			DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 64,
			DisableCompression:  true,
		},
		Timeout: 2 * time.Minute,
	}
}

func (n *node) waitReady() {
	n.t.Helper()
	deadline := time.Now().Add(readyTimeout)
	last := "no answer"
	for time.Now().Before(deadline) {
		select {
		case <-n.exited:
			n.t.Fatalf("blobnode exited before it was ready: %v\n%s", n.waitErr, tailFile(n.logPath, 40))
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.base+"/readyz", nil)
		resp, err := n.client.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				cancel()
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		cancel()
		waitTick(n.exited)
	}
	n.t.Fatalf("blobnode not ready after %v (last: %s)", readyTimeout, last)
}

// waitTick waits one poll interval, or less if done is closed.
func waitTick(done <-chan struct{}) {
	t := time.NewTimer(pollInterval)
	defer t.Stop()
	select {
	case <-t.C:
	case <-done:
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (n *node) stop() {
	n.t.Helper()
	if !n.running() {
		n.t.Fatal("stop: node not running")
	}
	if err := n.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		n.t.Errorf("SIGTERM: %v", err)
	}
	select {
	case <-n.exited:
	case <-time.After(stopTimeout):
		n.cmd.Process.Kill()
		<-n.exited
		n.t.Errorf("blobnode did not exit within %v of SIGTERM; killed", stopTimeout)
	}
	n.client.CloseIdleConnections()
	if n.waitErr != nil {
		n.t.Errorf("blobnode exit after SIGTERM: %v (want status 0)", n.waitErr)
	}
}

// kill sends SIGKILL and waits for the process to be gone.
func (n *node) kill() {
	n.t.Helper()
	if !n.running() {
		n.t.Fatal("kill: node not running")
	}
	if err := n.cmd.Process.Kill(); err != nil {
		n.t.Errorf("SIGKILL: %v", err)
	}
	select {
	case <-n.exited:
	case <-time.After(stopTimeout):
		n.t.Fatalf("blobnode still running %v after SIGKILL", stopTimeout)
	}
	n.client.CloseIdleConnections()
}

func (n *node) pid() int { return n.cmd.Process.Pid }

// fsck runs `blobnode fsck` on the (stopped) node's data directory.
func (n *node) fsck() (code int, out string) {
	n.t.Helper()
	if n.running() {
		n.t.Fatal("fsck: node is running")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, blobnodeBin, "fsck", "-data-dir", n.dir)
	cmd.Env = nodeEnv()
	b, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(b)
	case errors.As(err, &ee) && ee.Exited():
		return ee.ExitCode(), string(b)
	}
	n.t.Fatalf("run fsck: %v\n%s", err, b)
	return -1, ""
}

// requireFsckClean stops nothing: the node must already be stopped.
func (n *node) requireFsckClean() {
	n.t.Helper()
	start := time.Now()
	code, out := n.fsck()
	if code != 0 {
		n.t.Fatalf("blobnode fsck exit %d, want 0:\n%s", code, out)
	}
	n.t.Logf("fsck clean in %v: %s", time.Since(start).Round(time.Millisecond), strings.TrimSpace(out))
}

func tailFile(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// ---- HTTP helpers ----

// reply is a whole response.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// code returns the JSON error code of an error response, or "".
func (r reply) code() string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if json.Unmarshal(r.body, &e) != nil {
		return ""
	}
	return e.Error.Code
}

func (r reply) String() string {
	b := r.body
	if len(b) > 200 {
		b = b[:200]
	}
	return fmt.Sprintf("%d %q", r.status, b)
}

// blobPath is the request path of key, each '/'-separated segment escaped.
func blobPath(key string) string {
	segs := strings.Split(key, "/")
	for i, s := range segs {
		segs[i] = url.PathEscape(s)
	}
	return "/blobs/" + strings.Join(segs, "/")
}

// do sends one request with a fully buffered body (nil: none) and headers
// given as name, value pairs, and reads the whole response.
func (n *node) do(t testing.TB, method, path string, body []byte, hdr ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequest(method, n.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil && len(body) == 0 {
		req.Body, req.ContentLength = http.NoBody, 0
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := n.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// put stores body under key and requires 201; it returns the ETag.
func (n *node) put(t testing.TB, key string, body []byte, hdr ...string) string {
	t.Helper()
	r := n.do(t, http.MethodPut, blobPath(key), body, hdr...)
	if r.status != http.StatusCreated {
		t.Fatalf("PUT %q: %v, want 201", key, r)
	}
	etag := r.header.Get("ETag")
	if etag == "" {
		t.Fatalf("PUT %q: no ETag", key)
	}
	return etag
}

// getHash streams a GET of key and returns status, size and SHA-256 of the
// body; the body is never held in memory.
func (n *node) getHash(ctx context.Context, key string) (status int, size int64, sum [32]byte, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.base+blobPath(key), nil)
	if err != nil {
		return 0, 0, sum, err
	}
	resp, err := n.client.Do(req)
	if err != nil {
		return 0, 0, sum, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	size, err = io.Copy(h, resp.Body)
	if err != nil {
		return resp.StatusCode, size, sum, fmt.Errorf("GET %q: body after %d bytes: %w", key, size, err)
	}
	if resp.StatusCode == http.StatusOK && resp.ContentLength != size {
		return resp.StatusCode, size, sum, fmt.Errorf("GET %q: Content-Length %d, body %d bytes", key, resp.ContentLength, size)
	}
	copy(sum[:], h.Sum(nil))
	return resp.StatusCode, size, sum, nil
}

// requireBlob checks that key reads back with exactly size bytes hashing to
// sum.
func (n *node) requireBlob(t testing.TB, key string, size int64, sum [32]byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	status, got, gotSum, err := n.getHash(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if status != http.StatusOK || got != size || gotSum != sum {
		t.Fatalf("GET %q: status %d, %d bytes, sha256 %x; want 200, %d bytes, %x", key, status, got, gotSum[:6], size, sum[:6])
	}
}

func (n *node) requireAbsent(t testing.TB, key string) {
	t.Helper()
	r := n.do(t, http.MethodGet, blobPath(key), nil)
	if r.status != http.StatusNotFound || r.code() != "NotFound" {
		t.Fatalf("GET %q: %v, want 404 NotFound", key, r)
	}
}

// listEntry is one blob of GET /blobs.
type listEntry struct {
	Key         string `json:"key"`
	Size        int64  `json:"size"`
	ETag        string `json:"etag"`
	Version     uint64 `json:"version"`
	ContentType string `json:"content_type"`
}

type listPage struct {
	Blobs          []listEntry `json:"blobs"`
	Truncated      bool        `json:"truncated"`
	NextStartAfter string      `json:"next_start_after"`
}

func (n *node) listPage(t testing.TB, prefix, startAfter string, limit int) listPage {
	t.Helper()
	q := url.Values{}
	if prefix != "" {
		q.Set("prefix", prefix)
	}
	if startAfter != "" {
		q.Set("start-after", startAfter)
	}
	if limit > 0 {
		q.Set("limit", strconv.Itoa(limit))
	}
	r := n.do(t, http.MethodGet, "/blobs?"+q.Encode(), nil)
	if r.status != http.StatusOK {
		t.Fatalf("list %q after %q: %v", prefix, startAfter, r)
	}
	var p listPage
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("list: %v: %s", err, r.body)
	}
	return p
}

// listAll pages through every blob under prefix, limit at a time.
func (n *node) listAll(t testing.TB, prefix string, limit int) []listEntry {
	t.Helper()
	var all []listEntry
	after := ""
	for range 100000 {
		p := n.listPage(t, prefix, after, limit)
		all = append(all, p.Blobs...)
		if !p.Truncated {
			return all
		}
		if p.NextStartAfter == "" || p.NextStartAfter <= after {
			t.Fatalf("list %q: truncated page with next_start_after %q after %q", prefix, p.NextStartAfter, after)
		}
		after = p.NextStartAfter
	}
	t.Fatalf("list %q: too many pages", prefix)
	return nil
}

// volumeStatus is the volume part of GET /cluster.
type volumeStatus struct {
	TotalBytes int64 `json:"total_bytes"`
	FreeBytes  int64 `json:"free_bytes"`
	UsedBytes  int64 `json:"used_bytes"`
	// PooledBytes is the part of UsedBytes held by reservations the node
	// made ahead of time for small uploads: no blob's and no upload's.
	PooledBytes int64 `json:"pooled_bytes"`
}

// held is the space held by blobs and uploads in progress.
func (v volumeStatus) held() int64 { return v.UsedBytes - v.PooledBytes }

func (n *node) volume(t testing.TB) volumeStatus {
	t.Helper()
	var s struct {
		Volume *volumeStatus `json:"volume"`
	}
	n.status(t, &s)
	if s.Volume == nil {
		t.Fatal("GET /cluster has no volume")
	}
	return *s.Volume
}

// heldBytes is volume.used_bytes less the pooled reservations: what blobs
// and uploads in progress occupy. A pool refill runs in the background, so
// one reading may be off while it lands; compare with waitHeld.
func (n *node) heldBytes(t testing.TB) int64 { t.Helper(); return n.volume(t).held() }

// waitHeld polls /cluster until heldBytes == want.
func (n *node) waitHeld(t testing.TB, want int64, timeout time.Duration) {
	t.Helper()
	var got volumeStatus
	waitFor(t, timeout, func() bool {
		got = n.volume(t)
		return got.held() == want
	}, func() string {
		return fmt.Sprintf("volume.used_bytes %d (of which pooled %d): blobs and uploads hold %d, want %d (%+d)",
			got.UsedBytes, got.PooledBytes, got.held(), want, got.held()-want)
	})
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(t testing.TB, timeout time.Duration, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", timeout, describe())
		}
		waitTick(nil)
	}
}

// requestsDone sums blobnode_http_requests_total for the blob route and
// method, over every status code: requests the node has finished.
func (n *node) requestsDone(t testing.TB, method string) float64 {
	t.Helper()
	r := n.do(t, http.MethodGet, "/metrics", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /metrics: %v", r)
	}
	var sum float64
	sc := bufio.NewScanner(bytes.NewReader(r.body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "blobnode_http_requests_total{") ||
			!strings.Contains(line, `route="/blobs/{key:.+}"`) ||
			!strings.Contains(line, `method="`+method+`"`) {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

// ---- content ----

// genReader streams size pseudo-random bytes determined by seed (AES-CTR
// keyed by the seed: fast, also under -race); the stream does not depend on
// how it is read.
type genReader struct {
	ctr  cipher.Stream
	left int64
}

func newGen(seed uint64, size int64) *genReader {
	var key [16]byte
	binary.LittleEndian.PutUint64(key[:8], seed)
	binary.LittleEndian.PutUint64(key[8:], seed^0x9e3779b97f4a7c15)
	block, err := aes.NewCipher(key[:])
	if err != nil {
		panic(err) // a 16-byte key is always valid
	}
	return &genReader{ctr: cipher.NewCTR(block, make([]byte, aes.BlockSize)), left: size}
}

func (g *genReader) Read(p []byte) (int, error) {
	if g.left == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > g.left {
		p = p[:g.left]
	}
	clear(p)
	g.ctr.XORKeyStream(p, p)
	g.left -= int64(len(p))
	return len(p), nil
}

// payload returns size bytes determined by seed.
func payload(seed uint64, size int64) []byte {
	b := make([]byte, size)
	if _, err := io.ReadFull(newGen(seed, size), b); err != nil {
		panic(err) // the generator cannot fail
	}
	return b
}

func seedOf(s string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(s))
	return h.Sum64()
}

// allocSize is the heap space a blob of s bytes occupies with the default
// geometry: whole lpages plus the tail rounded up to spages.
func allocSize(s int64) int64 {
	return s/lpage*lpage + (s%lpage+spage-1)/spage*spage
}

func sha256Of(b []byte) [32]byte { return sha256.Sum256(b) }

// status decodes the node's GET /cluster into v (a struct of the fields
// the caller reads), failing the test on any other answer.
func (n *node) status(t testing.TB, v any) {
	t.Helper()
	r := n.do(t, http.MethodGet, "/cluster", nil)
	if r.status != http.StatusOK {
		t.Fatalf("GET /cluster: %v", r)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("GET /cluster: %v: %s", err, r.body)
	}
}

// raftState is what GET /cluster says of Raft and its log.
type raftState struct {
	State    string  `json:"state"`
	Term     *uint64 `json:"term"` // nil if absent
	Applied  uint64  `json:"applied_index"`
	Last     uint64  `json:"last_index"`
	Snapshot uint64  `json:"last_snapshot_index"`
}

func (n *node) raftState(t testing.TB) raftState {
	t.Helper()
	var s raftState
	n.status(t, &s)
	return s
}

// lastSnapshotIndex is the index of the node's newest Raft snapshot.
func (n *node) lastSnapshotIndex(t testing.TB) uint64 {
	t.Helper()
	return n.raftState(t).Snapshot
}
