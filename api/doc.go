// Package api is blobnode's public HTTP API: it decodes a request, calls one
// method of the Blobs interface it declares, and encodes the answer. It holds
// no storage logic and no package-level state.
//
// # Routes
//
//	PUT    /blobs/{key}   upload (streamed to Blobs.Put)        201, ETag
//	GET    /blobs/{key}   read, conditional, single byte range  200, 206, 304
//	HEAD   /blobs/{key}   as GET without the body               200, 304
//	DELETE /blobs/{key}   remove, If-Match honoured             204
//	GET    /blobs         list: ?prefix=&start-after=&limit=    200
//	GET    /healthz       "ok" while serving
//	GET    /readyz        "ok" when Config.Ready returns nil, else 503
//	GET    /metrics       Prometheus exposition of Config.Gatherer
//	GET    /cluster       JSON of Config.Status()
//	DELETE /cluster/nodes/{id}  Config.RemoveNode (admin)       204, 404
//	*      /peer/...      Config.Peer: the peer API of a group (package cluster),
//	                      authenticated by the cluster secret, not by tokens
//
// # Authentication
//
// With Config.Auth set, every request except /healthz and /readyz must
// carry "Authorization: Bearer <token>"; the Authenticator maps the token
// to a scope: read (GET and HEAD of blobs, listing), write (read plus PUT,
// DELETE and any other method on the blob routes) or admin (everything).
// /metrics and /cluster need admin when Config.ProtectMetrics is set and are
// open otherwise. The check runs on the headers alone, before the route's
// handler, so a refused request reads no body and changes nothing:
//
//	401 Unauthorized  no, malformed or unknown token; WWW-Authenticate: Bearer
//	403 Forbidden     a valid token whose scope is too small
//	                  (WWW-Authenticate carries error="insufficient_scope")
//
// A refused request that carries a body is answered with Connection: close
// rather than draining the body. The token file format, parsed by
// ParseTokenFile into Tokens (which keeps only SHA-256 digests of the
// tokens), is documented in tokenfile.go.
//
// # Keys
//
// A key is taken from the escaped request path and percent-decoded exactly
// once, so "a%2Fb" is the key "a/b" and "%00" is refused. ValidateKey states
// the rules; a key that breaks one is 400 InvalidKey, naming the rule.
//
// # Uploads
//
// A PUT needs a Content-Length or a chunked body (else 411). A body longer
// than Config.MaxBlobSize is 413: at once when Content-Length says so, or
// when a chunked body crosses the limit (the store's reader then fails with
// an error wrapping store.ErrTooLarge). A body that ends early or a client
// that disconnects makes the reader fail with store.ErrIncompleteBody: 400
// IncompleteBody, and nothing is stored. X-Checksum-CRC32C carries the
// client's Castagnoli CRC of the body as 8 hex digits; a malformed value is
// 400 InvalidArgument, a mismatch (found by the store) 400 BadDigest.
// "If-None-Match: *" creates only; "If-Match" takes one entity-tag. Other
// forms of those headers are 400 InvalidArgument, since the store could not
// honour them, and so is a Content-Type over store.MaxContentTypeLen bytes
// (refused before the body is read).
//
// # Reads
//
// GET and HEAD carry ETag and Last-Modified, and, for a blob streamed to a
// group, Blobnode-Replicas: the comma-separated IDs of the nodes that held
// its bytes durably when it was committed (every node holds them once
// repair has run; this says which majority the write waited for).
//
// Conditional headers follow RFC 9110 section 13.2.2 (If-Match,
// If-Unmodified-Since, If-None-Match, If-Modified-Since), then If-Range.
// One byte range is supported: "bytes=a-b", "bytes=a-" and "bytes=-n"
// (the unit in any case, spaces and tabs around the range and empty list
// members ignored, so "bytes= 0-1," is one range); it is answered 206 with
// Content-Range. Everything else follows RFC 9110 section 14.2 and nginx:
//
//   - A value that does not begin with "bytes=" is ignored: 200 with the
//     whole blob. That covers another unit ("items=0-5", which RFC 9110
//     says MUST be ignored) and a value with no unit at all ("0-5").
//   - "bytes=" followed by anything but a list of well-formed ranges
//     ("bytes=abc", "bytes=", "bytes=-", "bytes=5", "bytes=5-2", whose
//     last position is before its first) is 416 RangeNotSatisfiable with
//     "Content-Range: bytes */size", as nginx answers; so is a well-formed
//     range that selects no byte of the blob ("bytes=10-" of a 10-byte
//     blob, "bytes=-0", any range of an empty blob).
//   - More than one range ("bytes=0-1,5-6") is ignored: 200 with the whole
//     blob, whatever the ranges (multipart/byteranges is not served; RFC
//     9110 lets a server ignore Range). A malformed member still makes the
//     header malformed: "bytes=0-1,abc" is 416.
//   - More than one Range header is ignored the same way: 200.
//
// If-Range is evaluated first: when it does not hold, Range is ignored
// whatever its value. HEAD ignores Range (RFC 9110 defines ranges for GET
// only). Conditional headers are evaluated before all of this, so a 304 or
// 412 wins over a malformed Range.
//
// If the store fails after the first body byte was sent, the handler aborts
// the connection (http.ErrAbortHandler): the client sees a truncated body,
// never a complete-looking response with wrong bytes. A failure before the
// first byte is an ordinary error response. The status line and headers
// are held until the first body byte, and the store verifies each chunk
// before any of its bytes are written, so a bad chunk that is the first
// one the response needs (the blob's first, or the first of a range) is
// always answered with an error status:
//
//	500 Corrupt    the chunk failed its checksum: this node's copy is
//	               damaged (store.ErrCorruptData)
//	500 ReadError  the node's disk failed to read the chunk (an I/O error
//	               such as EIO; store.ErrReadFailed); nothing was lost and
//	               a later read may succeed
//
// A later bad chunk cuts the response after the good chunks before it.
// Either way the store has counted the chunk (blobnode_chunks_corrupt_total
// or blobnode_chunk_read_errors_total, exported by cmd/blobnode) and logged
// it, once, at Error with key, version, chunk and device offset; the
// handler adds no Error line for it (only a Debug one), so one bad chunk
// read is one Error line.
//
// Reads are linearizable by default; "?consistency=stale" asks for a local
// read (store.ReadOptions.Stale); "?consistency=linearizable" names the
// default; any other value is 400 InvalidArgument.
//
// # Errors
//
// Every error is JSON: {"error":{"code":"NotFound","message":"..."}}.
//
//	400 InvalidKey, BadDigest, IncompleteBody, InvalidArgument
//	401 Unauthorized         403 Forbidden
//	404 NotFound             405 MethodNotAllowed (with Allow)
//	411 LengthRequired       412 PreconditionFailed
//	413 TooLarge             416 RangeNotSatisfiable (see Reads)
//	500 Internal, Corrupt, ReadError (a chunk of the blob failed its
//	    checksum / could not be read from disk: see Reads)
//	503 Unavailable, TooManyUploads (Retry-After: 1): nothing was done
//	503 OutcomeUnknown (Retry-After: 1): a PUT or DELETE reached a leader
//	    that was lost before the write was known to commit, and retries
//	    within the write timeout did not settle it: it may yet take effect
//	    (read the key before retrying a conditional PUT or a DELETE)
//	507 NoSpace
//	507 ReadOnly (disk full) / 503 ReadOnly (disk failing), Retry-After: 1:
//	    writes refused while a disk under the Raft log or catalog cannot be
//	    written; the message names which and the error, without paths
//
// Messages of store errors are the store sentinel's text only; the detail is
// logged (5xx at Error, 503 and 507 at Warn; a failed chunk by the store,
// see Reads). A request whose client went
// away before the store answered is recorded as 499 ClientClosedRequest in
// metrics and logs; no client sees it.
//
// # Metrics
//
// blobnode_http_requests_total{route,method,code},
// blobnode_http_request_duration_seconds{route,method},
// blobnode_http_request_bytes_total{route} (PUT body bytes received),
// blobnode_http_response_bytes_total{route} and
// blobnode_http_auth_failures_total{route,reason} (reason: missing,
// malformed, invalid, scope). route is the mux path template
// ("/blobs/{key:.+}", or "unmatched"), never the raw path. A response
// aborted mid-body is counted with code "aborted". The counts of failed
// chunks (blobnode_chunks_corrupt_total, blobnode_chunk_read_errors_total)
// are the store's, not this package's.
//
// # Limits
//
// At most Config.MaxConcurrentUploads PUTs stream at once; one more is 503
// TooManyUploads with Retry-After before its body is read
// (blobnode_http_uploads_in_flight, blobnode_http_uploads_rejected_total).
// Each read of a request body arms the connection's read deadline
// Config.BodyReadTimeout ahead and each response write its write deadline
// Config.WriteTimeout ahead: a silent client is cut, a slow one that makes
// progress never is. A response to a request whose body was not read to
// its end closes the connection instead of letting the server drain it. A
// listing limit above Config.MaxListLimit is 400, not clamped; a query
// string that does not parse is 400. The header size limit, the header
// timeout and the idle timeout belong to the http.Server serving this
// handler.
package api
