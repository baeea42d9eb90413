package tests

import (
	"fmt"
	"testing"
	"time"
)

type catalogStatus struct {
	Applied uint64 `json:"applied_index"`
	Catalog struct {
		Digest  string `json:"digest"`
		Blobs   int    `json:"blobs"`
		Applied uint64 `json:"applied_index"`
	} `json:"catalog"`
}

// TestClusterCatalogDigest: /cluster's catalog digest is the same on every
// node once they have applied the same entries, counts the blobs, and
// changes with a write.
func TestClusterCatalogDigest(t *testing.T) {
	c := newCluster(t, 3)
	get := func(i int) catalogStatus {
		t.Helper()
		var s catalogStatus
		c.node(i).status(t, &s)
		return s
	}
	agreed := func(blobs int) string {
		t.Helper()
		var d string
		waitFor(t, 20*time.Second, func() bool {
			s0 := get(0)
			for i := range c.size() {
				s := get(i)
				if s.Catalog.Digest == "" || s.Catalog.Digest != s0.Catalog.Digest ||
					s.Catalog.Applied != s0.Catalog.Applied || s.Catalog.Blobs != blobs {
					return false
				}
			}
			d = s0.Catalog.Digest
			return true
		}, func() string { return fmt.Sprintf("digests differ: %+v %+v %+v", get(0), get(1), get(2)) })
		return d
	}
	empty := agreed(0)
	for i := range 5 {
		c.node(i%3).put(t, fmt.Sprintf("d/%d", i), []byte(fmt.Sprintf("blob %d", i)))
	}
	five := agreed(5)
	if five == empty {
		t.Fatal("five blobs digest like none")
	}
	c.node(1).put(t, "d/0", []byte("replaced"))
	if agreed(5) == five {
		t.Fatal("a replaced blob leaves the digest alike")
	}
}
