package volume

import (
	"bytes"
	"testing"
)

func TestZeroFill(t *testing.T) {
	const size = 20<<20 + 4096 // not a multiple of the fill buffer
	dev := NewMemDevice(size, 7)
	if err := ZeroFill(dev); err != nil {
		t.Fatal(err)
	}
	if dev.Unsynced() != 0 {
		t.Fatalf("%d writes left unsynced", dev.Unsynced())
	}
	got := make([]byte, size)
	if _, err := dev.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, make([]byte, size)) {
		t.Fatal("device not all zeros after ZeroFill")
	}
}
