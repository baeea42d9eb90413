// Package cluster is what makes one node a member of a group: the peer
// protocol between nodes (authenticated by the cluster secret) and the
// coordinator that the store drives instead of the bare Raft node.
//
// The Coordinator proposes through the leader from any node: on the
// leader it proposes locally; elsewhere it forwards the command to the
// leader's peer API. Reads are linearizable on every node: a follower
// asks the leader for a read index (the leader confirms it still leads
// and that its term did not change meanwhile) and waits until it has
// applied that index itself; concurrent reads share one round trip.
//
// Nodes learn each other's API addresses from their Raft addresses: the
// stream layer answers an authenticated probe with the node's API
// address (raftfsm.PeerStatus), so a group needs no address book beyond
// its Raft configuration.
//
// # Peer requests
//
// Every peer request carries
//
//	Authorization: BlobnodePeer <unix seconds>.<epoch>.<seq>.<hex HMAC-SHA256(key, method SP host SP request-URI SP seconds SP epoch SP seq SP body digest)>
//
// where epoch (16 hex digits, drawn when the sender's signer is made: at
// the node's start, and for each join) and seq (its requests that change
// something numbered from 1; reads carry 0) make every such signature
// unique, key is derived
// from the cluster secret for this use only (raftfsm.PeerKey(secret,
// "peer api")), and host is the request's Host (the node it is for). A request with a body also carries
// X-Blobnode-Body-Sha256, the hex SHA-256 of the part the signature covers
// (the body digest above; empty for a GET): the whole body of a POST (a
// command, a join, a removal), the manifest at the head of PUT /peer/data
// (which reservations the bytes are for). A request without the header,
// with a wrong one, or more than MaxClockSkew away from the receiver's
// clock is refused with 401 before its body is read, as is one whose
// signed part is not the one signed; either changes nothing. A request
// that changes something (any method but GET and HEAD) is accepted once:
// the same epoch and seq again is a replay, refused with 401, as is one
// overtaken by 262,144 later ones of its sender, or of a sender forgotten
// to make room (256 are remembered) and dated before that one's last (see
// replayGuard). A receiver that restarted has forgotten which it
// accepted: within MaxClockSkew of its start, a request it accepted
// before can be sent to it again; a command applies at most once by its
// request id only within raftfsm.DedupWindow entries. A resent PUT
// /peer/data carries only the bytes it carried: after the manifest come a
// random salt and the chunks, each tagged (GMAC) under a key derived from
// the secret, the manifest and the salt, and checked by the replica before
// it writes the chunk (see chunkTagger). Keep peer traffic on a private
// network, or turn TLS on.
package cluster
