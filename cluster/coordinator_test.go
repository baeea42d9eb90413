package cluster

import "testing"

// One proposer's request ids ascend (so its request records go to one
// edge of the state machine's B-tree, see requestIDs) and are never 0;
// two proposers draw different prefixes.
func TestRequestIDsAscendPerProposer(t *testing.T) {
	var a, b requestIDs
	a.start()
	b.start()
	if a.prefix == b.prefix {
		// 1 in 2^24; a second draw settles whether start draws at all.
		b.start()
		if a.prefix == b.prefix {
			t.Fatalf("two proposers share prefix %#x", a.prefix)
		}
	}
	const counterMask = 1<<(64-requestIDPrefixBits) - 1
	// From just below the counter's wrap: ids stay non-zero and keep the
	// prefix, and ascend except at the wrap itself.
	a.counter.Store(counterMask - 3)
	a.prefix = 0
	prev := uint64(0)
	for i := range 8 {
		id := a.next()
		if id == 0 {
			t.Fatalf("id %d is 0", i)
		}
		if id&^counterMask != a.prefix {
			t.Fatalf("id %#x lost prefix %#x", id, a.prefix)
		}
		if i != 3 && id <= prev {
			t.Fatalf("id %d (%#x) does not ascend from %#x", i, id, prev)
		}
		prev = id
	}
}
