package cluster

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/blobnode/blobnode/store"
)

// An upload stream's chunks are authenticated one by one, so that a
// replica writes only bytes the coordinator sent for that upload: the
// request's signature covers the manifest, not the bytes after it, and
// the chunks' own checksums (CRC-32C) are no defence against whoever
// replays a seen signature with bytes of their own (a CRC is easy to
// keep while changing the data).
//
// After the manifest the coordinator sends a fresh random salt; each
// chunk's frame (its checksum, then its bytes) is followed by a GMAC tag
// (AES-256-GCM with no plaintext, the frame as additional data, the
// chunk's number as nonce) under a key derived from the cluster secret,
// the manifest's digest and the salt. The key is new for every stream
// (the salt), so no nonce is ever used twice with one key; it is bound to
// the manifest, so a tag of one upload is worth nothing for another; the
// nonce is the chunk's place, so chunks cannot be reordered. GMAC rather
// than HMAC-SHA256: about 5 GB/s against 1.6 on this project's machine,
// and every byte of a replicated upload is tagged once and checked on
// every replica.
const (
	streamSaltSize = 16
	chunkTagSize   = 16
)

// chunkTagger tags and checks the chunks of one stream.
type chunkTagger struct{ aead cipher.AEAD }

func (s signer) chunkTagger(manifest, salt []byte) (chunkTagger, error) {
	m := hmac.New(sha256.New, s.key)
	m.Write([]byte("blobnode upload stream chunks\x00"))
	digest := sha256.Sum256(manifest)
	m.Write(digest[:])
	m.Write(salt)
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		return chunkTagger{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return chunkTagger{}, err
	}
	return chunkTagger{aead}, nil
}

func chunkNonce(chunk int64) []byte {
	var n [12]byte
	binary.BigEndian.PutUint64(n[4:], uint64(chunk))
	return n[:]
}

// appendTag appends the tag of chunk number chunk, whose frame is frame.
func (t chunkTagger) appendTag(dst []byte, chunk int64, frame []byte) []byte {
	var tag [chunkTagSize]byte
	return append(dst, t.aead.Seal(tag[:0], chunkNonce(chunk), nil, frame)...)
}

// check reports whether tag is chunk number chunk's for frame.
func (t chunkTagger) check(chunk int64, frame, tag []byte) bool {
	_, err := t.aead.Open(nil, chunkNonce(chunk), tag, frame)
	return err == nil
}

// newStreamSalt draws a stream's salt.
func newStreamSalt() []byte {
	salt := make([]byte, streamSaltSize)
	rand.Read(salt)
	return salt
}

// taggedChunks reads an upload stream's frames after the salt, checks
// each whole frame's tag before handing any of its bytes on, and passes
// on the frames without their tags (the body store.ReceiveReplica reads).
// A frame with a wrong tag fails with ErrPeerAuth; a stream that ends
// inside a frame with io.ErrUnexpectedEOF. After the last chunk the rest
// of the body is passed on as it is (ReceiveReplica refuses any).
type taggedChunks struct {
	r       io.Reader
	tags    chunkTagger
	size    int64 // the blob's size, from the manifest
	chunk   int64 // number of the next frame to read
	buf     []byte
	pending []byte // checked bytes of the current frame not yet handed on
}

func (t *taggedChunks) Read(p []byte) (int, error) {
	if len(t.pending) == 0 {
		start := t.chunk * store.ChunkSize
		if start >= t.size {
			return t.r.Read(p)
		}
		n := min(store.ChunkSize, t.size-start)
		frame := t.buf[:4+n+chunkTagSize]
		if _, err := io.ReadFull(t.r, frame); err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return 0, err
		}
		body, tag := frame[:4+n], frame[4+n:]
		if !t.tags.check(t.chunk, body, tag) {
			return 0, fmt.Errorf("%w: chunk %d's tag is not the coordinator's", ErrPeerAuth, t.chunk)
		}
		t.chunk++
		t.pending = body
	}
	n := copy(p, t.pending)
	t.pending = t.pending[n:]
	return n, nil
}
