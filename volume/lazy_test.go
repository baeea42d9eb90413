package volume

import (
	"bytes"
	"context"
	"testing"
	"time"
)

// TestLazyCommitsShareOneRecord: lazily submitted transactions are not
// written on their own; they go out together, in order, once one of them
// is waited for.
func TestLazyCommitsShareOneRecord(t *testing.T) {
	dev, v := newMemVolume(t, mediumOpts(), 1)
	j := v.Journal()
	off := v.Superblock().Layout.StateOffset
	syncs := dev.Syncs()
	var last *Commit
	for i := range 50 {
		var tx Txn
		tx.Write(off+int64(i)*8, []byte{byte(i + 1)})
		last = j.SubmitLazy(&tx)
	}
	if err := last.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	st := j.Stats()
	if st.Commits != 50 || st.Groups != 1 || dev.Syncs()-syncs != 1 {
		t.Fatalf("50 lazy commits: %+v, %d syncs; want one group and one sync", st, dev.Syncs()-syncs)
	}
	got := make([]byte, 50*8)
	if err := v.ReadMeta(got, off); err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if got[i*8] != byte(i+1) {
			t.Fatalf("write %d not applied", i)
		}
	}
}

// TestLazyCommitIsWrittenWithoutWaiter: nobody waits, yet a lazy
// transaction becomes durable within lazyDelay.
func TestLazyCommitIsWrittenWithoutWaiter(t *testing.T) {
	_, v := newMemVolume(t, mediumOpts(), 2)
	var tx Txn
	tx.Write(v.Superblock().Layout.StateOffset, []byte("lazy"))
	c := v.Journal().SubmitLazy(&tx)
	select {
	case <-c.Done():
	case <-time.After(100 * lazyDelay):
		t.Fatalf("lazy transaction not written after %v", 100*lazyDelay)
	}
	got := make([]byte, 4)
	if err := v.ReadMeta(got, v.Superblock().Layout.StateOffset); err != nil || !bytes.Equal(got, []byte("lazy")) {
		t.Fatalf("got %q, %v", got, err)
	}
}

// TestLazyThenEagerKeepsOrder: an eager commit after lazy ones makes them
// durable too, in submission order.
func TestLazyThenEagerKeepsOrder(t *testing.T) {
	dev, v := newMemVolume(t, mediumOpts(), 3)
	off := v.Superblock().Layout.StateOffset
	var tx Txn
	tx.Write(off, []byte("first"))
	v.Journal().SubmitLazy(&tx)
	tx.Reset()
	tx.Write(off, []byte("second"))
	if err := v.Journal().Commit(context.Background(), &tx); err != nil {
		t.Fatal(err)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	v2 := reopen(t, dev)
	got := make([]byte, 6)
	if err := v2.ReadMeta(got, off); err != nil || string(got) != "second" {
		t.Fatalf("got %q, %v", got, err)
	}
}
