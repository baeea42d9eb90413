package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"

	"github.com/hashicorp/raft"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/store"
)

// ChunkReader is the store side of the peer chunk endpoint.
type ChunkReader interface {
	ReadChunk(ctx context.Context, key string, version uint64, chunk int64) ([]byte, error)
}

// FetchChunk implements store.ChunkSource: chunk c of blob b from the
// first other member that holds it verified (GET /peer/chunk), asking the
// blob's recorded replicas first. The caller verifies what it gets.
func (c *Coordinator) FetchChunk(ctx context.Context, b catalog.Blob, chunk int64) ([]byte, error) {
	f := c.node.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	q := url.Values{"key": {b.Key}, "version": {strconv.FormatUint(b.Version, 10)}, "chunk": {strconv.FormatInt(chunk, 10)}}
	servers := slices.Clone(f.Configuration().Servers)
	slices.SortStableFunc(servers, func(x, y raft.Server) int {
		return cmp.Compare(replicaRank(b.Replicas, x.ID), replicaRank(b.Replicas, y.ID))
	})
	var errs []error
	for _, s := range servers {
		if s.ID == c.node.ID() {
			continue
		}
		data, err := c.fetchFrom(ctx, s.Address, "/peer/chunk?"+q.Encode(), b.ChunkSize)
		if err == nil {
			return data, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", s.ID, err))
	}
	return nil, fmt.Errorf("cluster: no replica served %q version %d chunk %d: %w", b.Key, b.Version, chunk, errors.Join(errs...))
}

// replicaRank orders servers for a fetch: the recorded replicas in their
// order, then everyone else.
func replicaRank(replicas []string, id raft.ServerID) int {
	if i := slices.Index(replicas, string(id)); i >= 0 {
		return i
	}
	return len(replicas)
}

func (c *Coordinator) fetchFrom(ctx context.Context, addr raft.ServerAddress, path string, limit int64) ([]byte, error) {
	resp, err := c.send(ctx, addr, http.MethodGet, path, nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("answered %d", resp.StatusCode)
	}
	return io.ReadAll(io.LimitReader(resp.Body, limit))
}

// serveChunk is GET /peer/chunk?key=K&version=V&chunk=C: the chunk's
// verified bytes, 404 if that version is not current here, 409 if this
// node's copy fails too.
func serveChunk(rd ChunkReader) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		version, err1 := strconv.ParseUint(q.Get("version"), 10, 64)
		chunk, err2 := strconv.ParseInt(q.Get("chunk"), 10, 64)
		if q.Get("key") == "" || err1 != nil || err2 != nil {
			writeJSON(w, http.StatusBadRequest, wireError{Code: codeBadCommand, Message: "key, version and chunk are required"})
			return
		}
		data, err := rd.ReadChunk(r.Context(), q.Get("key"), version, chunk)
		var ce *store.ChunkError
		switch {
		case err == nil:
			w.Header().Set("Content-Type", "application/octet-stream")
			w.Header().Set("Content-Length", strconv.Itoa(len(data)))
			w.Write(data)
		case errors.Is(err, store.ErrNotFound):
			writeJSON(w, http.StatusNotFound, wireError{Code: "NotFound", Message: err.Error()})
		case errors.As(err, &ce):
			writeJSON(w, http.StatusConflict, wireError{Code: "ChunkFailed", Message: err.Error()})
		default:
			writeJSON(w, http.StatusServiceUnavailable, wireError{Code: codeUnavailable, Message: err.Error()})
		}
	}
}
