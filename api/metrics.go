package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics holds the collectors of one handler. Labels are bounded: route is
// a mux path template (or "unmatched"), method one of the standard methods
// (or "OTHER"), code an HTTP status (or "aborted").
type metrics struct {
	requests *prometheus.CounterVec   // route, method, code
	duration *prometheus.HistogramVec // route, method
	bytesIn  *prometheus.CounterVec   // route
	bytesOut *prometheus.CounterVec   // route
	// uploadsInFlight counts PUTs holding a slot of the upload limiter;
	// uploadsRejected counts PUTs refused because none was free.
	uploadsInFlight prometheus.Gauge
	uploadsRejected prometheus.Counter
	// authFailures counts requests refused with 401 or 403, by route and
	// reason (missing, malformed, invalid, scope).
	authFailures *prometheus.CounterVec
	// blobBytesIn is bytesIn's child for the blob route (see routeObservers).
	blobBytesIn func() prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blobnode",
			Name:      "http_requests_total",
			Help:      "HTTP requests served, by route template, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "blobnode",
			Name:      "http_request_duration_seconds",
			Help:      "Time from request arrival to the end of the response, by route template and method.",
			// 0.5 ms to about 2 minutes: from a cached HEAD to a large upload.
			Buckets: prometheus.ExponentialBuckets(0.0005, 4, 10),
		}, []string{"route", "method"}),
		bytesIn: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blobnode",
			Name:      "http_request_bytes_total",
			Help:      "Bytes of blob bodies received in PUT requests (including bodies later refused).",
		}, []string{"route"}),
		bytesOut: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blobnode",
			Name:      "http_response_bytes_total",
			Help:      "Bytes of response bodies written, by route template.",
		}, []string{"route"}),
		uploadsInFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "blobnode",
			Name:      "http_uploads_in_flight",
			Help:      "PUT requests streaming into the store now (bounded by -max-concurrent-uploads).",
		}),
		uploadsRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "blobnode",
			Name:      "http_uploads_rejected_total",
			Help:      "PUT requests refused with 503 because -max-concurrent-uploads uploads were in flight.",
		}),
		authFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "blobnode",
			Name:      "http_auth_failures_total",
			Help:      "Requests refused by authentication (401) or authorization (403), by route template and reason.",
		}, []string{"route", "reason"}),
	}
	if reg != nil {
		m.requests = register(reg, m.requests)
		m.duration = register(reg, m.duration)
		m.bytesIn = register(reg, m.bytesIn)
		m.bytesOut = register(reg, m.bytesOut)
		m.uploadsInFlight = register(reg, m.uploadsInFlight)
		m.uploadsRejected = register(reg, m.uploadsRejected)
		m.authFailures = register(reg, m.authFailures)
	}
	m.blobBytesIn = sync.OnceValue(func() prometheus.Counter { return m.bytesIn.WithLabelValues(routeBlob) })
	return m
}

// register registers c on reg, or returns the identical collector already
// registered there (a second handler on the same registry shares counters).
// Any other failure is a wiring bug and panics, as prometheus.MustRegister
// does.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(fmt.Sprintf("api: register metrics: %v", err))
}

// methodLabel bounds the method label to the standard methods.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPut, http.MethodPost, http.MethodDelete,
		http.MethodOptions, http.MethodPatch, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "OTHER"
}

// instrument wraps h, the handler of one route, with the request metrics and
// the Debug request log line. A panic from h (http.ErrAbortHandler after a
// failed body write) is counted with code "aborted" and re-raised so the
// server drops the connection.
func (s *server) instrument(route string, h http.Handler) http.Handler {
	obs := newRouteObservers(s.metrics, route)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		method := methodLabel(r.Method)
		r = s.guardConnection(rec, r)
		defer func() {
			rec.armWrite() // for the server's final flush of the response
			p := recover()
			status := rec.statusCode()
			if p != nil {
				status = statusAborted
			}
			elapsed := time.Since(start)
			obs.requests(method, status).Inc()
			obs.duration(method).Observe(elapsed.Seconds())
			obs.bytesOut().Add(float64(rec.written))
			if s.log.Enabled(r.Context(), slog.LevelDebug) { // spare the arguments' cost on every request
				s.log.Debug("http request", "method", r.Method, "path", r.URL.EscapedPath(), "route", route,
					"code", codeLabel(status), "bytes_out", rec.written, "duration", elapsed, "remote", r.RemoteAddr)
			}
			if p != nil {
				panic(p)
			}
		}()
		h.ServeHTTP(rec, r)
	})
}

