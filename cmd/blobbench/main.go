// Command blobbench is blobnode's load tool, in the manner of SeaweedFS's
// "weed benchmark": it writes n blobs of one size from c concurrent clients,
// reads them back verifying every byte, deletes them, and prints throughput
// and latency percentiles for each phase.
//
// Blob content is a pseudo-random stream derived from the key, so GET
// verification regenerates the expected bytes instead of keeping them.
// The exit status is 0 if every request succeeded, 1 if any failed or was
// wrong, 2 for bad flags.
//
//	blobbench -addr http://127.0.0.1:8080 -n 20000 -size 1KiB -c 16 -ops put,get,delete
//
// With a comma-separated -addr (the nodes of one group), each client sends
// its requests to the addresses in turn, starting at its own offset, so
// the load is spread evenly and a blob is often read from another node
// than the one that stored it.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is main with its arguments and output made explicit; it returns the
// exit status.
func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("blobbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	size := byteSize(1 << 10)
	cfg := Config{}
	fs.StringVar(&cfg.Addr, "addr", "http://127.0.0.1:8080", "base URL of the node; several, comma-separated, spread each client's requests over them round-robin")
	fs.IntVar(&cfg.N, "n", 10000, "number of blobs")
	fs.Var(&size, "size", "bytes per blob (suffixes B, KiB, MiB, GiB, KB, MB, GB)")
	fs.IntVar(&cfg.Concurrency, "c", 16, "concurrent clients")
	ops := fs.String("ops", "put,get,delete", "comma-separated phases from put, get, delete, run in order")
	fs.StringVar(&cfg.Prefix, "prefix", "", "key prefix (default bench/<random hex>/)")
	fs.DurationVar(&cfg.Timeout, "timeout", 30*time.Second, "per-request timeout")
	fs.DurationVar(&cfg.Duration, "duration", 0, "if set, stop issuing requests in a phase after this long")
	fs.BoolVar(&cfg.JSON, "json", false, "print one JSON object per phase instead of a table")
	fs.StringVar(&cfg.Token, "token", "", "bearer token sent in the Authorization header")
	fs.BoolVar(&cfg.Verify, "verify", true, "verify every byte read by GET")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "blobbench: unexpected arguments %q\n", fs.Args())
		return 2
	}
	cfg.Size = int64(size)
	var err error
	if cfg.Ops, err = parseOps(*ops); err != nil {
		fmt.Fprintln(stderr, "blobbench:", err)
		return 2
	}
	if cfg.Prefix == "" {
		var r [4]byte
		rand.Read(r[:])
		cfg.Prefix = "bench/" + hex.EncodeToString(r[:]) + "/"
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	results, err := Run(ctx, cfg, stdout, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "blobbench:", err)
		if results == nil && ctx.Err() == nil {
			return 2 // the configuration was refused
		}
		return 1
	}
	for _, r := range results {
		if r.Failed() {
			return 1
		}
	}
	return 0
}
