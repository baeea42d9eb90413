package store

import (
	"errors"
	"fmt"
	"testing"

	"github.com/blobnode/blobnode/raftfsm"
)

// A proposal the state machine answered with ErrClosed (the node is
// shutting down while a batch waits for the disk) is a retryable
// unavailability, like ErrStopped, not an internal error.
func TestMapErrClosedIsUnavailable(t *testing.T) {
	for _, err := range []error{raftfsm.ErrClosed, raftfsm.ErrStopped, raftfsm.ErrNotLeader} {
		wrapped := fmt.Errorf("%w: entries 5..9: disk full", err)
		if got := mapErr(wrapped); !errors.Is(got, ErrUnavailable) {
			t.Errorf("mapErr(%v) = %v; want ErrUnavailable", wrapped, got)
		}
	}
}
