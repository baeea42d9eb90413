package api

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/blobnode/blobnode/store"
)

// Blobs is the store as the API uses it. Implementations must be safe for
// concurrent use; every call is bound to the request's context, which is
// cancelled when the client goes away.
type Blobs interface {
	// Put stores req.Body under req.Key, reading the body once, streaming.
	// It returns only after the blob is durable and visible. A read error
	// from the body is returned wrapped (the API's body reader already
	// wraps store.ErrTooLarge or store.ErrIncompleteBody); nothing is stored
	// in that case.
	Put(ctx context.Context, req store.PutRequest) (store.BlobInfo, error)
	// Get opens the current version of key. The caller closes the Object.
	Get(ctx context.Context, key string, opts store.ReadOptions) (store.Object, error)
	// Delete removes key, honouring cond.IfMatch.
	Delete(ctx context.Context, key string, cond store.Condition) error
	// List returns at most req.Limit blobs in key order.
	List(ctx context.Context, req store.ListRequest) (store.ListPage, error)
}

// Defaults for the zero values of Config.
const (
	DefaultMaxBlobSize          = 5 << 30 // 5 GiB
	DefaultMaxListLimit         = 1000
	DefaultMaxConcurrentUploads = 64
)

// Config tunes NewHandler. The zero value is usable.
type Config struct {
	// MaxBlobSize bounds a PUT body, in bytes (<= 0: DefaultMaxBlobSize).
	MaxBlobSize int64
	// MaxListLimit is both the default and the largest limit of a listing
	// (<= 0: DefaultMaxListLimit). A larger ?limit= is 400, not clamped.
	MaxListLimit int
	// MaxConcurrentUploads bounds the PUTs streaming into the store at
	// once (<= 0: DefaultMaxConcurrentUploads). One more is refused with
	// 503 TooManyUploads and Retry-After before its body is read.
	MaxConcurrentUploads int
	// BodyReadTimeout bounds each read of a PUT body: a client that sends
	// nothing for this long has its upload failed (400 IncompleteBody, the
	// connection closed, nothing stored). Every read that returns extends
	// the deadline, so it never caps the length of an upload that makes
	// progress. 0: no per-read bound.
	BodyReadTimeout time.Duration
	// WriteTimeout bounds each write of a response the same way (a reader
	// that takes nothing for this long has its response aborted); it is
	// re-armed as the response is written (at most once per 1/16 of it,
	// so a write blocked for 15/16 of it may already be cut), so a long
	// download that makes progress is never cut. 0: no bound.
	WriteTimeout time.Duration
	// Logger receives one Debug line per request and the Warn/Error lines
	// of failures (nil: discard).
	Logger *slog.Logger
	// Registerer receives the HTTP metrics (nil: the metrics are kept but
	// not registered).
	Registerer prometheus.Registerer
	// Gatherer is served at GET /metrics. nil: Registerer, if it is also a
	// Gatherer (a *prometheus.Registry is); otherwise /metrics is 404.
	Gatherer prometheus.Gatherer
	// Ready backs /readyz: nil error means ready (nil func: always ready).
	Ready func() error
	// Status backs GET /cluster; its result is encoded as JSON (nil: 404).
	Status func() any
	// Auth checks the bearer token of every request except /healthz and
	// /readyz (nil: no authentication; every request is allowed).
	Auth Authenticator
	// ProtectMetrics makes /metrics and /cluster need an admin token
	// (only with Auth; without it they are open).
	ProtectMetrics bool
	// RemoveNode backs DELETE /cluster/nodes/{id} (admin scope when tokens
	// are on): found false answers 404 (nil: the route is 404).
	RemoveNode func(ctx context.Context, id string) (found bool, err error)
	// Peer serves the peer API under /peer/ (nil: 404). It authenticates
	// its requests itself, with the cluster secret; client tokens neither
	// grant nor are needed for it.
	Peer http.Handler
}

// Route templates; they are also the values of the metrics' route label.
const (
	routeBlob     = "/blobs/{key:.+}"
	routeEmptyKey = "/blobs/"
	routeList     = "/blobs"
	routeHealth   = "/healthz"
	routeReady    = "/readyz"
	routeMetrics  = "/metrics"
	routeCluster  = "/cluster"
	routePeer     = "/peer/"
	routeNode     = "/cluster/nodes/{id}"
	routeNone     = "unmatched"
)

// server holds one handler's dependencies; it has no mutable state of its
// own (the collectors are safe for concurrent use).
type server struct {
	blobs    Blobs
	maxSize  int64
	maxList  int
	uploads  *uploadLimiter
	bodyRead time.Duration // per-read deadline of PUT bodies; 0: none
	write    time.Duration // per-write deadline of responses; 0: none
	log      *slog.Logger
	metrics  *metrics
	ready    func() error
	status   func() any
	gatherer prometheus.Gatherer
	auth     Authenticator // nil: every request is allowed
}

