// Package nemesis injects faults into the docker-compose cluster of
// deploy/docker-compose.yml, driving the docker and docker-compose 1.29
// CLIs (never `docker compose`) and iptables through os/exec.
//
// Faults:
//
//   - Partitions cut links with iptables rules in a container's network
//     namespace, entered from the host:
//     nsenter --net=/proc/PID/ns/net iptables -w -A INPUT -s IP -j DROP
//     (and OUTPUT -d IP). Only links between nodes are cut: the host's
//     clients reach every node through the network's gateway, which no
//     rule names, so an isolated node still answers clients (and must
//     refuse or delay what it cannot do alone). Heal deletes exactly the
//     rules this package added, in the namespace it added them to; a
//     namespace that is gone (its container was killed or restarted) took
//     its rules with it.
//   - Kill sends SIGKILL (docker kill -s KILL); Restart starts the
//     container again (docker start).
//   - Pause freezes every process of a container (docker pause); Resume
//     thaws it (docker unpause).
//
// Every command runs with a bound of its own (CommandTimeout).
package nemesis

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Runner runs a command and returns its standard output. Tests replace it.
type Runner func(ctx context.Context, name string, args ...string) (string, error)

// Exec is the Runner of the real commands.
func Exec(ctx context.Context, name string, args ...string) (string, error) {
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Cluster is the compose cluster under test.
type Cluster struct {
	Project     string   // compose project, e.g. "blobnode"
	ComposeFile string   // path of deploy/docker-compose.yml
	Services    []string // node1, node2, node3: compose services, also the Raft node ids
	URLs        []string // published API URL of each service, parallel to Services
	// Run runs the commands [Exec]; CommandTimeout bounds each [30s].
	Run            Runner
	CommandTimeout time.Duration
	// HTTP asks /cluster [a client with a 3s timeout].
	HTTP *http.Client

	mu     sync.Mutex
	ids    map[string]string // service -> container id
	rules  []rule            // rules in force, in the order added
	paused map[int]bool
	killed map[int]bool
}

// rule is one iptables rule added in the network namespace of a
// container's process pid.
type rule struct {
	node int
	pid  string
	args []string // after -A/-D: chain and match, e.g. INPUT -s IP -j DROP
}

func (c *Cluster) run(ctx context.Context, name string, args ...string) (string, error) {
	run := c.Run
	if run == nil {
		run = Exec
	}
	d := c.CommandTimeout
	if d <= 0 {
		d = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return run(ctx, name, args...)
}

// container returns the container id of node i (docker-compose ps -q).
func (c *Cluster) container(ctx context.Context, i int) (string, error) {
	c.mu.Lock()
	id, ok := c.ids[c.Services[i]]
	c.mu.Unlock()
	if ok {
		return id, nil
	}
	out, err := c.run(ctx, "docker-compose", "-p", c.Project, "-f", c.ComposeFile, "ps", "-q", c.Services[i])
	if err != nil {
		return "", err
	}
	id = strings.TrimSpace(out)
	if id == "" || strings.ContainsAny(id, " \n") {
		return "", fmt.Errorf("nemesis: no single container for service %s: %q", c.Services[i], out)
	}
	c.mu.Lock()
	if c.ids == nil {
		c.ids = make(map[string]string)
	}
	c.ids[c.Services[i]] = id
	c.mu.Unlock()
	return id, nil
}

// inspect returns node i's container pid and its IP on the compose network.
func (c *Cluster) inspect(ctx context.Context, i int) (pid, ip string, err error) {
	id, err := c.container(ctx, i)
	if err != nil {
		return "", "", err
	}
	out, err := c.run(ctx, "docker", "inspect", "-f",
		"{{.State.Pid}} {{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}", id)
	if err != nil {
		return "", "", err
	}
	f := strings.Fields(out)
	if len(f) != 2 || f[0] == "0" {
		return "", "", fmt.Errorf("nemesis: %s is not running on one network: %q", c.Services[i], strings.TrimSpace(out))
	}
	return f[0], f[1], nil
}

// Cut drops every packet between a and b, both ways, in both namespaces.
func (c *Cluster) Cut(ctx context.Context, a, b int) error {
	pa, ipa, err := c.inspect(ctx, a)
	if err != nil {
		return err
	}
	pb, ipb, err := c.inspect(ctx, b)
	if err != nil {
		return err
	}
	for _, r := range []rule{
		{a, pa, []string{"INPUT", "-s", ipb, "-j", "DROP"}},
		{a, pa, []string{"OUTPUT", "-d", ipb, "-j", "DROP"}},
		{b, pb, []string{"INPUT", "-s", ipa, "-j", "DROP"}},
		{b, pb, []string{"OUTPUT", "-d", ipa, "-j", "DROP"}},
	} {
		if err := c.iptables(ctx, r, "-A"); err != nil {
			return err
		}
		c.mu.Lock()
		c.rules = append(c.rules, r)
		c.mu.Unlock()
	}
	return nil
}

func (c *Cluster) iptables(ctx context.Context, r rule, op string) error {
	args := append([]string{"--net=/proc/" + r.pid + "/ns/net", "iptables", "-w", op}, r.args...)
	_, err := c.run(ctx, "nsenter", args...)
	return err
}

// Isolate cuts node i from every other node.
func (c *Cluster) Isolate(ctx context.Context, i int) error {
	for j := range c.Services {
		if j != i {
			if err := c.Cut(ctx, i, j); err != nil {
				return err
			}
		}
	}
	return nil
}

// Bridge cuts every link between the two halves around node mid: mid sees
// every node, the others see only mid and their own half.
func (c *Cluster) Bridge(ctx context.Context, mid int) error {
	var left, right []int
	for j := range c.Services {
		switch {
		case j == mid:
		case len(left) <= len(right):
			left = append(left, j)
		default:
			right = append(right, j)
		}
	}
	for _, a := range left {
		for _, b := range right {
			if err := c.Cut(ctx, a, b); err != nil {
				return err
			}
		}
	}
	return nil
}

// Rules returns how many rules are in force.
func (c *Cluster) Rules() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.rules)
}

