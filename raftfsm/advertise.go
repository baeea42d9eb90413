package raftfsm

import (
	"errors"
	"net"
)

// advertiseAddr checks adv (host:port, the port not 0) and returns the
// address Raft advertises for this node: what its peers record as the
// leader's address and dial to forward proposals and read indexes.
//
// Over the peer stream layer (TLS or a cluster secret, which every group
// with peers has) that is adv verbatim: a host name stays a name, looked
// up at each dial. A container's or pod's name then keeps working when its
// IP changes or is given to another container, and a name that resolves
// only once the node runs (or not yet at all) does not fail the start;
// an IP resolved once at start would go stale, with followers forwarding
// every write to an address nobody (or the wrong node) listens on.
// hashicorp/raft's plain TCP transport takes only an IP, so there adv is
// resolved, as before.
func advertiseAddr(adv string, auth PeerAuth) (net.Addr, error) {
	if auth.TLS == nil && auth.Secret == nil {
		addr, err := net.ResolveTCPAddr("tcp", adv)
		if err == nil && addr.Port == 0 {
			err = errors.New("port 0 cannot be advertised to peers")
		}
		return addr, err
	}
	_, port, err := net.SplitHostPort(adv)
	if err != nil {
		return nil, err
	}
	p, err := net.LookupPort("tcp", port) // a number, or a name in /etc/services: no DNS
	if err != nil {
		return nil, err
	}
	if p == 0 {
		return nil, errors.New("port 0 cannot be advertised to peers")
	}
	return namedAddr(adv), nil
}

// namedAddr is a TCP address as written, host name and all.
type namedAddr string

func (a namedAddr) Network() string { return "tcp" }
func (a namedAddr) String() string  { return string(a) }

var _ net.Addr = namedAddr("")
