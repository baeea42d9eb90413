package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/blobnode/blobnode/internal/solevoter"
	"github.com/blobnode/blobnode/store"
	"github.com/blobnode/blobnode/volume"
)

// TestInlinePutRetriesAfterPoolDrain: an inline PUT refused for lack of
// space while the reservation pool holds space drains the pool and is
// proposed again, and succeeds. Through a Coordinator every command
// carries a request id; the retry must not carry the refused attempt's,
// or the state machine answers it from the request table (the recorded
// refusal) without trying again.
func TestInlinePutRetriesAfterPoolDrain(t *testing.T) {
	const size = 16 << 20
	g := solevoter.Start(t, volume.Geometry{SpageShift: 12, LpageShift: 18, VolumeSize: size}, volume.NewMemDevice(size, 1))
	c := New(Config{Node: g.Node, Secret: []byte("0123456789abcdef0123456789abcdef")})
	st := store.New(c, g.FSM, g.Vol, store.Config{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(func() { st.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	put := func(key string, n int) error {
		body := bytes.Repeat([]byte{'x'}, n)
		_, err := st.Put(ctx, store.PutRequest{Key: key, Size: int64(n), Body: bytes.NewReader(body)})
		return err
	}
	// Uploads above the inline size take pooled reservations and leave
	// the pool holding more of their size.
	for i := range 4 {
		if err := put(fmt.Sprintf("pooled/%d", i), 20<<10); err != nil {
			t.Fatalf("PUT of 20 KiB: %v", err)
		}
	}
	// Inline PUTs until the volume is full: the first refused for space
	// must have found the pool empty (the drain gives back at least one
	// blob's worth).
	for i := 0; ; i++ {
		pooled := st.PooledBytes()
		err := put(fmt.Sprintf("inline/%d", i), 16<<10)
		if errors.Is(err, store.ErrNoSpace) {
			if pooled > 0 {
				t.Fatalf("inline PUT %d refused for space while the pool held %d bytes: %v", i, pooled, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("inline PUT %d: %v", i, err)
		}
		if i > size/(16<<10) {
			t.Fatalf("%d inline PUTs of 16 KiB into a volume of %d bytes, none refused", i, size)
		}
	}
}
