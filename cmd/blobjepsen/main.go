// Command blobjepsen runs a Jepsen-style fault campaign against the running
// docker-compose cluster (scripts/cluster.sh up; scripts/jepsen.sh runs the
// whole thing): concurrent clients on every node doing PUT, GET and DELETE
// of unique values on a few keys (internal/workload), a seeded schedule of
// faults alongside (internal/nemesis), then heal, convergence, a read of
// every key from every node, and the verdicts:
//
//   - the history is linearizable, per key (porcupine, internal/history);
//   - no acknowledged write is lost, and no read saw a value never written;
//   - the group converges: every node ready under one leader, every applied
//     index equal to the leader's commit index, repair backlog 0, and one
//     catalog digest (/cluster's "catalog") on every node.
//
// The report directory receives summary.txt, history.txt (one op a line)
// and history.html (porcupine's visualisation). Exit 0: every verdict
// passed; 1: a violation; 2: the campaign could not run.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/blobnode/blobnode/internal/history"
	"github.com/blobnode/blobnode/internal/nemesis"
	"github.com/blobnode/blobnode/internal/workload"
)

type options struct {
	duration       time.Duration
	nemeses        string
	seed           uint64
	report         string
	urls, services string
	project        string
	composeFile    string
	clients, keys  int
	requestTimeout time.Duration
	convergeWithin time.Duration
	checkTimeout   time.Duration
	think, backoff time.Duration
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "time", 3*time.Minute, "how long the clients and the nemesis run")
	flag.StringVar(&o.nemeses, "nemesis", "partition,kill,pause", "fault families to inject (comma-separated; empty: none)")
	flag.Uint64Var(&o.seed, "seed", 0, "seed of the fault schedule and the operation mix (0: from the clock)")
	flag.StringVar(&o.report, "report", "", "report directory [jepsen-report/<time>-seed<seed>]")
	flag.StringVar(&o.urls, "urls", "http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083", "the nodes' published API URLs")
	flag.StringVar(&o.services, "services", "node1,node2,node3", "the compose services (and Raft ids), parallel to -urls")
	flag.StringVar(&o.project, "project", envOr("BLOBNODE_PROJECT", "blobnode"), "compose project")
	flag.StringVar(&o.composeFile, "compose-file", "deploy/docker-compose.yml", "compose file")
	flag.IntVar(&o.clients, "clients", 9, "concurrent clients (client i talks to node i mod 3)")
	flag.IntVar(&o.keys, "keys", 12, "keys the clients share")
	flag.DurationVar(&o.think, "think", 20*time.Millisecond, "a client's pause between two operations (keeps the history checkable)")
	flag.DurationVar(&o.backoff, "backoff", time.Second, "a client's pause after an operation without a definite answer")
	flag.DurationVar(&o.requestTimeout, "request-timeout", 12*time.Second, "bound of one request; past it the op is unknown")
	flag.DurationVar(&o.convergeWithin, "converge-within", 2*time.Minute, "how long the healed group may take to converge")
	flag.DurationVar(&o.checkTimeout, "check-timeout", 3*time.Minute, "bound of porcupine's search")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "blobjepsen: unexpected arguments:", flag.Args())
		os.Exit(2)
	}
	ok, err := campaign(o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "blobjepsen:", err)
		os.Exit(2)
	}
	if !ok {
		os.Exit(1)
	}
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func campaign(o options) (bool, error) {
	fams, err := nemesis.ParseFamilies(o.nemeses)
	if err != nil {
		return false, err
	}
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	urls, services := strings.Split(o.urls, ","), strings.Split(o.services, ",")
	if len(urls) != len(services) {
		return false, fmt.Errorf("%d URLs for %d services", len(urls), len(services))
	}
	if o.report == "" {
		o.report = filepath.Join("jepsen-report", fmt.Sprintf("%s-seed%d", time.Now().UTC().Format("20060102T150405Z"), o.seed))
	}
	if err := os.MkdirAll(o.report, 0o755); err != nil {
		return false, err
	}
	c := &nemesis.Cluster{Project: o.project, ComposeFile: o.composeFile, Services: services, URLs: urls}

	// SIGINT/SIGTERM end the run early; the faults are undone either way.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	var keys []string
	for k := range o.keys {
		keys = append(keys, fmt.Sprintf("jepsen/k%d", k))
	}
	cfg := workload.Config{
		URLs: urls, Names: services, Clients: o.clients, Keys: keys,
		OpsPerClient: 1 << 20, Duration: o.duration,
		RequestTimeout: o.requestTimeout, Seed: o.seed,
		Think: o.think, Backoff: o.backoff,
	}
	plan := nemesis.Plan(o.seed, fams, o.duration, len(services))
	logf("seed %d, %v of clients, nemesis %v: %d faults planned; report %s", o.seed, o.duration, fams, len(plan), o.report)

	rec := history.NewRecorder()
	start := time.Now()
	evCh := make(chan []nemesis.Event, 1)
	go func() {
		evCh <- c.Play(ctx, start, plan, func(e nemesis.Event) { logf("fault %s", e) })
	}()
	if err := workload.Run(ctx, cfg, rec); err != nil {
		return false, err
	}
	events := <-evCh // Play healed what it did

	hctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	healErr := c.HealAll(hctx)
	cancel()
	if ctx.Err() != nil {
		return false, errors.Join(errors.New("interrupted"), healErr)
	}
	if healErr != nil {
		return false, fmt.Errorf("heal: %w", healErr)
	}
	logf("workload done (%d ops), faults healed; waiting for convergence (at most %v)", len(rec.Ops()), o.convergeWithin)
	conv := converge(ctx, c, o.convergeWithin)
	logf("convergence: %s", conv)

	fctx, cancel := context.WithTimeout(ctx, time.Minute)
	err = workload.FinalReads(fctx, cfg, rec)
	cancel()
	if err != nil {
		return false, fmt.Errorf("final reads: %w", err)
	}
	logf("checking the history")
	ops := rec.Ops()
	res, err := history.Check(ops, history.Options{Timeout: o.checkTimeout, VisualizeDir: o.report, AlwaysVisualize: true})
	if err != nil {
		return false, err
	}
	wantFinal := len(keys) * len(urls)

	var sum strings.Builder
	ok := writeSummary(&sum, o, fams, start, ops, events, res, conv, wantFinal)
	if err := os.WriteFile(filepath.Join(o.report, "summary.txt"), []byte(sum.String()), 0o644); err != nil {
		return false, err
	}
	fmt.Print(sum.String())
	return ok, nil
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "blobjepsen %s: %s\n", time.Now().UTC().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// convergence is the group's state once healed.
type convergence struct {
	ok      bool
	took    time.Duration
	why     string // what was still wrong at the deadline
	leader  string
	commit  uint64
	digest  string
	blobs   int
	catalog uint64 // applied index of the digests
	nodes   []string
}

func (c convergence) String() string {
	if !c.ok {
		return fmt.Sprintf("NOT converged after %v: %s", c.took.Round(time.Second), c.why)
	}
	return fmt.Sprintf("converged in %v: leader %s, every node applied %d, repair backlog 0, catalog digest %.16s… (%d blobs at index %d) on every node",
		c.took.Round(100*time.Millisecond), c.leader, c.commit, c.digest, c.blobs, c.catalog)
}

// converge polls the group until every node is ready, all name one leader
// that says it leads, every applied index equals the leader's commit
// index, no repair is pending, and every catalog digest agrees at one
// applied index; or until within has passed.
func converge(ctx context.Context, c *nemesis.Cluster, within time.Duration) convergence {
	start := time.Now()
	deadline := start.Add(within)
	var why string
	for time.Now().Before(deadline) && ctx.Err() == nil {
		conv, w := convergedNow(ctx, c)
		if w == "" {
			conv.ok, conv.took = true, time.Since(start)
			return conv
		}
		why = w
		sleepCtx(ctx, 500*time.Millisecond)
	}
	return convergence{took: time.Since(start), why: why}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func convergedNow(ctx context.Context, c *nemesis.Cluster) (convergence, string) {
	var conv convergence
	sts := make([]nemesis.Status, len(c.URLs))
	for i := range c.URLs {
		if !c.Ready(ctx, i) {
			return conv, c.Services[i] + " not ready"
		}
		s, err := c.Status(ctx, i)
		if err != nil {
			return conv, err.Error()
		}
		sts[i] = s
	}
	conv.leader = sts[0].Leader.ID
	li := -1
	for i, s := range sts {
		if s.Leader.ID == "" || s.Leader.ID != conv.leader {
			return conv, fmt.Sprintf("%s names leader %q, %s names %q", c.Services[i], s.Leader.ID, c.Services[0], conv.leader)
		}
		if c.Services[i] == conv.leader {
			li = i
		}
	}
	if li < 0 || sts[li].State != "Leader" {
		return conv, fmt.Sprintf("leader %q does not say it leads", conv.leader)
	}
	conv.commit = sts[li].CommitIndex
	conv.digest, conv.blobs, conv.catalog = sts[li].Catalog.Digest, sts[li].Catalog.Blobs, sts[li].Catalog.AppliedIndex
	for i, s := range sts {
		switch {
		case s.AppliedIndex != conv.commit:
			return conv, fmt.Sprintf("%s applied %d, leader's commit index %d", c.Services[i], s.AppliedIndex, conv.commit)
		case s.RepairBacklog != 0:
			return conv, fmt.Sprintf("%s repair backlog %d", c.Services[i], s.RepairBacklog)
		case s.Catalog.Error != "" || s.Catalog.Digest == "":
			return conv, fmt.Sprintf("%s has no catalog digest: %s", c.Services[i], s.Catalog.Error)
		case s.Catalog.AppliedIndex != conv.catalog || s.Catalog.Digest != conv.digest:
			return conv, fmt.Sprintf("%s catalog digest %.16s at index %d, leader's %.16s at %d",
				c.Services[i], s.Catalog.Digest, s.Catalog.AppliedIndex, conv.digest, conv.catalog)
		}
		conv.nodes = append(conv.nodes, fmt.Sprintf("%s %-8s term %d applied %d commit %d catalog %s (%d blobs at %d)",
			c.Services[i], s.State, s.Term, s.AppliedIndex, s.CommitIndex, s.Catalog.Digest, s.Catalog.Blobs, s.Catalog.AppliedIndex))
	}
	return conv, ""
}

// writeSummary writes the report and returns whether every verdict passed.
func writeSummary(w io.Writer, o options, fams []string, start time.Time, ops []history.Op,
	events []nemesis.Event, res *history.Result, conv convergence, wantFinal int) bool {
	ok := true
	verdict := func(pass bool, name, detail string) {
		s := "PASS"
		if !pass {
			s, ok = "FAIL", false
		}
		fmt.Fprintf(w, "  %s  %-26s %s\n", s, name, detail)
	}
	fmt.Fprintf(w, "blobjepsen campaign, seed %d\n", o.seed)
	fmt.Fprintf(w, "  replay: scripts/jepsen.sh --time %d --nemesis %s --seed %d\n", int(o.duration.Seconds()), strings.Join(fams, ","), o.seed)
	fmt.Fprintf(w, "  started %s, %v of clients (%d clients, %d keys, think %v, backoff %v, request timeout %v)\n",
		start.UTC().Format(time.RFC3339), o.duration, o.clients, o.keys, o.think, o.backoff, o.requestTimeout)
	fmt.Fprintf(w, "  report %s\n\n", o.report)

	fmt.Fprintf(w, "operations by outcome\n")
	var n [4][5]int
	final := 0
	for _, op := range ops {
		n[op.Kind][op.Outcome]++
		if op.Final {
			final++
		}
	}
	fmt.Fprintf(w, "  %-8s %7s %7s %9s %7s %8s %8s\n", "", "ok", "failed", "not-found", "unknown", "pending", "total")
	for _, k := range []history.Kind{history.Put, history.Get, history.Delete} {
		r := n[k]
		fmt.Fprintf(w, "  %-8s %7d %7d %9d %7d %8d %8d\n", k, r[history.OK], r[history.Failed], r[history.NotFound],
			r[history.Unknown], r[history.Pending], r[0]+r[1]+r[2]+r[3]+r[4])
	}
	fmt.Fprintf(w, "  %d ops in all, %d of them final reads\n\n", len(ops), final)

	fmt.Fprintf(w, "faults (%d; seconds since start: applied, healed)\n", len(events))
	faultErr := false
	for _, e := range events {
		fmt.Fprintf(w, "  %s\n", e)
		faultErr = faultErr || e.Err != ""
	}
	if len(events) == 0 {
		fmt.Fprintf(w, "  none\n")
	}

	fmt.Fprintf(w, "\nconvergence after healing\n")
	for _, l := range conv.nodes {
		fmt.Fprintf(w, "  %s\n", l)
	}

	fmt.Fprintf(w, "\nverdicts\n")
	verdict(res.Linearizable == porcupine.Ok, "linearizable (porcupine)", res.Summary)
	verdict(len(res.Lost) == 0, "no acknowledged write lost",
		fmt.Sprintf("%d lost, %d definite final reads of %d", len(res.Lost), res.FinalReads, wantFinal))
	for _, l := range res.Lost {
		fmt.Fprintf(w, "        lost: %s\n", l)
	}
	verdict(len(res.NeverWritten) == 0, "no read of unwritten value", fmt.Sprintf("%d such reads", len(res.NeverWritten)))
	for _, op := range res.NeverWritten {
		fmt.Fprintf(w, "        read: %v\n", op)
	}
	verdict(res.FinalReads == wantFinal, "every final read answered", fmt.Sprintf("%d of %d", res.FinalReads, wantFinal))
	verdict(conv.ok, "converged, one digest", conv.String())
	detail := fmt.Sprintf("%d faults", len(events))
	if faultErr {
		detail = "a fault command failed: see faults"
	}
	verdict(!faultErr, "every fault applied", detail)
	if ok {
		fmt.Fprintf(w, "\nVERDICT: PASS\n")
	} else {
		fmt.Fprintf(w, "\nVERDICT: FAIL\n")
	}
	fmt.Fprintf(w, "history %s, visualisation %s\n",
		filepath.Join(o.report, "history.txt"), filepath.Join(o.report, "history.html"))
	return ok
}
