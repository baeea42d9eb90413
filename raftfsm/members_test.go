package raftfsm

import (
	"errors"
	"slices"
	"testing"

	"github.com/blobnode/blobnode/catalog"
)

// TestMembers: Register records or overwrites a member, Deregister removes
// one (an unknown id is not an error), invalid ones are refused without a
// change, and Members lists them sorted by id.
func TestMembers(t *testing.T) {
	s := newStack(t, memDev, 1)
	reg := func(id, api, raftAddr string) Command {
		return Command{Kind: KindRegister, NodeID: id, APIAddr: api, RaftAddr: raftAddr}
	}
	m := func(id, api, raftAddr string) catalog.Member {
		return catalog.Member{ID: id, APIAddr: api, RaftAddr: raftAddr}
	}
	type step struct {
		name string
		c    Command
		err  error // the refusal expected, nil for success
		want []catalog.Member
	}
	steps := []step{
		{"register n2", reg("n2", "b:8080", "b:7000"), nil, []catalog.Member{m("n2", "b:8080", "b:7000")}},
		{"register n1", reg("n1", "10.0.0.1:8080", "10.0.0.1:7000"), nil,
			[]catalog.Member{m("n1", "10.0.0.1:8080", "10.0.0.1:7000"), m("n2", "b:8080", "b:7000")}},
		{"register n3 (IPv6)", reg("n3", "[::1]:8080", "[fe80::1]:7000"), nil,
			[]catalog.Member{m("n1", "10.0.0.1:8080", "10.0.0.1:7000"), m("n2", "b:8080", "b:7000"), m("n3", "[::1]:8080", "[fe80::1]:7000")}},
		{"overwrite n1", reg("n1", "a:9", "a:10"), nil,
			[]catalog.Member{m("n1", "a:9", "a:10"), m("n2", "b:8080", "b:7000"), m("n3", "[::1]:8080", "[fe80::1]:7000")}},
		{"deregister n2", Command{Kind: KindDeregister, NodeID: "n2"}, nil,
			[]catalog.Member{m("n1", "a:9", "a:10"), m("n3", "[::1]:8080", "[fe80::1]:7000")}},
		{"deregister unknown", Command{Kind: KindDeregister, NodeID: "n9"}, nil,
			[]catalog.Member{m("n1", "a:9", "a:10"), m("n3", "[::1]:8080", "[fe80::1]:7000")}},
	}
	for _, bad := range []struct{ name, api, raftAddr string }{
		{"no api address", "", "a:1"},
		{"no raft address", "a:1", ""},
		{"no port", "host", "a:1"},
		{"empty host", ":8080", "a:1"},
		{"port 0", "a:0", "a:1"},
		{"port too large", "a:65536", "a:1"},
		{"port not a number", "a:http", "a:1"},
		{"signed port", "a:+80", "a:1"},
	} {
		steps = append(steps, step{"refused: " + bad.name, reg("n1", bad.api, bad.raftAddr), ErrInvalid, steps[len(steps)-1].want})
	}
	last := steps[len(steps)-1].want
	steps = append(steps,
		step{"register without id", reg("", "a:1", "a:2"), ErrInvalid, last},
		step{"deregister without id", Command{Kind: KindDeregister}, ErrInvalid, last},
	)

	for i, st := range steps {
		r := applyOne(t, s.fsm, uint64(i+1), st.c)
		if !errors.Is(r.Err, st.err) || (st.err == nil && r.Err != nil) {
			t.Fatalf("%s: result %s; want error %v", st.name, fmtResult(r), st.err)
		}
		got, err := s.fsm.Members()
		if err != nil {
			t.Fatalf("%s: Members: %v", st.name, err)
		}
		if !slices.Equal(got, st.want) {
			t.Fatalf("%s: Members = %+v; want %+v", st.name, got, st.want)
		}
	}
	s.check()
}