// Heal deletes every rule Cut added. A rule whose namespace is gone (the
// container's process is another one now) went with it and is forgotten.
func (c *Cluster) Heal(ctx context.Context) error {
	c.mu.Lock()
	rules := c.rules
	c.rules = nil
	c.mu.Unlock()
	var errs []error
	var kept []rule
	for k := len(rules) - 1; k >= 0; k-- {
		r := rules[k]
		pid, _, err := c.inspect(ctx, r.node)
		if err != nil || pid != r.pid {
			continue // the namespace of the rule is gone
		}
		if err := c.iptables(ctx, r, "-D"); err != nil {
			errs = append(errs, err)
			kept = append(kept, r)
		}
	}
	if len(kept) > 0 {
		c.mu.Lock()
		c.rules = append(c.rules, kept...)
		c.mu.Unlock()
	}
	return errors.Join(errs...)
}

// Kill sends SIGKILL to node i's container.
func (c *Cluster) Kill(ctx context.Context, i int) error {
	id, err := c.container(ctx, i)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.killed == nil {
		c.killed = make(map[int]bool)
	}
	c.killed[i] = true
	c.mu.Unlock()
	_, err = c.run(ctx, "docker", "kill", "-s", "KILL", id)
	return err
}

// Restart starts node i's container again (a no-op if it runs).
func (c *Cluster) Restart(ctx context.Context, i int) error {
	id, err := c.container(ctx, i)
	if err != nil {
		return err
	}
	if _, err := c.run(ctx, "docker", "start", id); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.killed, i)
	c.mu.Unlock()
	return nil
}

// Pause freezes node i's container.
func (c *Cluster) Pause(ctx context.Context, i int) error {
	id, err := c.container(ctx, i)
	if err != nil {
		return err
	}
	c.mu.Lock()
	if c.paused == nil {
		c.paused = make(map[int]bool)
	}
	c.paused[i] = true
	c.mu.Unlock()
	_, err = c.run(ctx, "docker", "pause", id)
	return err
}

// Resume thaws node i's container.
func (c *Cluster) Resume(ctx context.Context, i int) error {
	id, err := c.container(ctx, i)
	if err != nil {
		return err
	}
	if _, err := c.run(ctx, "docker", "unpause", id); err != nil {
		return err
	}
	c.mu.Lock()
	delete(c.paused, i)
	c.mu.Unlock()
	return nil
}

// HealAll undoes every fault in force: resumes paused nodes, restarts
// killed ones, then deletes every rule.
func (c *Cluster) HealAll(ctx context.Context) error {
	c.mu.Lock()
	var paused, killed []int
	for i := range c.paused {
		paused = append(paused, i)
	}
	for i := range c.killed {
		killed = append(killed, i)
	}
	c.mu.Unlock()
	var errs []error
	for _, i := range paused {
		errs = append(errs, c.Resume(ctx, i))
	}
	for _, i := range killed {
		errs = append(errs, c.Restart(ctx, i))
	}
	errs = append(errs, c.Heal(ctx))
	return errors.Join(errs...)
}

// Status is the part of a node's GET /cluster the campaign reads.
type Status struct {
	State  string `json:"state"`
	Leader struct {
		ID string `json:"id"`
	} `json:"leader"`
	Term          uint64 `json:"term"`
	CommitIndex   uint64 `json:"commit_index"`
	AppliedIndex  uint64 `json:"applied_index"`
	RepairBacklog int64  `json:"repair_backlog"`
	Catalog       struct {
		Digest       string `json:"digest"`
		Blobs        int    `json:"blobs"`
		AppliedIndex uint64 `json:"applied_index"`
		Error        string `json:"error"`
	} `json:"catalog"`
}

// Status asks node i's /cluster.
func (c *Cluster) Status(ctx context.Context, i int) (Status, error) {
	var s Status
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 3 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.URLs[i], "/")+"/cluster", nil)
	if err != nil {
		return s, err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, fmt.Errorf("GET /cluster of %s: %s", c.Services[i], resp.Status)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// Ready reports whether node i's /readyz answers 200.
func (c *Cluster) Ready(ctx context.Context, i int) bool {
	hc := c.HTTP
	if hc == nil {
		hc = &http.Client{Timeout: 3 * time.Second}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(c.URLs[i], "/")+"/readyz", nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// Leader returns the index of the node that some node names leader and
// that says it leads, or -1 if none does now.
func (c *Cluster) Leader(ctx context.Context) int {
	for i := range c.URLs {
		s, err := c.Status(ctx, i)
		if err != nil || s.Leader.ID == "" {
			continue
		}
		for j, name := range c.Services {
			if name != s.Leader.ID {
				continue
			}
			if ls, err := c.Status(ctx, j); err == nil && ls.State == "Leader" {
				return j
			}
		}
	}
	return -1
}
