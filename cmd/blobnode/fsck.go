package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/blobnode/blobnode/catalog"
	"github.com/blobnode/blobnode/raftfsm"
	"github.com/blobnode/blobnode/space"
	"github.com/blobnode/blobnode/store"
	"github.com/blobnode/blobnode/volume"
)

// runFsck checks a stopped node's data directory: the catalog's own
// consistency, that allocator and catalog agree page for page (nothing both
// free and owned, owned twice, or leaked), and that every stored chunk
// matches its checksum and can be read. It prints one line per problem
// and returns the exit status: 0 clean, 1 problems found, 2 could not
// check.
func runFsck(args []string, out io.Writer) int {
	fs := flag.NewFlagSet("blobnode fsck", flag.ContinueOnError)
	fs.SetOutput(out)
	dir := fs.String("data-dir", "./data", "data directory of a stopped node")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	return fsck(*dir, out, nil)
}

// fsck is runFsck on the data directory dir; wrap (nil: none) wraps the
// volume's device, as openStorage's does.
func fsck(dir string, out io.Writer, wrap func(volume.Device) volume.Device) int {
	log := slog.New(slog.DiscardHandler)
	st, err := openStorage(config{dataDir: dir, readOnly: true}, log, wrap)
	if err != nil {
		fmt.Fprintln(out, "fsck: cannot open:", err)
		return 2
	}
	defer st.close()
	problems := 0
	report := func(format string, args ...any) {
		problems++
		fmt.Fprintf(out, "problem: "+format+"\n", args...)
	}

	if _, err := os.Stat(filepath.Join(dir, cleanFile)); err != nil {
		report("the node did not stop cleanly (or is running): its next start rebuilds catalog and allocator from the Raft snapshot and log; stop it cleanly, then check")
	}
	if st.rebuild {
		report("allocator: an interrupted rebuild left it unusable (the next start rebuilds it from the catalog)")
	}
	if err := st.cat.Check(); err != nil {
		report("catalog: %v", err)
	}
	var catApplied uint64
	var blobs []catalog.Blob
	if err := st.cat.View(func(tx *catalog.Tx) error {
		var err error
		if catApplied, err = tx.AppliedIndex(); err != nil {
			return err
		}
		return tx.ForEachBlob(func(b catalog.Blob) error {
			blobs = append(blobs, b)
			return nil
		})
	}); err != nil {
		fmt.Fprintln(out, "fsck: read catalog:", err)
		return 2
	}
	if !st.rebuild {
		// The allocator agrees with the catalog only when both stand at
		// the same applied index; otherwise only its own state is checked.
		var check func() error
		if a := st.alloc.AppliedIndex(); a != catApplied {
			report("allocator applied index %d, catalog %d (a crash between their commits; the next start rebuilds the allocator)", a, catApplied)
			check = st.alloc.Check
		} else {
			owned, err := raftfsm.OwnedExtents(st.cat)
			if err != nil {
				fmt.Fprintln(out, "fsck: read catalog:", err)
				return 2
			}
			check = func() error { return st.alloc.CheckOwned(owned) }
		}
		var ce *space.CheckError
		if err := check(); errors.As(err, &ce) {
			for _, p := range ce.Problems {
				report("allocator: %s", p)
			}
		} else if err != nil {
			fmt.Fprintln(out, "fsck: check allocator:", err)
			return 2
		}
	}
	for _, b := range blobs {
		// A chunk that fails (corrupt or unreadable) is the blob's
		// problem, not fsck's: it is reported and the check goes on.
		bad, err := store.Verify(st.vol, b)
		for _, ce := range bad {
			report("blob %q version %d chunk %d at device offset %d: %v", ce.Key, ce.Version, ce.Chunk, ce.Offset, ce.Err)
		}
		if err != nil {
			report("blob %q version %d: %v", b.Key, b.Version, err)
		}
	}
	a := st.alloc.Stats()
	fmt.Fprintf(out, "fsck: %d blobs, %d bytes used, %d free, applied index %d: %d problems\n",
		len(blobs), a.UsedBytes, a.FreeBytes, catApplied, problems)
	if problems > 0 {
		return 1
	}
	return 0
}
