package catalog

import (
	"crypto/sha256"
	"encoding/binary"
	"hash"
)

// Digest is a summary of the replicated blob map: equal on two nodes that
// hold the same blobs (key, version, size, chunk size and checksums).
type Digest struct {
	// SHA256 is over every blob in key order: for each, the key's length
	// (uvarint) and bytes, then version, size and chunk size (8 bytes
	// each, big endian), the checksum count (uvarint) and each checksum
	// (4 bytes, big endian). An empty catalog has the SHA-256 of nothing.
	SHA256 [sha256.Size]byte
	Blobs  int
	// AppliedIndex is the applied index of the transaction it was
	// computed in: two digests are comparable only at equal indexes.
	AppliedIndex uint64
}

// Digest computes the blob-map digest from this transaction's consistent
// view. It reads every blob record once (no data): O(blobs) time and one
// record of memory at a time.
func (t *Tx) Digest() (Digest, error) {
	var d Digest
	idx, err := t.AppliedIndex()
	if err != nil {
		return d, err
	}
	h := sha256.New()
	err = t.ForEachBlob(func(b Blob) error {
		hashBlob(h, b)
		d.Blobs++
		return nil
	})
	if err != nil {
		return d, err
	}
	h.Sum(d.SHA256[:0])
	d.AppliedIndex = idx
	return d, nil
}

func hashBlob(h hash.Hash, b Blob) {
	buf := make([]byte, 0, 2*binary.MaxVarintLen64+len(b.Key)+24+4*len(b.Checksums))
	buf = binary.AppendUvarint(buf, uint64(len(b.Key)))
	buf = append(buf, b.Key...)
	buf = binary.BigEndian.AppendUint64(buf, b.Version)
	buf = binary.BigEndian.AppendUint64(buf, uint64(b.Size))
	buf = binary.BigEndian.AppendUint64(buf, uint64(b.ChunkSize))
	buf = binary.AppendUvarint(buf, uint64(len(b.Checksums)))
	for _, c := range b.Checksums {
		buf = binary.BigEndian.AppendUint32(buf, c)
	}
	h.Write(buf)
}
