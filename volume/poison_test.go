package volume

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// TestFailedWritebackPoisonsEveryCaller runs the Linux failure the data
// mark must survive: a writeback error is reported once, to whichever
// fsync of the file runs next, and the pages it could not write are
// dropped. Whichever caller takes it (the journal's group commit or a data
// sync), no later sync of the volume may succeed: a data sync that did
// would record a mark vouching for heap bytes the disk never got.
func TestFailedWritebackPoisonsEveryCaller(t *testing.T) {
	const mark = 7
	tests := []struct {
		name string
		// takeError runs the sync that receives the writeback error.
		takeError func(v *Volume) error
		// later are the syncs that must fail after it, in order.
		later []namedSync
	}{
		{
			name:      "journal-takes-the-error",
			takeError: commitOne,
			later:     []namedSync{{"SyncData", syncData}, {"Sync", (*Volume).Sync}, {"journal", commitOne}},
		},
		{
			name:      "data-sync-takes-the-error",
			takeError: syncData,
			// A checkpoint with nothing logged since the last one syncs
			// nothing and vouches for nothing new, so it comes after a
			// commit that logged something.
			later: []namedSync{{"journal", commitOne}, {"Checkpoint", checkpoint}, {"SyncData", syncData}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dev, v := newMemVolume(t, mediumOpts(), 1)
			v.SetDataMarkSource(func() uint64 { return mark })
			off := v.Superblock().Layout.HeapOffset
			blob := fill(8192, 'i')
			mustWrite(t, v, off, blob) // an inline blob the mark would vouch for

			dev.FailSyncOnceAfter(0)
			if err := tt.takeError(v); !errors.Is(err, ErrInjected) {
				t.Fatalf("the sync that took the writeback error: %v", err)
			}
			select {
			case <-v.Failed():
			default:
				t.Fatal("Failed not closed after a failed sync")
			}
			if err := v.Err(); !errors.Is(err, ErrPoisoned) || !errors.Is(err, ErrInjected) {
				t.Fatalf("Err = %v, want ErrPoisoned wrapping the cause", err)
			}
			// The device itself would now sync fine: only the volume
			// remembers.
			for _, s := range tt.later {
				if err := s.sync(v); !errors.Is(err, ErrPoisoned) {
					t.Errorf("%s after the failure: %v, want ErrPoisoned", s.name, err)
				}
			}
			if err := v.Close(); !errors.Is(err, ErrPoisoned) {
				t.Errorf("Close: %v, want ErrPoisoned", err)
			}
			dev.Crash(CrashDropAll, nil)
			v = reopen(t, dev)
			if m := v.DataMark(); m != 0 {
				t.Fatalf("data mark %d durable, but the heap bytes it vouches for were dropped", m)
			}
			got := make([]byte, len(blob))
			if _, err := v.ReadAt(got, off); err != nil {
				t.Fatal(err)
			}
			if bytes.Equal(got, blob) {
				t.Fatal("the dropped heap write survived: the test device did not drop it")
			}
		})
	}
}

// TestFailSyncOnceReportsOnce checks the device model itself: one failure,
// the unsynced writes dropped, and later syncs succeeding.
func TestFailSyncOnceReportsOnce(t *testing.T) {
	d := NewMemDevice(1<<16, 1)
	if _, err := d.WriteAt([]byte("durable"), 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if _, err := d.WriteAt([]byte("dropped"), 0); err != nil {
		t.Fatal(err)
	}
	d.FailSyncOnceAfter(0)
	if err := d.Sync(); !errors.Is(err, ErrInjected) {
		t.Fatalf("first sync: %v", err)
	}
	got := make([]byte, 7)
	if _, err := d.ReadAt(got, 0); err != nil || string(got) != "durable" {
		t.Fatalf("after the failed writeback reads %q, %v; want the durable bytes", got, err)
	}
	if err := d.Sync(); err != nil {
		t.Fatalf("second sync: %v, want success (the error is reported once)", err)
	}
}

type namedSync struct {
	name string
	sync func(v *Volume) error
}

func commitOne(v *Volume) error {
	var txn Txn
	txn.Write(v.Superblock().Layout.StateOffset, []byte("txn"))
	return v.Journal().Commit(context.Background(), &txn)
}

func syncData(v *Volume) error { return v.SyncData(context.Background()) }

func checkpoint(v *Volume) error { return v.Journal().Checkpoint(context.Background()) }
