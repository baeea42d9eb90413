package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/blobnode/blobnode/raftfsm"
	"github.com/blobnode/blobnode/volume"
)

// JoinRequest is what a node that asks to join a group says about itself.
type JoinRequest struct {
	ID       string `json:"id"`
	RaftAddr string `json:"raft_addr"`
	APIAddr  string `json:"api_addr"`
	Layout   string `json:"layout"` // volume.Placement.String() of its volume
}

// ErrJoinRefused: the group does not admit the node; nothing changed.
var ErrJoinRefused = errors.New("cluster: join refused")

// ErrNoSuchNode: DELETE /cluster/nodes/{id} named no member.
var ErrNoSuchNode = errors.New("cluster: no such node")

// membershipTimeout bounds a configuration change.
const membershipTimeout = 30 * time.Second

// admit adds the node described by req as a voter, on the leader. It
// refuses, changing nothing, a node whose volume layout differs from the
// group's, one that has Raft state of its own (it belongs to another
// group, or is a member that must rejoin as it is), and an id already
// used at another address.
func (c *Coordinator) admit(ctx context.Context, req JoinRequest) error {
	if req.ID == "" || req.RaftAddr == "" {
		return fmt.Errorf("%w: the request needs an id and a Raft address", ErrJoinRefused)
	}
	node, err := volume.ParsePlacement(req.Layout)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrJoinRefused, err)
	}
	group, ok, err := c.fsm.GroupLayout()
	if err != nil {
		return err
	}
	if ok {
		if err := raftfsm.CheckLayout(group, node); err != nil {
			return fmt.Errorf("%w: %w", ErrJoinRefused, err)
		}
	}
	f := c.node.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	for _, s := range f.Configuration().Servers {
		switch {
		case string(s.ID) == req.ID && string(s.Address) == req.RaftAddr:
			return nil // already a member: a retried join
		case string(s.ID) == req.ID:
			return fmt.Errorf("%w: node id %q is already a member, at %s", ErrJoinRefused, req.ID, s.Address)
		case string(s.Address) == req.RaftAddr:
			return fmt.Errorf("%w: Raft address %s is already member %q's", ErrJoinRefused, req.RaftAddr, s.ID)
		}
	}
	st, err := c.node.Probe(ctx, raft.ServerAddress(req.RaftAddr))
	if err != nil {
		return fmt.Errorf("%w: cannot reach the joining node's Raft port %s with the cluster secret: %w", ErrJoinRefused, req.RaftAddr, err)
	}
	if st.NodeID != req.ID {
		return fmt.Errorf("%w: %s answers as %q, not %q", ErrJoinRefused, req.RaftAddr, st.NodeID, req.ID)
	}
	if st.HasState {
		return fmt.Errorf("%w: node %q has Raft state of its own (index %d, term %d): a node that bootstrapped alone or belongs to another group cannot join; start it on an empty data directory",
			ErrJoinRefused, req.ID, st.LastIndex, st.Term)
	}
	if err := c.node.Raft().AddVoter(raft.ServerID(req.ID), raft.ServerAddress(req.RaftAddr), 0, membershipTimeout).Error(); err != nil {
		return fmt.Errorf("cluster: add voter %q: %w", req.ID, err)
	}
	c.log.Info("node joined the group", "id", req.ID, "raft", req.RaftAddr, "api", req.APIAddr)
	return nil
}

// remove takes node id out of the group's configuration, on the leader.
func (c *Coordinator) remove(id string) error {
	f := c.node.Raft().GetConfiguration()
	if err := f.Error(); err != nil {
		return err
	}
	found := false
	for _, s := range f.Configuration().Servers {
		found = found || string(s.ID) == id
	}
	if !found {
		return fmt.Errorf("%w: %q", ErrNoSuchNode, id)
	}
	if err := c.node.Raft().RemoveServer(raft.ServerID(id), 0, membershipTimeout).Error(); err != nil {
		return fmt.Errorf("cluster: remove %q: %w", id, err)
	}
	c.log.Info("node removed from the group", "id", id)
	return nil
}

// RemoveNode takes node id out of the group, through the leader
// (DELETE /cluster/nodes/{id}).
func (c *Coordinator) RemoveNode(ctx context.Context, id string) error {
	return c.onLeader(ctx, "/peer/remove", map[string]string{"id": id}, func() error { return c.remove(id) })
}

// onLeader runs local on the leader, or sends body to path on the leader.
func (c *Coordinator) onLeader(ctx context.Context, path string, body any, local func() error) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	wait := 5 * time.Millisecond
	for {
		addr, id := c.node.Raft().LeaderWithID()
		var err error
		switch {
		case id == "":
			err = fmt.Errorf("cluster: no leader known: %w", raftfsm.ErrNotLeader)
		case id == c.node.ID():
			return local()
		default:
			b, _ := json.Marshal(body)
			var out struct{}
			err = c.call(ctx, addr, http.MethodPost, path, b, &out)
		}
		if !errors.Is(err, raftfsm.ErrNotLeader) || errors.Is(err, errUnknownOutcome) {
			return err
		}
		if !c.backoff(ctx, &wait) {
			return err
		}
	}
}

// servePeerMembership serves POST /peer/join and /peer/remove on the
// leader (another node forwards there).
func (c *Coordinator) serveJoin(w http.ResponseWriter, r *http.Request) {
	var req JoinRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, wireError{Code: codeBadCommand, Message: err.Error()})
		return
	}
	c.serveMembership(w, c.onLeader(r.Context(), "/peer/join", req, func() error { return c.admit(r.Context(), req) }))
}

func (c *Coordinator) serveRemove(w http.ResponseWriter, r *http.Request) {
	var req struct {
		ID string `json:"id"`
	}
	if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, wireError{Code: codeBadCommand, Message: err.Error()})
		return
	}
	c.serveMembership(w, c.RemoveNode(r.Context(), req.ID))
}

func (c *Coordinator) serveMembership(w http.ResponseWriter, err error) {
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, struct{}{})
	case errors.Is(err, ErrJoinRefused):
		writeJSON(w, http.StatusConflict, wireError{Code: "JoinRefused", Message: err.Error()})
	case errors.Is(err, ErrNoSuchNode):
		writeJSON(w, http.StatusNotFound, wireError{Code: "NotFound", Message: err.Error()})
	default:
		c.writeFailure(w, err)
	}
}

// Join asks the group member whose API is at url to add the node req
// describes as a voter, signing the request with the cluster secret. It
// returns ErrJoinRefused (with the group's reason) when the group will not
// have it; nothing changed then.
func Join(ctx context.Context, client *http.Client, url string, secret []byte, req JoinRequest) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(url, "/")+"/peer/join", bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("cluster: join through %s: %w", url, err)
	}
	newSigner(secret).sign(hr, b)
	resp, err := client.Do(hr)
	if err != nil {
		return fmt.Errorf("cluster: join through %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var we wireError
	_ = json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&we)
	if resp.StatusCode == http.StatusConflict || resp.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("%w by %s: %s", ErrJoinRefused, url, we.Message)
	}
	return fmt.Errorf("cluster: join through %s: %d %s: %s", url, resp.StatusCode, we.Code, we.Message)
}
