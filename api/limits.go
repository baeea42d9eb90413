package api

import (
	"io"
	"net/http"
	"time"
)

// errTooManyUploads refuses a PUT when Config.MaxConcurrentUploads uploads
// are already streaming. writeError adds Retry-After to every 503.
var errTooManyUploads = &apiError{http.StatusServiceUnavailable, CodeTooManyUploads,
	"too many uploads in progress; retry later"}

// uploadLimiter bounds the uploads streaming into the store. tryAcquire
// never waits: a full limiter refuses at once, so a burst of uploads costs
// one small response each, not a parked goroutine holding a connection and
// a buffer. Safe for concurrent use.
type uploadLimiter struct {
	slots   chan struct{} // one element per upload in flight
	metrics *metrics
}

func newUploadLimiter(n int, m *metrics) *uploadLimiter {
	return &uploadLimiter{slots: make(chan struct{}, n), metrics: m}
}

// tryAcquire takes a slot, or reports false (and counts the rejection)
// when all are taken. A true result must be paired with one release.
func (l *uploadLimiter) tryAcquire() bool {
	select {
	case l.slots <- struct{}{}:
		l.metrics.uploadsInFlight.Inc()
		return true
	default:
		l.metrics.uploadsRejected.Inc()
		return false
	}
}

func (l *uploadLimiter) release() {
	<-l.slots
	l.metrics.uploadsInFlight.Dec()
}

// requestBody is a request body as the handlers see it. Each Read arms the
// connection's read deadline timeout ahead, so a client that stops sending
// mid-body is cut after timeout of silence while a slow but steady upload
// never is; reaching the end clears the deadline, because from then on the
// server's own background read watches the idle connection and a deadline
// firing there would cancel the request's context. It remembers whether the
// body was read to its end, which decides whether the connection can carry
// another request. Read by one goroutine at a time (the handler's).
type requestBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	timeout time.Duration // 0: no deadline
	eof     bool
}

func (b *requestBody) Read(p []byte) (int, error) {
	if b.timeout > 0 {
		// Not supported only by test recorders; then there is no bound.
		_ = b.rc.SetReadDeadline(time.Now().Add(b.timeout))
	}
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
		if b.timeout > 0 {
			_ = b.rc.SetReadDeadline(time.Time{})
		}
	}
	return n, err
}

// guardConnection applies the per-request connection bounds before h runs
// and returns the request h must see. A request with a body gets a read
// deadline now (so that even a body no handler reads, which the server
// drains after the response, is bounded) and a requestBody; the response
// gets a write deadline that rec re-arms on every write. After h, rec's
// armWrite must run once more, for the server's final flush of the
// response.
func (s *server) guardConnection(rec *statusRecorder, r *http.Request) *http.Request {
	rec.rc = *http.NewResponseController(rec)
	rec.writeTimeout = s.write
	rec.armWrite()
	if r.ContentLength != 0 && r.Body != nil && r.Body != http.NoBody {
		body := &requestBody{ReadCloser: r.Body, rc: &rec.rc, timeout: s.bodyRead}
		if body.timeout > 0 {
			_ = rec.rc.SetReadDeadline(time.Now().Add(body.timeout))
		}
		rec.body = body
		r2 := *r
		r2.Body = body
		r = &r2
	}
	return r
}
