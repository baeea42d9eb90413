package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"time"
)

// Result is what one phase measured. Latencies are of successful requests
// only; rates count successful requests and their body bytes.
type Result struct {
	Phase       Op            `json:"phase"`
	Ops         int           `json:"ops"`        // requests issued and finished
	Errors      int           `json:"errors"`     // failed requests, mismatches included
	Mismatches  int           `json:"mismatches"` // GETs whose body or length was wrong
	Bytes       int64         `json:"bytes"`      // body bytes of successful requests
	Elapsed     time.Duration `json:"-"`
	Size        int64         `json:"size"`
	Concurrency int           `json:"concurrency"`

	ElapsedSec float64 `json:"elapsed_s"`
	OpsPerSec  float64 `json:"ops_per_s"`
	MiBPerSec  float64 `json:"mib_per_s"`
	P50Ms      float64 `json:"p50_ms"`
	P90Ms      float64 `json:"p90_ms"`
	P99Ms      float64 `json:"p99_ms"`
	MaxMs      float64 `json:"max_ms"`

	latencies []time.Duration // sorted
}

// Failed reports whether any request of the phase failed.
func (r Result) Failed() bool { return r.Errors > 0 }

func (r *Result) summarize() {
	r.ElapsedSec = r.Elapsed.Seconds()
	if s := r.ElapsedSec; s > 0 {
		r.OpsPerSec = float64(len(r.latencies)) / s
		r.MiBPerSec = float64(r.Bytes) / (1 << 20) / s
	}
	r.P50Ms = ms(percentile(r.latencies, 0.50))
	r.P90Ms = ms(percentile(r.latencies, 0.90))
	r.P99Ms = ms(percentile(r.latencies, 0.99))
	r.MaxMs = ms(percentile(r.latencies, 1))
}

// percentile returns the nearest-rank q-quantile of sorted, 0 if empty.
func percentile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

const rowFormat = "%-7s %9s %7s %6s %10s %10s %9s %9s %9s %9s %9s\n"

func writeHeader(w io.Writer) {
	fmt.Fprintf(w, rowFormat, "phase", "ops", "errors", "bad", "elapsed", "ops/s", "MiB/s",
		"p50(ms)", "p90(ms)", "p99(ms)", "max(ms)")
}

func writeRow(w io.Writer, r Result) {
	fmt.Fprintf(w, rowFormat, r.Phase, fmt.Sprint(r.Ops), fmt.Sprint(r.Errors), fmt.Sprint(r.Mismatches),
		r.Elapsed.Round(time.Millisecond).String(),
		fmt.Sprintf("%.1f", r.OpsPerSec), fmt.Sprintf("%.2f", r.MiBPerSec),
		fmt.Sprintf("%.3f", r.P50Ms), fmt.Sprintf("%.3f", r.P90Ms),
		fmt.Sprintf("%.3f", r.P99Ms), fmt.Sprintf("%.3f", r.MaxMs))
}

func writeJSON(w io.Writer, r Result) {
	b, err := json.Marshal(r)
	if err != nil {
		panic(err) // Result has only plain fields
	}
	w.Write(append(b, '\n'))
}
