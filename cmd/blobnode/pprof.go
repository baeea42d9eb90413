package main

import (
	"log/slog"
	"net/http"
	"net/http/pprof"
)

// servePprof serves the profiler on its own listener for the life of the
// process (an operator's debugging aid, off by default).
func servePprof(addr string, log *slog.Logger) {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	log.Warn("pprof server stopped", "err", http.ListenAndServe(addr, mux))
}