// NewHandler returns the public HTTP API over b. It panics if cfg.Registerer
// already holds different collectors under the metric names this package
// uses (a wiring bug, as with prometheus.MustRegister); a second handler on
// the same registry shares the first one's collectors.
func NewHandler(b Blobs, cfg Config) http.Handler {
	s := &server{
		blobs:    b,
		maxSize:  cfg.MaxBlobSize,
		maxList:  cfg.MaxListLimit,
		bodyRead: max(cfg.BodyReadTimeout, 0),
		write:    max(cfg.WriteTimeout, 0),
		log:      cfg.Logger,
		metrics:  newMetrics(cfg.Registerer),
		ready:    cfg.Ready,
		status:   cfg.Status,
		gatherer: cfg.Gatherer,
		auth:     cfg.Auth,
	}
	if s.maxSize <= 0 {
		s.maxSize = DefaultMaxBlobSize
	}
	if s.maxList <= 0 {
		s.maxList = DefaultMaxListLimit
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	maxUploads := cfg.MaxConcurrentUploads
	if maxUploads <= 0 {
		maxUploads = DefaultMaxConcurrentUploads
	}
	s.uploads = newUploadLimiter(maxUploads, s.metrics)
	if s.gatherer == nil {
		s.gatherer, _ = cfg.Registerer.(prometheus.Gatherer)
	}

	r := mux.NewRouter()
	// Keys come from the escaped path, unescaped once by blobKey, so that
	// %2F is part of a key and "a//b" or "." segments reach ValidateKey
	// instead of being cleaned or redirected by the router.
	r.UseEncodedPath()
	r.SkipClean(true)
	statusAccess := access(openAccess)
	if cfg.ProtectMetrics {
		statusAccess = adminAccess
	}
	s.route(r, routeBlob, dataAccess, []methodHandler{
		{http.MethodGet, s.getBlob},
		{http.MethodHead, s.getBlob},
		{http.MethodPut, s.putBlob},
		{http.MethodDelete, s.deleteBlob},
	})
	s.route(r, routeEmptyKey, dataAccess, nil) // every method: InvalidKey (empty key)
	s.route(r, routeList, dataAccess, []methodHandler{
		{http.MethodGet, s.listBlobs},
		{http.MethodHead, s.listBlobs},
	})
	s.route(r, routeHealth, openAccess, []methodHandler{
		{http.MethodGet, s.healthz},
		{http.MethodHead, s.healthz},
	})
	s.route(r, routeReady, openAccess, []methodHandler{
		{http.MethodGet, s.readyz},
		{http.MethodHead, s.readyz},
	})
	if s.gatherer != nil {
		metricsHandler := promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{
			ErrorHandling: promhttp.ContinueOnError,
		})
		s.route(r, routeMetrics, statusAccess, []methodHandler{
			{http.MethodGet, metricsHandler.ServeHTTP},
			{http.MethodHead, metricsHandler.ServeHTTP},
		})
	}
	s.route(r, routeCluster, statusAccess, []methodHandler{
		{http.MethodGet, s.cluster},
		{http.MethodHead, s.cluster},
	})
	if cfg.Peer != nil {
		r.PathPrefix(routePeer).Handler(s.instrument(routePeer, cfg.Peer))
	}
	if cfg.RemoveNode != nil {
		s.route(r, routeNode, adminAccess, []methodHandler{
			{http.MethodDelete, func(w http.ResponseWriter, req *http.Request) {
				id := mux.Vars(req)["id"]
				found, err := cfg.RemoveNode(req.Context(), id)
				switch {
				case err != nil:
					s.writeError(w, req, &apiError{http.StatusServiceUnavailable, CodeUnavailable, "remove node " + id + ": " + err.Error()})
				case !found:
					s.writeError(w, req, &apiError{http.StatusNotFound, CodeNotFound, "no node " + id + " in the group"})
				default:
					w.WriteHeader(http.StatusNoContent)
				}
			}},
		})
	}
	r.NotFoundHandler = s.instrument(routeNone, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Which routes exist is no secret, but answering strangers only
		// with 401 keeps the unauthenticated surface to one response.
		if !s.authorize(w, r, routeNone, dataAccess(r.Method)) {
			return
		}
		s.writeError(w, r, &apiError{http.StatusNotFound, CodeNotFound, "no such route"})
	}))
	return r
}

type methodHandler struct {
	method string
	handle http.HandlerFunc
}

// route registers the path template tpl for the listed methods; any other
// method is 405 with Allow. A nil list routes every method to the empty-key
// error. Method dispatch is done here rather than with mux's Methods so that
// every response, 405 included, carries the route label. Every request is
// first authorized against need(method), before its handler sees it.
func (s *server) route(r *mux.Router, tpl string, need access, methods []methodHandler) {
	allowed := make([]string, len(methods))
	for i, m := range methods {
		allowed[i] = m.method
	}
	allow := strings.Join(allowed, ", ")
	r.Path(tpl).Handler(s.instrument(tpl, http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if !s.authorize(w, req, tpl, need(req.Method)) {
			return
		}
		if methods == nil {
			s.writeError(w, req, ValidateKey(""))
			return
		}
		for _, m := range methods {
			if m.method == req.Method {
				m.handle(w, req)
				return
			}
		}
		w.Header().Set("Allow", allow)
		s.writeError(w, req, &apiError{http.StatusMethodNotAllowed, CodeMethodNotAllowed,
			"method " + req.Method + " not allowed; allowed: " + allow})
	})))
}

func (s *server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n"))
}

func (s *server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.ready != nil {
		if err := s.ready(); err != nil {
			w.Header().Set("Retry-After", "1")
			writeJSON(w, http.StatusServiceUnavailable, errorBody{errorDetail{
				Code: CodeUnavailable, Message: "not ready: " + err.Error(),
			}})
			return
		}
	}
	s.healthz(w, r)
}

func (s *server) cluster(w http.ResponseWriter, r *http.Request) {
	if s.status == nil {
		s.writeError(w, r, &apiError{http.StatusNotFound, CodeNotFound, "cluster status is not available"})
		return
	}
	var buf bytes.Buffer
	if err := json.NewEncoder(&buf).Encode(s.status()); err != nil {
		s.writeError(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = buf.WriteTo(w)
}
