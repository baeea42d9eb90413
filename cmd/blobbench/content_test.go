package main

import (
	"bytes"
	"io"
	"math/rand/v2"
	"testing"
)

// TestPatternPieces checks that filling the stream in random pieces gives
// the bytes of filling it at once, which GET verification relies on.
func TestPatternPieces(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	whole := make([]byte, 5000)
	p := newPattern("k")
	p.fill(whole)
	for range 100 {
		got := make([]byte, 0, len(whole))
		q := newPattern("k")
		for len(got) < len(whole) {
			n := min(rng.IntN(20), len(whole)-len(got))
			piece := make([]byte, n)
			q.fill(piece)
			got = append(got, piece...)
		}
		if !bytes.Equal(got, whole) {
			t.Fatalf("seed %d: pieces differ from the whole", seed)
		}
	}
}

func TestPatternByKey(t *testing.T) {
	read := func(key string) []byte {
		b, err := io.ReadAll(newContentReader(key, 64))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	if !bytes.Equal(read("a"), read("a")) {
		t.Error("same key, different content")
	}
	if bytes.Equal(read("a"), read("b")) {
		t.Error("different keys, same content")
	}
	if n := len(read("a")); n != 64 {
		t.Errorf("reader gave %d bytes, want 64", n)
	}
}
