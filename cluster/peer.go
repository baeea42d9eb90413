package cluster

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strconv"

	"github.com/blobnode/blobnode/raftfsm"
)

// maxCommandBytes bounds a forwarded command (an inline blob's bytes and
// its checksums fit well within it).
const maxCommandBytes = raftfsm.MaxInlineSize + 1<<20

// PeerHandler serves the peer API under /peer/: every request is
// authenticated (see the package documentation) before anything else.
//
//	POST /peer/propose     body: an encoded raftfsm.Command; the leader applies it: 200 wireResult
//	GET  /peer/readindex   the leader's confirmed read index: 200 {"index": N}
//	PUT  /peer/data        an upload's bytes for this node's copy (see serveData): 200 once durable, 410 Gone
//	                       if the reservations are no longer live here
//	GET  /peer/chunk       a blob's chunk, verified, for a replica that repairs (see serveChunk)
//	POST /peer/join        JoinRequest: the leader adds the node as a voter (409 JoinRefused: why not)
//	POST /peer/remove      {"id": ...}: the leader removes the node (404: no such member)
//
// Failures answer a JSON wireError: 401 Unauthorized, 421 NotLeader
// (nothing was proposed), 503 ReadOnly or Unavailable, 400 BadCommand,
// 500 Unknown (the outcome is not known).
func (c *Coordinator) PeerHandler(st interface {
	Receiver
	ChunkReader
}) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /peer/propose", c.servePropose)
	mux.HandleFunc("GET /peer/readindex", c.serveReadIndex)
	mux.HandleFunc("PUT /peer/data", c.serveData(st))
	mux.HandleFunc("GET /peer/chunk", serveChunk(st))
	mux.HandleFunc("POST /peer/join", c.serveJoin)
	mux.HandleFunc("POST /peer/remove", c.serveRemove)
	return authenticated(c.sign, c.log, mux)
}

// authenticated serves a peer request with next only once it is proved to
// come from a holder of the cluster secret: its signature verifies and,
// for a POST (a command, a join, a removal), the body is the one signed.
// next reads a POST's body from memory (verifiedBody).
func authenticated(sign signer, log *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		err := sign.verify(r)
		if err == nil && r.Method == http.MethodPost {
			var body []byte
			if body, err = readSignedBody(r, maxCommandBytes); err == nil {
				r.Body = verifiedBody{bytes.NewReader(body), body}
			}
		}
		if err != nil {
			sign.refuse(w, r, log, err)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// refuse answers a peer request that failed authentication (or whose
// body could not be read to check it), logs it and counts an
// authentication failure. The connection is closed: the rest of the body
// is not read.
func (s signer) refuse(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	log.Warn("peer request refused", "remote", r.RemoteAddr, "path", r.URL.Path, "err", err)
	w.Header().Set("Connection", "close")
	switch {
	case errors.Is(err, ErrPeerAuth):
		s.refused.Add(1)
		writeJSON(w, http.StatusUnauthorized, wireError{Code: codeAuth, Message: err.Error()})
	case errors.Is(err, errBodyTooLarge):
		writeJSON(w, http.StatusRequestEntityTooLarge, wireError{Code: codeBadCommand, Message: err.Error()})
	default: // the body could not be read
		writeJSON(w, http.StatusBadRequest, wireError{Code: codeBadCommand, Message: err.Error()})
	}
}

// verifiedBody is a POST's body as authenticated read and checked it:
// handlers that need the bytes whole take them (bodyBytes) instead of
// reading a copy.
type verifiedBody struct {
	*bytes.Reader
	b []byte
}

func (verifiedBody) Close() error { return nil }

// bodyBytes returns the whole body authenticated verified; without one
// (a handler served outside authenticated), nil.
func bodyBytes(r *http.Request) []byte {
	if v, ok := r.Body.(verifiedBody); ok {
		return v.b
	}
	return nil
}

func (c *Coordinator) servePropose(w http.ResponseWriter, r *http.Request) {
	if !c.node.IsLeader() {
		writeJSON(w, http.StatusMisdirectedRequest, wireError{Code: codeNotLeader, Message: "not the leader"})
		return
	}
	cmd, err := raftfsm.DecodeCommand(bodyBytes(r))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, wireError{Code: codeBadCommand, Message: err.Error()})
		return
	}
	res, err := c.node.Propose(r.Context(), &cmd)
	if err != nil {
		c.writeFailure(w, err)
		return
	}
	wr, err := encodeResult(res)
	if err != nil {
		c.writeFailure(w, err)
		return
	}
	writeJSON(w, http.StatusOK, wr)
	if cmd.Kind != raftfsm.KindNoop {
		// The follower that forwarded it may wait to apply it (an upload's
		// Reserve), and so may reads of it there.
		c.node.Announce(res.Index)
	}
}

func (c *Coordinator) serveReadIndex(w http.ResponseWriter, r *http.Request) {
	idx, err := c.node.ReadIndex(r.Context())
	if err != nil {
		c.writeFailure(w, err)
		return
	}
	writeJSON(w, http.StatusOK, struct {
		Index uint64 `json:"index"`
	}{idx})
}

func (c *Coordinator) writeFailure(w http.ResponseWriter, err error) {
	status, we := errorOf(err)
	if status == http.StatusInternalServerError && !errors.Is(err, raftfsm.ErrNotLeader) {
		c.log.Warn("peer request failed", "err", err)
	}
	writeJSON(w, status, we)
}

// writeJSON answers v with a Content-Length, so the caller has the whole
// answer, to its end, as soon as it is flushed (servePropose goes on
// working after answering, and a body not read to its end would cost the
// caller its connection).
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	b = append(b, '\n')
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
