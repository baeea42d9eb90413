package nemesis

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// The nemesis families a campaign enables (--nemesis partition,kill,pause)
// and the faults of each.
var families = map[string][]string{
	"partition": {"isolate", "isolate-leader", "bridge"},
	"kill":      {"kill", "kill-leader"},
	"pause":     {"pause", "pause-leader"},
}

// Families are the names ParseFamilies accepts.
func Families() []string { return []string{"partition", "kill", "pause"} }

// ParseFamilies parses a comma-separated list of families.
func ParseFamilies(s string) ([]string, error) {
	var out []string
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if _, ok := families[f]; !ok {
			return nil, fmt.Errorf("nemesis: unknown fault family %q (want some of %s)", f, strings.Join(Families(), ","))
		}
		if !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	return out, nil
}

// Fault is one step of a schedule: a fault applied at Start (since the
// campaign began), held for Hold, then undone.
type Fault struct {
	Kind  string // isolate, isolate-leader, bridge, kill, kill-leader, pause, pause-leader
	Node  int    // the node, for a fault not aimed at the leader
	Start time.Duration
	Hold  time.Duration
}

// Schedule bounds.
const (
	warmup   = 5 * time.Second // no fault before
	cooldown = 5 * time.Second // no fault held past total minus this
	maxSteps = 10000
)

// Plan draws a schedule from seed: one fault at a time, each among the
// enabled families' faults, separated by 3-8 s of calm and held 5-15 s,
// all within total. The same seed, families, total and node count give
// the same plan.
func Plan(seed uint64, enabled []string, total time.Duration, nodes int) []Fault {
	var kinds []string
	for _, f := range Families() {
		if slices.Contains(enabled, f) {
			kinds = append(kinds, families[f]...)
		}
	}
	if len(kinds) == 0 || nodes < 1 {
		return nil
	}
	rng := rand.New(rand.NewPCG(seed, 0x6e656d65736973))
	dur := func(lo, hi time.Duration) time.Duration {
		return lo + time.Duration(rng.Int64N(int64(hi-lo)))
	}
	var plan []Fault
	t := warmup
	for len(plan) < maxSteps {
		t += dur(3*time.Second, 8*time.Second)
		f := Fault{Kind: kinds[rng.IntN(len(kinds))], Node: rng.IntN(nodes), Start: t, Hold: dur(5*time.Second, 15*time.Second)}
		if t+f.Hold > total-cooldown {
			break
		}
		plan = append(plan, f)
		t += f.Hold
	}
	return plan
}

// Event is what happened to one Fault.
type Event struct {
	Fault
	Target        string        // the service it hit
	Began, Healed time.Duration // since the campaign began
	Err           string        // a command that failed, if any
}

func (e Event) String() string {
	s := fmt.Sprintf("%8.1fs %8.1fs  %-15s %s", e.Began.Seconds(), e.Healed.Seconds(), e.Kind, e.Target)
	if e.Err != "" {
		s += "  error: " + e.Err
	}
	return s
}

// Play applies plan against the cluster, each fault at its Start since
// start, and undoes each after its Hold. It returns when the plan is done
// or ctx ends, with every fault it applied undone (HealAll), and reports
// each event to report (if not nil) as it ends.
func (c *Cluster) Play(ctx context.Context, start time.Time, plan []Fault, report func(Event)) []Event {
	var events []Event
	defer func() {
		hctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		_ = c.HealAll(hctx)
	}()
	for _, f := range plan {
		if !sleepUntil(ctx, start.Add(f.Start)) {
			break
		}
		e := Event{Fault: f, Began: time.Since(start)}
		node := f.Node
		if strings.HasSuffix(f.Kind, "-leader") {
			node = c.Leader(ctx)
		}
		var undo func(context.Context) error
		var err error
		if node < 0 {
			err = fmt.Errorf("no leader")
		} else {
			e.Target = c.Services[node]
			switch strings.TrimSuffix(f.Kind, "-leader") {
			case "isolate":
				err, undo = c.Isolate(ctx, node), c.Heal
			case "bridge":
				err, undo = c.Bridge(ctx, node), c.Heal
			case "kill":
				err = c.Kill(ctx, node)
				undo = func(ctx context.Context) error { return c.Restart(ctx, node) }
			case "pause":
				err = c.Pause(ctx, node)
				undo = func(ctx context.Context) error { return c.Resume(ctx, node) }
			}
		}
		sleepUntil(ctx, start.Add(f.Start+f.Hold))
		if undo != nil {
			uctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			if uerr := undo(uctx); uerr != nil && err == nil {
				err = uerr
			}
			cancel()
		}
		if err != nil {
			e.Err = err.Error()
		}
		e.Healed = time.Since(start)
		events = append(events, e)
		if report != nil {
			report(e)
		}
	}
	return events
}

// sleepUntil waits until t or ctx's end; false if ctx ended.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return true
	case <-ctx.Done():
		return false
	}
}
