package api

import (
	"fmt"
	"net/http"
	"strings"
)

// Scope is what a bearer token allows. Scopes are ordered: each allows
// everything the ones before it do.
type Scope uint8

const (
	// scopeOpen is the requirement of a route anyone may call (/healthz,
	// /readyz); no token has it.
	scopeOpen Scope = iota
	// ScopeRead: GET and HEAD of blobs, and listing.
	ScopeRead
	// ScopeWrite: ScopeRead plus PUT and DELETE.
	ScopeWrite
	// ScopeAdmin: everything, including /metrics and /cluster when
	// Config.ProtectMetrics is set.
	ScopeAdmin
)

// ParseScope parses "read", "write" or "admin".
func ParseScope(s string) (Scope, error) {
	switch s {
	case "read":
		return ScopeRead, nil
	case "write":
		return ScopeWrite, nil
	case "admin":
		return ScopeAdmin, nil
	}
	return 0, fmt.Errorf("unknown scope %q", s)
}

func (s Scope) String() string {
	switch s {
	case scopeOpen:
		return "none"
	case ScopeRead:
		return "read"
	case ScopeWrite:
		return "write"
	case ScopeAdmin:
		return "admin"
	}
	return fmt.Sprintf("Scope(%d)", uint8(s))
}

// Authenticator maps a bearer token to its scope. Implementations must be
// safe for concurrent use, must not take time that depends on how close
// token is to a valid one (no byte-by-byte comparison with a secret), and
// must not log or keep the token. *Tokens is the implementation the daemon
// uses.
type Authenticator interface {
	// Scope returns the scope of token, or false if token is not valid.
	Scope(token string) (Scope, bool)
}

// Error codes of refused requests.
const (
	CodeUnauthorized = "Unauthorized" // 401: no valid token
	CodeForbidden    = "Forbidden"    // 403: a valid token without the scope
)

// Reasons of the auth failure metric's reason label.
const (
	authMissing   = "missing"   // no Authorization header
	authMalformed = "malformed" // not exactly one "Bearer <token>"
	authInvalid   = "invalid"   // a well-formed token that is not known
	authScope     = "scope"     // a known token with too small a scope
)

// realm names the protection space in WWW-Authenticate challenges.
const realm = `Bearer realm="blobnode"`

// access says which scope a method on a route needs.
type access func(method string) Scope

// dataAccess guards the blob routes: GET and HEAD read; every other method
// (PUT, DELETE, and those answered 405) needs write, so a read token cannot
// even learn how a write would be answered.
func dataAccess(method string) Scope {
	if method == http.MethodGet || method == http.MethodHead {
		return ScopeRead
	}
	return ScopeWrite
}

func openAccess(string) Scope  { return scopeOpen }
func adminAccess(string) Scope { return ScopeAdmin }

// authorize checks r against need before anything else looks at r (in
// particular before its body is read) and answers it when it is refused:
// 401 with a Bearer challenge for a missing, malformed or unknown token,
// 403 for a known token whose scope is too small. It reports whether the
// request may go on. Without an Authenticator everything is allowed.
func (s *server) authorize(w http.ResponseWriter, r *http.Request, route string, need Scope) bool {
	if s.auth == nil || need == scopeOpen {
		return true
	}
	token, reason := bearerToken(r.Header)
	var have Scope
	if reason == "" {
		var ok bool
		if have, ok = s.auth.Scope(token); !ok {
			reason = authInvalid
		} else if have < need {
			reason = authScope
		}
	}
	if reason == "" {
		return true
	}
	s.metrics.authFailures.WithLabelValues(route, reason).Inc()
	s.log.Info("request refused: authentication", "method", r.Method, "path", r.URL.EscapedPath(),
		"route", route, "reason", reason, "need", need.String(), "remote", r.RemoteAddr)
	if r.ContentLength != 0 {
		// Do not read (or drain) a body that will never be used: a
		// refused upload costs the server one header, not its payload.
		w.Header().Set("Connection", "close")
	}
	switch reason {
	case authScope:
		w.Header().Set("WWW-Authenticate", fmt.Sprintf(`%s, error="insufficient_scope", scope="%s"`, realm, need))
		writeJSON(w, http.StatusForbidden, errorBody{errorDetail{Code: CodeForbidden,
			Message: fmt.Sprintf("this token's scope is %s; %s %s needs %s", have, r.Method, route, need)}})
	case authMissing:
		w.Header().Set("WWW-Authenticate", realm)
		writeJSON(w, http.StatusUnauthorized, errorBody{errorDetail{Code: CodeUnauthorized,
			Message: "a bearer token is required (Authorization: Bearer <token>)"}})
	default:
		w.Header().Set("WWW-Authenticate", realm+`, error="invalid_token"`)
		writeJSON(w, http.StatusUnauthorized, errorBody{errorDetail{Code: CodeUnauthorized,
			Message: "the bearer token is malformed or not valid"}})
	}
	return false
}

// bearerToken extracts the token of the one "Authorization: Bearer <token>"
// header (scheme case-insensitive, RFC 9110 section 11.1), or names why
// there is none.
func bearerToken(h http.Header) (token, reason string) {
	vs := h.Values("Authorization")
	switch {
	case len(vs) == 0:
		return "", authMissing
	case len(vs) > 1:
		return "", authMalformed
	}
	scheme, tok, ok := strings.Cut(vs[0], " ")
	tok = strings.TrimLeft(tok, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || tok == "" || strings.ContainsAny(tok, " \t") {
		return "", authMalformed
	}
	return tok, ""
}
