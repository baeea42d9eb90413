package api

import (
	"bytes"
	"fmt"
	"io/fs"
	"net/http"
	"strings"
	"syscall"
	"testing"

	"github.com/blobnode/blobnode/store"
)

// TestReadOnlyErrors: a write refused because the node is read-only is 507
// when the disk is full and 503 when it fails otherwise, with code
// ReadOnly, Retry-After, and the reason (but no path) in the message.
func TestReadOnlyErrors(t *testing.T) {
	readOnly := func(reason string, errno syscall.Errno) error {
		return &store.ReadOnlyError{Reason: reason, Err: fmt.Errorf("catalog: commit: %w",
			&fs.PathError{Op: "write", Path: "/secret-dir/catalog.db", Err: errno})}
	}
	tests := []struct {
		name    string
		method  string
		op      string
		err     error
		status  int
		message string
	}{
		{"put, disk full", http.MethodPut, "put", readOnly("catalog: no space left on device", syscall.ENOSPC),
			507, "node is read-only: catalog: no space left on device"},
		{"put, disk failing", http.MethodPut, "put", readOnly("raft log: input/output error", syscall.EIO),
			503, "node is read-only: raft log: input/output error"},
		{"delete, disk full", http.MethodDelete, "delete", readOnly("catalog: no space left on device", syscall.ENOSPC),
			507, "node is read-only: catalog: no space left on device"},
		{"delete, disk failing", http.MethodDelete, "delete", readOnly("catalog: input/output error", syscall.EIO),
			503, "node is read-only: catalog: input/output error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t, Config{})
			e.put("k", []byte("kept"))
			e.store.setFail(tt.op, tt.err)
			var body *bytes.Reader
			if tt.method == http.MethodPut {
				body = bytes.NewReader([]byte("new"))
			}
			var r result
			if body != nil {
				r = e.do(tt.method, "/blobs/k", body)
			} else {
				r = e.do(tt.method, "/blobs/k", nil)
			}
			if r.status != tt.status || r.errorCode() != CodeReadOnly || r.errorMessage() != tt.message {
				t.Fatalf("%s: %d %q %q, want %d %q %q", tt.method, r.status, r.errorCode(), r.errorMessage(), tt.status, CodeReadOnly, tt.message)
			}
			if strings.Contains(string(r.body), "secret-dir") {
				t.Errorf("response leaks the path: %s", r.body)
			}
			if r.header.Get("Retry-After") == "" {
				t.Error("no Retry-After")
			}
			if got := e.store.snapshot()["k"]; !bytes.Equal(got, []byte("kept")) {
				t.Errorf("blob changed to %q by a refused %s", got, tt.method)
			}
		})
	}
}
