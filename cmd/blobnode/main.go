// Command blobnode runs a blob storage node.
//
//	blobnode [flags]              serve (formats the volume on first start)
//	blobnode fsck -data-dir D     offline consistency check of a stopped node
//	blobnode health [-addr URL]   is the node at URL ready? exit 0 yes, 1 no
//
// Every flag has a BLOBNODE_* environment equivalent (-data-dir is
// BLOBNODE_DATA_DIR); a flag given on the command line wins.
//
// health asks GET /readyz of -addr (default http://127.0.0.1:8080,
// BLOBNODE_HEALTH_ADDR) within -timeout (3s, BLOBNODE_HEALTH_TIMEOUT) and
// prints one line: "ready", "not ready: 503 no Raft leader", or
// "unreachable: dial tcp 127.0.0.1:8080: connect: connection refused".
// It is pure Go, the healthcheck of the FROM scratch image in deploy/.
//
// Unless GOGC is set, the node runs Go's collector at GOGC=400 (see
// defaultGCPercent); GOGC and GOMEMLIMIT work as for any Go program.
//
// Logs go to stderr, one record a line, as JSON or as slog's key=value
// text (-log-format json|text; by default text when stderr is a terminal,
// JSON when it is not). Raft's own records are structured the same way,
// with logger=raft.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "fsck" {
		os.Exit(runFsck(os.Args[2:], os.Stdout))
	}
	if len(os.Args) > 1 && os.Args[1] == "health" {
		os.Exit(runHealth(os.Args[2:], os.Getenv, os.Stdout))
	}
	cfg, err := parseConfig(os.Args[1:], os.Getenv)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "blobnode:", err)
		os.Exit(2)
	}
	tuneGC(os.Getenv)
	log := newLogger(os.Stderr, cfg.logFormat, cfg.logLevel, isTerminal(os.Stderr))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, log); err != nil {
		log.Error("blobnode stopped", "err", err)
		os.Exit(1)
	}
}

type config struct {
	dataDir        string
	httpAddr       string
	raftAddr       string
	nodeID         string
	volumeSize     int64
	spageShift     uint
	lpageShift     uint
	maxBlobSize    int64
	reservationTTL time.Duration
	shutdownGrace  time.Duration
	logLevel       slog.Level
	logFormat      string // logJSON, logText or logAuto
	readOnly       bool   // fsck: look, change nothing
	pprofAddr      string
	zeroVolume     bool
	snapThreshold  uint64
	commitTimeout  time.Duration
	heartbeat      time.Duration
	segmentSize    int64
	snapInterval   time.Duration
	trailingLogs   uint64

	// Limits on clients (README "Limits").
	maxHeaderBytes       int64
	readHeaderTimeout    time.Duration
	idleTimeout          time.Duration
	bodyReadTimeout      time.Duration
	writeTimeout         time.Duration
	maxConcurrentUploads int
	// Security (see security.go and README's Security section).
	tokenFile      string // bearer tokens; "" turns authentication off
	allowUnauth    bool   // serve without tokens on a non-loopback address
	protectMetrics bool   // /metrics and /cluster need an admin token
	tlsCert        string // PEM certificate of the client API ("": plain HTTP)
	tlsKey         string
	peerTLSCert    string // PEM certificate for Raft traffic ("": plain TCP)
	peerTLSKey     string
	peerTLSCA      string // CA that signs every peer's certificate
	peerMTLS       bool   // peers must present a certificate signed by peerTLSCA
	// Cluster (README "A group of nodes").
	peers         string // initial voters: id=raftaddr,... ("": a one-node group)
	clusterSecret string // file holding the secret every peer shares
	advertiseAddr string // API address peers reach this node at ("": -http-addr)
	join          string // API URL of a member to join through
	scrubRate     int64  // bytes/s the scrubber re-verifies; 0: off
}

