package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Defaults of `blobnode health`.
const (
	defaultHealthAddr    = "http://127.0.0.1:8080"
	defaultHealthTimeout = 3 * time.Second
	// maxHealthBody bounds what is read of an answer.
	maxHealthBody = 4 << 10
)

// runHealth implements `blobnode health [-addr URL] [-timeout D]`: it asks
// the node's GET /readyz once, prints one line saying what it found
// ("ready", "not ready: 503 no Raft leader", "unreachable: dial tcp
// 127.0.0.1:8080: connect: connection refused") and returns the exit
// status: 0 only when the node answered 200, 1 otherwise, bad usage
// included (a container healthcheck takes 0 as healthy, 1 as unhealthy
// and reserves 2). It needs nothing but the binary (no shell, no curl),
// so it serves as the healthcheck of a FROM scratch image.
//
// -addr (BLOBNODE_HEALTH_ADDR) is the API's base URL, or a bare
// host:port taken as http://; -timeout (BLOBNODE_HEALTH_TIMEOUT) bounds
// the whole exchange. A flag on the command line wins over its variable.
func runHealth(args []string, getenv func(string) string, out io.Writer) int {
	fs := flag.NewFlagSet("blobnode health", flag.ContinueOnError)
	fs.SetOutput(out)
	addr := fs.String("addr", defaultHealthAddr, "base URL of the node's API (or host:port)")
	timeout := fs.Duration("timeout", defaultHealthTimeout, "how long to wait for the answer")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 1
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, name := range []string{"addr", "timeout"} {
		env := "BLOBNODE_HEALTH_" + strings.ToUpper(name)
		if v := getenv(env); v != "" && !set[name] {
			if err := fs.Set(name, v); err != nil {
				fmt.Fprintf(out, "blobnode health: %s=%q: %v\n", env, v, err)
				return 1
			}
		}
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(out, "blobnode health: unexpected argument %q\n", fs.Arg(0))
		return 1
	}
	if *timeout <= 0 {
		fmt.Fprintf(out, "blobnode health: -timeout %v, want a positive duration\n", *timeout)
		return 1
	}
	ready, line := checkHealth(context.Background(), *addr, *timeout)
	fmt.Fprintln(out, line)
	if !ready {
		return 1
	}
	return 0
}

// checkHealth asks base's /readyz within timeout and says what it found.
func checkHealth(ctx context.Context, base string, timeout time.Duration) (bool, string) {
	u, err := readyzURL(base)
	if err != nil {
		return false, "bad address: " + err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return false, "bad address: " + err.Error()
	}
	client := &http.Client{
		Transport: &http.Transport{
			Proxy:             nil, // a health check asks the node itself, never a proxy
			DialContext:       (&net.Dialer{}).DialContext,
			DisableKeepAlives: true,
		},
		// Redirects would be a misconfiguration; report the answer as it is.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // "Get \"http://...\": " says nothing the operator does not know
		}
		if errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return false, fmt.Sprintf("unreachable: no answer within %v", timeout)
		}
		return false, "unreachable: " + err.Error()
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxHealthBody))
	if err != nil && ctx.Err() != nil {
		return false, fmt.Sprintf("unreachable: no complete answer within %v", timeout)
	}
	if resp.StatusCode == http.StatusOK {
		return true, "ready"
	}
	return false, fmt.Sprintf("not ready: %d %s", resp.StatusCode, notReadyReason(resp.Status, body))
}

// readyzURL is base's /readyz; a base without a scheme is http://.
func readyzURL(base string) (string, error) {
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	u, err := url.Parse(base)
	if err != nil {
		return "", err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return "", fmt.Errorf("%q: scheme %q, want http or https", base, u.Scheme)
	}
	if u.Host == "" {
		return "", fmt.Errorf("%q: no host", base)
	}
	u.Path = strings.TrimSuffix(u.Path, "/") + "/readyz"
	return u.String(), nil
}

// notReadyReason is the reason in a refusal: the message of blobnode's
// JSON error without its "not ready: " prefix, else the body's first line,
// else the status text.
func notReadyReason(status string, body []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		return strings.TrimPrefix(e.Error.Message, "not ready: ")
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(body)), "\n")
	if line = strings.TrimSpace(line); line != "" {
		if len(line) > 200 {
			line = line[:200] + "..."
		}
		return line
	}
	_, text, _ := strings.Cut(status, " ")
	return text
}
