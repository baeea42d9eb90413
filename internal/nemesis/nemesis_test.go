package nemesis

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

// fake answers the commands of three running containers c1..c3 with IPs
// 10.0.0.1..3 and pids 101..103, and records every command.
type fake struct {
	mu   sync.Mutex
	cmds []string
	pid  map[string]string
}

func (f *fake) run(_ context.Context, name string, args ...string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cmd := name + " " + strings.Join(args, " ")
	f.cmds = append(f.cmds, cmd)
	switch {
	case name == "docker-compose":
		svc := args[len(args)-1]
		return "c" + strings.TrimPrefix(svc, "node") + "\n", nil
	case name == "docker" && args[0] == "inspect":
		c := args[len(args)-1]
		n := strings.TrimPrefix(c, "c")
		pid := f.pid[c]
		if pid == "" {
			pid = "10" + n
		}
		return pid + " 10.0.0." + n + " \n", nil
	}
	return "", nil
}

func (f *fake) iptables() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.cmds {
		if strings.HasPrefix(c, "nsenter") {
			out = append(out, strings.TrimPrefix(c, "nsenter --net=/proc/"))
		}
	}
	f.cmds = nil
	return out
}

func newFake() (*Cluster, *fake) {
	f := &fake{pid: map[string]string{}}
	return &Cluster{Project: "p", ComposeFile: "f.yml", Services: []string{"node1", "node2", "node3"},
		URLs: []string{"u1", "u2", "u3"}, Run: f.run}, f
}

func TestIsolateAndHealDeleteExactlyTheRules(t *testing.T) {
	c, f := newFake()
	ctx := context.Background()
	if err := c.Isolate(ctx, 0); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"101/ns/net iptables -w -A INPUT -s 10.0.0.2 -j DROP",
		"101/ns/net iptables -w -A OUTPUT -d 10.0.0.2 -j DROP",
		"102/ns/net iptables -w -A INPUT -s 10.0.0.1 -j DROP",
		"102/ns/net iptables -w -A OUTPUT -d 10.0.0.1 -j DROP",
		"101/ns/net iptables -w -A INPUT -s 10.0.0.3 -j DROP",
		"101/ns/net iptables -w -A OUTPUT -d 10.0.0.3 -j DROP",
		"103/ns/net iptables -w -A INPUT -s 10.0.0.1 -j DROP",
		"103/ns/net iptables -w -A OUTPUT -d 10.0.0.1 -j DROP",
	}
	if got := f.iptables(); !reflect.DeepEqual(got, want) {
		t.Fatalf("isolate:\n%s", strings.Join(got, "\n"))
	}
	// node3 restarted meanwhile: its namespace, and its rules, are gone.
	f.pid["c3"] = "999"
	if err := c.Heal(ctx); err != nil {
		t.Fatal(err)
	}
	got := f.iptables()
	var wantDel []string
	for k := len(want) - 1; k >= 0; k-- {
		if !strings.HasPrefix(want[k], "103/") {
			wantDel = append(wantDel, strings.Replace(want[k], " -A ", " -D ", 1))
		}
	}
	if !reflect.DeepEqual(got, wantDel) {
		t.Fatalf("heal:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(wantDel, "\n"))
	}
	if c.Rules() != 0 {
		t.Fatalf("%d rules left", c.Rules())
	}
}

func TestBridge(t *testing.T) {
	c, f := newFake()
	if err := c.Bridge(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(f.iptables(), "\n")
	// node1 and node3 lose each other; node2 keeps both.
	if strings.Contains(got, "10.0.0.2") || strings.Contains(got, "102/") || c.Rules() != 4 {
		t.Fatalf("bridge around node2:\n%s", got)
	}
}

func TestHealAllUndoesEverything(t *testing.T) {
	c, f := newFake()
	ctx := context.Background()
	for _, err := range []error{c.Kill(ctx, 0), c.Pause(ctx, 1), c.Cut(ctx, 1, 2)} {
		if err != nil {
			t.Fatal(err)
		}
	}
	f.cmds = nil
	if err := c.HealAll(ctx); err != nil {
		t.Fatal(err)
	}
	cmds := strings.Join(f.cmds, "\n")
	for _, want := range []string{"docker unpause c2", "docker start c1", "-D INPUT -s 10.0.0.3"} {
		if !strings.Contains(cmds, want) {
			t.Errorf("HealAll did not %q:\n%s", want, cmds)
		}
	}
	f.cmds = nil
	if err := c.HealAll(ctx); err != nil || len(f.cmds) != 0 {
		t.Fatalf("a second HealAll: %v, %q", err, f.cmds)
	}
}

func TestPlan(t *testing.T) {
	all := []string{"partition", "kill", "pause"}
	a, b := Plan(7, all, 3*time.Minute, 3), Plan(7, all, 3*time.Minute, 3)
	if !reflect.DeepEqual(a, b) || len(a) < 5 {
		t.Fatalf("plans of one seed differ or are short: %v", a)
	}
	if reflect.DeepEqual(a, Plan(8, all, 3*time.Minute, 3)) {
		t.Fatal("two seeds, one plan")
	}
	end := time.Duration(0)
	for _, f := range a {
		if f.Start < end+3*time.Second || f.Hold < 5*time.Second || f.Start+f.Hold > 3*time.Minute-cooldown {
			t.Fatalf("bad step %+v after %v", f, end)
		}
		end = f.Start + f.Hold
	}
	for _, f := range Plan(1, []string{"pause"}, 3*time.Minute, 3) {
		if !strings.HasPrefix(f.Kind, "pause") {
			t.Fatalf("pause only, got %s", f.Kind)
		}
	}
	if p := Plan(1, all, 10*time.Second, 3); len(p) != 0 {
		t.Fatalf("no room for a fault, got %v", p)
	}
	if _, err := ParseFamilies("partition,nope"); err == nil {
		t.Fatal("unknown family accepted")
	}
	fs, err := ParseFamilies("kill, partition,kill")
	if err != nil || fmt.Sprint(fs) != "[kill partition]" {
		t.Fatalf("%v %v", fs, err)
	}
}