// parseConfig reads flags, falling back to BLOBNODE_* variables for flags
// not given.
func parseConfig(args []string, getenv func(string) string) (config, error) {
	var c config
	fs := flag.NewFlagSet("blobnode", flag.ContinueOnError)
	fs.StringVar(&c.dataDir, "data-dir", "./data", "directory holding the volume, catalog and Raft state")
	fs.StringVar(&c.httpAddr, "http-addr", "127.0.0.1:8080", "address of the HTTP API")
	fs.StringVar(&c.raftAddr, "raft-addr", "127.0.0.1:7080", "address for Raft traffic")
	fs.StringVar(&c.nodeID, "node-id", "node1", "this node's stable id in the Raft group")
	volumeSize := fs.String("volume-size", "1GiB", "size of the volume file, fixed when it is created")
	fs.UintVar(&c.spageShift, "spage-shift", 12, "log2 of the smallest page (at volume creation)")
	fs.UintVar(&c.lpageShift, "lpage-shift", 24, "log2 of the largest page (at volume creation)")
	maxBlob := fs.String("max-blob-size", "5GiB", "largest accepted blob")
	fs.DurationVar(&c.reservationTTL, "reservation-ttl", time.Hour, "how long an upload may take before its space is reclaimed")
	fs.DurationVar(&c.shutdownGrace, "shutdown-grace", 30*time.Second, "how long SIGTERM waits for in-flight requests")
	fs.BoolVar(&c.zeroVolume, "zero-volume", false, "at creation, write zeros over the whole volume (slower start, faster small durable writes)")
	fs.Uint64Var(&c.snapThreshold, "snapshot-threshold", 8192, "Raft entries since the last snapshot that trigger a new one")
	fs.DurationVar(&c.snapInterval, "snapshot-interval", 30*time.Second, "how often Raft checks whether to snapshot")
	fs.Uint64Var(&c.trailingLogs, "trailing-logs", 10240, "Raft entries kept behind a snapshot for slow followers")
	fs.DurationVar(&c.heartbeat, "raft-heartbeat-timeout", 500*time.Millisecond, "how long a follower hears nothing from the leader before it campaigns: a killed leader's writes resume within about twice this (a sole voter never waits for it)")
	fs.DurationVar(&c.commitTimeout, "raft-commit-timeout", 50*time.Millisecond, "how long an idle leader waits before telling followers the commit index (shorter: faster writes through followers at low load, more idle CPU)")
	segmentSize := fs.String("raft-log-segment-size", "64MiB", "size of the Raft log's segment files; the log is truncated behind snapshots by whole segments")
	maxHeader := fs.String("max-header-bytes", "64KiB", "largest request header block; larger requests get 431")
	fs.DurationVar(&c.readHeaderTimeout, "read-header-timeout", 10*time.Second, "time a client has to send a request's headers")
	fs.DurationVar(&c.idleTimeout, "idle-timeout", 2*time.Minute, "how long an idle keep-alive connection is kept")
	fs.DurationVar(&c.bodyReadTimeout, "body-read-timeout", time.Minute, "longest silence within an upload's body before the upload fails (0: none)")
	fs.DurationVar(&c.writeTimeout, "write-timeout", time.Minute, "longest a response write may block on a client that reads nothing (0: none)")
	fs.IntVar(&c.maxConcurrentUploads, "max-concurrent-uploads", 64, "PUTs streaming at once; more get 503 with Retry-After")
	fs.StringVar(&c.pprofAddr, "pprof-addr", "", "serve net/http/pprof on this address (off when empty)")
	fs.StringVar(&c.tokenFile, "token-file", "", "file of bearer tokens, one \"<read|write|admin> <token>\" per line (empty: no authentication)")
	fs.BoolVar(&c.allowUnauth, "allow-unauthenticated", false, "serve the API without -token-file, Raft without -peer-mtls, or pprof on a non-loopback address")
	fs.BoolVar(&c.protectMetrics, "protect-metrics", false, "require an admin token for /metrics and /cluster")
	fs.StringVar(&c.tlsCert, "tls-cert", "", "PEM certificate (chain) of the HTTP API; with -tls-key serves HTTPS")
	fs.StringVar(&c.tlsKey, "tls-key", "", "PEM private key of -tls-cert")
	fs.StringVar(&c.peerTLSCert, "peer-tls-cert", "", "PEM certificate for Raft traffic; with -peer-tls-key and -peer-tls-ca runs Raft over TLS")
	fs.StringVar(&c.peerTLSKey, "peer-tls-key", "", "PEM private key of -peer-tls-cert")
	fs.StringVar(&c.peerTLSCA, "peer-tls-ca", "", "PEM CA certificate(s) that peers' certificates must chain to")
	fs.BoolVar(&c.peerMTLS, "peer-mtls", false, "mutual TLS for Raft: refuse peers without a certificate signed by -peer-tls-ca")
	fs.StringVar(&c.peers, "peers", "", "initial voters of a new group, id=raft-address,... identical on every node (empty: a one-node group)")
	fs.StringVar(&c.clusterSecret, "cluster-secret-file", "", "file holding the secret every node of the group shares; required with peers")
	fs.StringVar(&c.advertiseAddr, "advertise-addr", "", "host:port at which peers reach this node's API (default: -http-addr)")
	fs.StringVar(&c.join, "join", "", "API URL of a group member: ask the group to add this node as a voter")
	scrubRate := fs.String("scrub-rate", "4MiB", "bytes per second the scrubber re-verifies stored blobs in a group (0: off)")
	level := fs.String("log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.logFormat, "log-format", logAuto, "json, text, or auto: text when stderr is a terminal, json otherwise")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var envErr error
	fs.VisitAll(func(f *flag.Flag) {
		env := "BLOBNODE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" && !set[f.Name] {
			if err := fs.Set(f.Name, v); err != nil && envErr == nil {
				envErr = fmt.Errorf("%s=%q: %w", env, v, err)
			}
		}
	})
	if envErr != nil {
		return c, envErr
	}
	var err error
	if c.volumeSize, err = parseSize(*volumeSize); err != nil {
		return c, fmt.Errorf("-volume-size: %w", err)
	}
	if c.maxBlobSize, err = parseSize(*maxBlob); err != nil {
		return c, fmt.Errorf("-max-blob-size: %w", err)
	}
	if *scrubRate != "0" {
		if c.scrubRate, err = parseSize(*scrubRate); err != nil {
			return c, fmt.Errorf("-scrub-rate: %w", err)
		}
	}
	if c.heartbeat < 10*time.Millisecond {
		return c, fmt.Errorf("-raft-heartbeat-timeout %v: want at least 10ms", c.heartbeat)
	}
	if c.segmentSize, err = parseSize(*segmentSize); err != nil || c.segmentSize < 64<<10 || c.segmentSize > 1<<30 {
		return c, fmt.Errorf("-raft-log-segment-size %q: want 64KiB to 1GiB (%v)", *segmentSize, err)
	}
	if c.maxHeaderBytes, err = parseSize(*maxHeader); err != nil {
		return c, fmt.Errorf("-max-header-bytes: %w", err)
	}
	if c.maxHeaderBytes > 1<<30 {
		return c, fmt.Errorf("-max-header-bytes: %d is more than 1GiB", c.maxHeaderBytes)
	}
	if c.maxConcurrentUploads < 1 {
		return c, fmt.Errorf("-max-concurrent-uploads: %d, want at least 1", c.maxConcurrentUploads)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
		zero bool // 0 means "no bound"
	}{
		{"-read-header-timeout", c.readHeaderTimeout, false},
		{"-idle-timeout", c.idleTimeout, false},
		{"-body-read-timeout", c.bodyReadTimeout, true},
		{"-write-timeout", c.writeTimeout, true},
	} {
		if d.v < 0 || (d.v == 0 && !d.zero) {
			return c, fmt.Errorf("%s: %v, want a positive duration", d.name, d.v)
		}
	}
	if err := c.logLevel.UnmarshalText([]byte(*level)); err != nil {
		return c, fmt.Errorf("-log-level: %w", err)
	}
	if err := checkLogFormat(c.logFormat); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	if err := c.checkSecurity(); err != nil {
		return c, err
	}
	return c, nil
}

// parseSize accepts a byte count with an optional KiB/MiB/GiB/TiB suffix
// (K/M/G/T and KB/MB/GB/TB are taken as binary too).
func parseSize(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
		{"TB", 1 << 40}, {"GB", 1 << 30}, {"MB", 1 << 20}, {"KB", 1 << 10},
		{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	var n int64
	if _, err := fmt.Sscanf(s, "%d", &n); err != nil || n <= 0 || fmt.Sprint(n) != s {
		return 0, fmt.Errorf("%q is not a positive size", s)
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return n * mult, nil
}
