package volume

import (
	"bytes"
	"context"
	"errors"
	"testing"
)

// TestJournalHeaderTornPage tears the page of the header slot a checkpoint
// was writing when the power failed, leaving it garbage. From format
// version 3 each slot has a page of its own, so the other slot (the
// previous generation) survives and the volume opens with every committed
// transaction; in version 2 both slots share that page and the volume is
// lost, which is why version 3 exists. Version 2 volumes still open when
// nothing tore (TestOldFormatsOpen).
func TestJournalHeaderTornPage(t *testing.T) {
	for _, version := range []uint32{2, FormatVersion} {
		t.Run(versionName(version), func(t *testing.T) {
			opts := mediumOpts()
			dev := NewMemDevice(opts.Geometry.VolumeSize, 3)
			if _, err := format(dev, opts, version); err != nil {
				t.Fatal(err)
			}
			v, err := Open(dev, nil)
			if err != nil {
				t.Fatal(err)
			}
			l := v.Superblock().Layout
			for i := range 5 {
				if i == 3 {
					if err := v.Journal().Checkpoint(context.Background()); err != nil {
						t.Fatal(err)
					}
				}
				mustCommit(t, v, recordWrite{l.StateOffset + int64(i)*64, fill(64, byte('a'+i))})
			}
			want := stateBytes(t, v)
			// The next checkpoint: Sync, then the header write, which the
			// power cut tears.
			next := v.Journal().slots[1-v.Journal().slot]
			dev.SetCrashAt(dev.Ops() + 2)
			if err := v.Journal().Checkpoint(context.Background()); !errors.Is(err, ErrCrashed) {
				t.Fatalf("checkpoint at the crash point: %v", err)
			}
			_ = v.Close()
			dev.Crash(CrashDropAll, nil)
			page := next / regionAlign * regionAlign
			garbage := make([]byte, regionAlign)
			fillGarbage(garbage, 99)
			mustWrite(t, dev, page, garbage)

			v, err = Open(dev, nil)
			if version < 3 {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("version %d with its header page torn: %v; both slots share the page, so it cannot open", version, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("open after a torn header page: %v", err)
			}
			defer v.Close()
			if got := stateBytes(t, v); !bytes.Equal(got, want) {
				t.Fatal("state after a torn header page differs from the committed state")
			}
		})
	}
}

// TestOldFormatsOpen: volumes of every version this code reads open,
// commit, checkpoint through both of their header slots and reopen with
// their own layout. These volumes are formatted by this code;
// TestGoldenFormat2 opens files that the format-2 release itself wrote.
func TestOldFormatsOpen(t *testing.T) {
	for version := uint32(oldestReadable); version <= FormatVersion; version++ {
		t.Run(versionName(version), func(t *testing.T) {
			opts := smallOpts() // a 4 KiB log: checkpoints come often
			dev := NewMemDevice(opts.Geometry.VolumeSize, int64(version))
			if _, err := format(dev, opts, version); err != nil {
				t.Fatal(err)
			}
			v, err := Open(dev, nil)
			if err != nil {
				t.Fatal(err)
			}
			if v.Superblock().Version != version || v.Superblock().Layout.JournalOffset != journalOffset(version) {
				t.Fatalf("opened as version %d with the journal at %d", v.Superblock().Version, v.Superblock().Layout.JournalOffset)
			}
			l := v.Superblock().Layout
			for i := range 40 {
				mustCommit(t, v, recordWrite{l.StateOffset + int64(i%16)*200, fill(1000, byte(i))})
			}
			if v.Journal().Stats().Checkpoints < 2 {
				t.Fatalf("%d checkpoints: both header slots were not used", v.Journal().Stats().Checkpoints)
			}
			want := stateBytes(t, v)
			if err := v.Close(); err != nil {
				t.Fatal(err)
			}
			v = reopen(t, dev)
			if !bytes.Equal(stateBytes(t, v), want) {
				t.Fatal("state differs after reopen")
			}
		})
	}
}

func versionName(v uint32) string { return "version-" + string(rune('0'+v)) }