// statusAborted stands for the code label "aborted" (see instrument).
const statusAborted = -1

func codeLabel(status int) string {
	if status == statusAborted {
		return "aborted"
	}
	return strconv.Itoa(status)
}

// routeObservers are one route's children of the request metrics, each
// looked up in its vector once and kept: WithLabelValues hashes its labels
// and takes the vector's lock on every call, three times a request (a GET
// profile showed the lookups at 4% of the node's CPU), and the code label
// cost a string per request. Children are made on first use, as
// WithLabelValues makes them, so /metrics shows the same series.
type routeObservers struct {
	m        *metrics
	route    string
	byCode   sync.Map // methodStatus -> prometheus.Counter
	byMethod sync.Map // method label -> prometheus.Observer
	bytesOut func() prometheus.Counter
}

type methodStatus struct {
	method string
	status int
}

func newRouteObservers(m *metrics, route string) *routeObservers {
	return &routeObservers{m: m, route: route, bytesOut: sync.OnceValue(func() prometheus.Counter {
		return m.bytesOut.WithLabelValues(route)
	})}
}

func (o *routeObservers) requests(method string, status int) prometheus.Counter {
	k := methodStatus{method, status}
	if c, ok := o.byCode.Load(k); ok {
		return c.(prometheus.Counter)
	}
	c, _ := o.byCode.LoadOrStore(k, o.m.requests.WithLabelValues(o.route, method, codeLabel(status)))
	return c.(prometheus.Counter)
}

func (o *routeObservers) duration(method string) prometheus.Observer {
	if h, ok := o.byMethod.Load(method); ok {
		return h.(prometheus.Observer)
	}
	h, _ := o.byMethod.LoadOrStore(method, o.m.duration.WithLabelValues(o.route, method))
	return h.(prometheus.Observer)
}

// statusRecorder remembers the status and counts the body bytes written
// through it. Unwrap lets http.ResponseController reach the connection.
type statusRecorder struct {
	http.ResponseWriter
	status  int
	written int64
	// rc reaches the connection (see guardConnection). Fields, not
	// closures: they are set on every request.
	rc http.ResponseController
	// writeTimeout, if not zero, is how far armWrite pushes the
	// connection's write deadline ahead; it runs before every write.
	writeTimeout time.Duration
	armed        time.Time // when armWrite last moved the deadline
	// body, if not nil, is the request body: if it has not been read to
	// its end when the response starts, the server is stopped from
	// reading it and the response closes the connection: the server would
	// otherwise read (drain) the rest of a body nobody wants, from a
	// client that may never send it, before it could read the next
	// request. No handler writes its header before it is done with the
	// body.
	body *requestBody
}

// armWrite moves the deadline only once writeTimeout/16 has passed since
// it last did, so every write still has at least 15/16 of writeTimeout: a
// small response is written three times (header, body, the server's final
// flush), and each move of a deadline is a change to a runtime timer.
func (rw *statusRecorder) armWrite() {
	if rw.writeTimeout <= 0 {
		return
	}
	now := time.Now()
	if !rw.armed.IsZero() && now.Sub(rw.armed) < rw.writeTimeout/16 {
		return
	}
	rw.armed = now
	_ = rw.rc.SetWriteDeadline(now.Add(rw.writeTimeout))
}

func (rw *statusRecorder) WriteHeader(status int) {
	if rw.status == 0 && status >= 200 {
		rw.status = status
		if rw.body != nil && !rw.body.eof {
			rw.Header().Set("Connection", "close")
			// An expired read deadline makes the server's drain of the
			// body (in finishing the response) fail at once; the response
			// itself is written, then the connection closed.
			_ = rw.rc.SetReadDeadline(time.Now())
		}
	}
	rw.armWrite()
	rw.ResponseWriter.WriteHeader(status)
}

func (rw *statusRecorder) Write(p []byte) (int, error) {
	if rw.status == 0 {
		rw.WriteHeader(http.StatusOK)
	} else {
		rw.armWrite()
	}
	n, err := rw.ResponseWriter.Write(p)
	rw.written += int64(n)
	return n, err
}

func (rw *statusRecorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

// Flush passes through so streaming responses (promhttp) are not buffered.
func (rw *statusRecorder) Flush() {
	rw.armWrite()
	if f, ok := rw.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (rw *statusRecorder) statusCode() int {
	if rw.status == 0 {
		return http.StatusOK
	}
	return rw.status
}
