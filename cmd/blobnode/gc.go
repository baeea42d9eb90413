package main

import "runtime/debug"

// defaultGCPercent is the Go collector's GOGC for a node started without
// GOGC in its environment.
//
// Why not Go's 100: a node holds nothing per blob in its heap (a few MiB
// live, empty or with a million blobs stored), so at 100 the collector ran
// whenever another few MiB had been allocated, about 45 times a second
// under a 1 KiB PUT load, each cycle's fixed cost paid again and its mark
// workers taking CPU from requests on a machine with few cores. At 400 it
// runs about a quarter as often, for some 15 MiB more anonymous memory.
// Measured on the project's 2-CPU machine, 16 clients, one node: 1 KiB
// PUT 60 -> 57 µs of node CPU each, GET 19 -> 17 µs; RssAnon after the
// load 12.5 -> 28.5 MiB.
const defaultGCPercent = 400

// gcPercent is the GOGC the node sets itself, and whether it sets one: an
// operator's GOGC (any value, "off" too) is the runtime's to read and wins.
func gcPercent(getenv func(string) string) (int, bool) {
	if getenv("GOGC") != "" {
		return 0, false
	}
	return defaultGCPercent, true
}

// tuneGC applies gcPercent.
func tuneGC(getenv func(string) string) {
	if p, ok := gcPercent(getenv); ok {
		debug.SetGCPercent(p)
	}
}
