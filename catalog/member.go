package catalog

import (
	"encoding/binary"
	"fmt"
)

// Limits of the member record; part of the on-disk contract like the other
// record limits.
const (
	// MaxMemberIDLen is the longest member ID (a Raft server ID), in bytes.
	MaxMemberIDLen = 256
	// MaxMemberAddrLen is the longest member address (host:port), in bytes.
	MaxMemberAddrLen = 512
)

const memberFormatV1 = 1

// Member is one entry of the replicated member registry: a node of the
// group and where the others reach it.
type Member struct {
	ID       string // the node's Raft server ID, 1..MaxMemberIDLen bytes; the bbolt key
	APIAddr  string // host:port of its HTTP API, at most MaxMemberAddrLen bytes
	RaftAddr string // host:port of its Raft transport, at most MaxMemberAddrLen bytes
}

func validateMemberID(id string) error {
	if id == "" || len(id) > MaxMemberIDLen {
		return fmt.Errorf("%w: member id of %d bytes", ErrInvalidKey, len(id))
	}
	return nil
}

func validateMember(m *Member) error {
	if err := validateMemberID(m.ID); err != nil {
		return err
	}
	switch {
	case len(m.APIAddr) > MaxMemberAddrLen || len(m.RaftAddr) > MaxMemberAddrLen:
		return fmt.Errorf("%w: member %q: address of %d/%d bytes, at most %d", ErrInvalidRecord, m.ID, len(m.APIAddr), len(m.RaftAddr), MaxMemberAddrLen)
	}
	return nil
}

// encodeMember returns the stored form of m; m.ID is the bbolt key.
func encodeMember(m Member) ([]byte, error) {
	if err := validateMember(&m); err != nil {
		return nil, err
	}
	dst := make([]byte, 0, 1+2*binary.MaxVarintLen64+len(m.APIAddr)+len(m.RaftAddr))
	dst = append(dst, memberFormatV1)
	dst = binary.AppendUvarint(dst, uint64(len(m.APIAddr)))
	dst = append(dst, m.APIAddr...)
	dst = binary.AppendUvarint(dst, uint64(len(m.RaftAddr)))
	dst = append(dst, m.RaftAddr...)
	return dst, nil
}

// decodeMember parses a record written by encodeMember; the ID is left
// empty. Errors wrap ErrCorrupt; canonical, never panics.
func decodeMember(data []byte) (Member, error) {
	d := decoder{rec: "member", b: data}
	var m Member
	d.format(memberFormatV1)
	m.APIAddr = d.addr("api address")
	m.RaftAddr = d.addr("raft address")
	d.end()
	if d.err != nil {
		return Member{}, d.err
	}
	return m, nil
}

func (d *decoder) addr(field string) string {
	n := d.uvarint(field + " length")
	if d.err == nil && n > MaxMemberAddrLen {
		d.fail("%s of %d bytes, more than %d", field, n, MaxMemberAddrLen)
	}
	return string(d.bytes(field, n))
}

// PutMember records m under m.ID, replacing the member of that ID if there
// is one. An empty or overlong ID is refused with ErrInvalidKey, an overlong
// address with ErrInvalidRecord.
func (t *Tx) PutMember(m Member) error {
	enc, err := encodeMember(m)
	if err != nil {
		return fmt.Errorf("put member: %w", err)
	}
	b, err := t.bucket(bucketMembers)
	if err != nil {
		return err
	}
	if err := b.Put([]byte(m.ID), enc); err != nil {
		return fmt.Errorf("put member %q: %w", m.ID, err)
	}
	return nil
}

// GetMember returns the member with the given ID; ok is false if there is
// none. IDs are checked as by PutMember.
func (t *Tx) GetMember(id string) (m Member, ok bool, err error) {
	if err := validateMemberID(id); err != nil {
		return Member{}, false, err
	}
	b, err := t.bucket(bucketMembers)
	if err != nil {
		return Member{}, false, err
	}
	v := b.Get([]byte(id))
	if v == nil {
		return Member{}, false, nil
	}
	m, err = decodeMember(v)
	if err != nil {
		return Member{}, false, fmt.Errorf("member %q: %w", id, err)
	}
	m.ID = id
	return m, true, nil
}

// DeleteMember removes a member; a missing ID is a no-op. IDs are checked
// as by PutMember.
func (t *Tx) DeleteMember(id string) error {
	if err := validateMemberID(id); err != nil {
		return err
	}
	b, err := t.bucket(bucketMembers)
	if err != nil {
		return err
	}
	if err := b.Delete([]byte(id)); err != nil {
		return fmt.Errorf("delete member %q: %w", id, err)
	}
	return nil
}

// Members returns every member, sorted by ID (byte order).
func (t *Tx) Members() ([]Member, error) {
	b, err := t.bucket(bucketMembers)
	if err != nil {
		return nil, err
	}
	var out []Member
	err = b.ForEach(func(k, v []byte) error {
		m, err := decodeMember(v)
		if err != nil {
			return fmt.Errorf("member %q: %w", k, err)
		}
		m.ID = string(k)
		out = append(out, m)
		return nil
	})
	return out, err
}
