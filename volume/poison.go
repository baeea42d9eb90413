package volume

import (
	"fmt"
	"sync"
)

// poisonDevice is the one Device every part of a Volume syncs through: the
// journal's group commits and checkpoints, the data syncs and their marks,
// Sync and Close. Its first failed Sync poisons the device for good: every
// later Sync, of any caller, fails with that error, and so does a Sync that
// was running when the failure came.
//
// Why the whole device and not each caller: Linux reports a failed
// writeback once per open file, to whichever fsync runs next, and drops
// the dirty pages it could not write. The journal and the data path share
// one file, so if the journal's fsync took an error that belonged to heap
// pages, a data sync that ran next would succeed and record a data mark
// vouching for bytes the disk never got; replay would then skip an
// acknowledged inline blob whose bytes are gone.
//
// Reads and writes still pass through (the page cache may serve them), but
// nothing written can be made durable again through this Volume: reopen it
// (restart the node), which recovers from the Raft log.
type poisonDevice struct {
	Device

	mu     sync.Mutex
	err    error         // sticky: set once, by the first failed Sync
	failed chan struct{} // closed when err is set
}

func newPoisonDevice(dev Device) *poisonDevice {
	return &poisonDevice{Device: dev, failed: make(chan struct{})}
}

func (d *poisonDevice) Sync() error {
	if err := d.Err(); err != nil {
		return err
	}
	err := d.Device.Sync()
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil && d.err == nil {
		d.err = fmt.Errorf("%w (%w)", ErrPoisoned, err)
		close(d.failed)
	}
	// A Sync that succeeded while another one failed may have had its
	// error reported to the other caller: it vouches for nothing either.
	return d.err
}

// Err returns the sticky sync error, or nil.
func (d *poisonDevice) Err() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.err
}
