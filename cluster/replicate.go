package cluster

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/hashicorp/raft"

	"github.com/blobnode/blobnode/store"
)

// Receiver is the store side of the peer data endpoint.
type Receiver interface {
	ReceiveReplica(ctx context.Context, w store.ReplicaWrite, body io.Reader) error
}

// stragglerGrace is how long Replicate keeps sending to the peers that
// have not answered once a majority holds the bytes; those it then cuts
// off catch up through repair.
const stragglerGrace = 500 * time.Millisecond

// maxManifest bounds the description that precedes a replica's bytes.
const maxManifest = 16 << 20

// Replicate implements store.Replicator: it sends the upload's bytes to
// every other voter in parallel (PUT /peer/data) and returns once a
// majority of the voters, this node included (its copy is durable
// before Replicate is called), holds them durably, with the IDs of the
// nodes that do: this node first, then the peers in the order they
// acknowledged.
func (c *Coordinator) Replicate(ctx context.Context, w store.ReplicaWrite, open func() io.Reader) ([]string, error) {
	f := c.node.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, err
	}
	var peers []raft.Server
	voters := 0
	for _, s := range f.Configuration().Servers {
		if s.Suffrage != raft.Voter {
			continue
		}
		voters++
		if s.ID != c.node.ID() {
			peers = append(peers, s)
		}
	}
	need := voters/2 + 1 - 1 // this node holds one copy
	holders := []string{string(c.node.ID())}
	if need <= 0 {
		return holders, nil
	}
	manifest, err := json.Marshal(w)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	type result struct {
		id  raft.ServerID
		err error
	}
	results := make(chan result, len(peers))
	for _, p := range peers {
		go func() {
			err := c.sendReplica(rctx, p.Address, manifest, open())
			if err != nil {
				err = fmt.Errorf("%s: %w", p.ID, err)
			}
			results <- result{p.ID, err}
		}()
	}
	acked, failed := 0, 0
	var errs []error
	var grace <-chan time.Time
	for acked+failed < len(peers) {
		select {
		case r := <-results:
			if r.err == nil {
				acked++
				holders = append(holders, string(r.id))
			} else {
				failed++
				errs = append(errs, r.err)
			}
		case <-grace:
			return holders, nil // a majority holds the bytes; the rest are cut off
		}
		if acked >= need && grace == nil {
			t := time.NewTimer(stragglerGrace)
			defer t.Stop()
			grace = t.C
		}
		if len(peers)-failed < need {
			return nil, fmt.Errorf("cluster: only %d of the %d replicas needed hold the bytes: %w", acked+1, need+1, errors.Join(errs...))
		}
	}
	if len(errs) > 0 {
		c.log.Warn("a replica did not take an upload's bytes; repair will copy them", "err", errors.Join(errs...))
	}
	return holders, nil
}

// sendReplica sends one peer the manifest and the bytes.
func (c *Coordinator) sendReplica(ctx context.Context, addr raft.ServerAddress, manifest []byte, data io.Reader) error {
	head := binary.BigEndian.AppendUint32(nil, uint32(len(manifest)))
	body := io.MultiReader(bytes.NewReader(head), bytes.NewReader(manifest), data)
	resp, err := c.send(ctx, addr, http.MethodPut, "/peer/data", body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var w wireError
		_ = json.NewDecoder(io.LimitReader(resp.Body, maxPeerAnswer)).Decode(&w)
		return fmt.Errorf("answered %d %s: %s", resp.StatusCode, w.Code, w.Message)
	}
	return nil
}

// serveData is PUT /peer/data: a big-endian u32 length, that many bytes of
// JSON store.ReplicaWrite, then the upload's bytes.
func (c *Coordinator) serveData(rcv Receiver) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var n [4]byte
		if _, err := io.ReadFull(r.Body, n[:]); err != nil {
			writeJSON(w, http.StatusBadRequest, wireError{Code: codeBadCommand, Message: err.Error()})
			return
		}
		size := binary.BigEndian.Uint32(n[:])
		if size > maxManifest {
			writeJSON(w, http.StatusBadRequest, wireError{Code: codeBadCommand, Message: fmt.Sprintf("manifest of %d bytes", size)})
			return
		}
		var m store.ReplicaWrite
		if err := json.NewDecoder(io.LimitReader(r.Body, int64(size))).Decode(&m); err != nil {
			writeJSON(w, http.StatusBadRequest, wireError{Code: codeBadCommand, Message: err.Error()})
			return
		}
		err := rcv.ReceiveReplica(r.Context(), m, r.Body)
		switch {
		case err == nil:
			writeJSON(w, http.StatusOK, struct{}{})
		case errors.Is(err, store.ErrGone):
			writeJSON(w, http.StatusGone, wireError{Code: "Gone", Message: err.Error()})
		case errors.Is(err, store.ErrInvalidArgument), errors.Is(err, store.ErrBadDigest), errors.Is(err, store.ErrIncompleteBody):
			writeJSON(w, http.StatusBadRequest, wireError{Code: codeBadCommand, Message: err.Error()})
		default:
			c.log.Warn("receiving a replica failed", "err", err)
			writeJSON(w, http.StatusServiceUnavailable, wireError{Code: codeUnavailable, Message: err.Error()})
		}
	}
}
