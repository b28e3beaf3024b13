package bench

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// NewCommand returns the `lockd bench` command: flags → Config → Run, one
// run per --clients value. The human summary and then one JSON line per
// run go to stdout (--json: only the JSON lines; the summary goes to
// stderr with the progress).
func NewCommand() *cobra.Command {
	var (
		cfg       Config
		endpoints string
		clients   string
		duration  string
		warmup    string
		jsonOnly  bool
		quiet     bool
	)
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load generator: put, lock, elect, read, keepalive, watch and failover figures",
		Long: `Put load on a cell through the Go SDK and print ops/s, p50/p99/max latency and
errors, as text and as one JSON line per run with the fields of the etcd and
ZooKeeper reference harnesses (system, workload, clients, keys, duration, ops,
ops_per_s, p50_ms, p99_ms, max_ms, errors; failover: system, workload, kills,
p50_ms, p99_ms, max_ms, min_ms, errors).

Workloads: put (a fresh node per op, 64-byte value), lock (acquire+release;
--keys locks, default = clients: uncontended; 1: contended), elect (handover
between --clients candidates), read and read-stale (Get, linearizable or
stale), keepalive (--sessions live sessions; KeepAlive latency, log entries
committed meanwhile, leader CPU), watch (--clients watchers on one node, one
writer every --interval; delivery latency), failover (SIGKILL the leader of a
local cell, time to the first committed write, --kills rounds; the cell is
--cell-dir's, as 'lockd cell --dir' runs it, or else one the bench starts on
--base-port and stops at the end).

Examples:
  lockd bench --workload put --clients 1,4,16,64 --duration 10s
  lockd bench --workload lock --clients 16 --keys 1
  lockd bench --workload failover --kills 20`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Duration, err = parseDuration(duration); err != nil {
				return fmt.Errorf("--duration: %w", err)
			}
			if cfg.Warmup, err = parseDuration(warmup); err != nil {
				return fmt.Errorf("--warmup: %w", err)
			}
			counts, err := parseCounts(clients)
			if err != nil {
				return fmt.Errorf("--clients: %w", err)
			}
			for _, e := range strings.Split(endpoints, ",") {
				if e = strings.TrimSpace(e); e != "" {
					cfg.Endpoints = append(cfg.Endpoints, e)
				}
			}
			out, summary := cmd.OutOrStdout(), cmd.OutOrStdout()
			if jsonOnly {
				summary = cmd.ErrOrStderr()
			}
			if !quiet {
				cfg.Log = cmd.ErrOrStderr()
			}
			failed := 0
			for _, n := range counts {
				c := cfg
				c.Clients = n
				res, err := Run(cmd.Context(), c, nil)
				if err != nil {
					return err
				}
				if err := write(out, summary, res); err != nil {
					return err
				}
				failed += res.Errors
			}
			if failed > 0 {
				return fmt.Errorf("%d failed ops", failed)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&endpoints, "endpoints", "http://127.0.0.1:7001,http://127.0.0.1:7002,http://127.0.0.1:7003,http://127.0.0.1:7004,http://127.0.0.1:7005",
		"comma-separated client URLs of the cell")
	f.StringVar(&cfg.Cell, "cell", "local", "cell name (nodes go under /ls/<cell>/bench/)")
	f.StringVar(&cfg.Workload, "workload", "put", strings.Join(Workloads, " | "))
	f.StringVar(&clients, "clients", "1", "concurrent clients, each with its own Client; a comma-separated list runs once per count")
	f.IntVar(&cfg.Keys, "keys", 0, "lock: number of locks (0 = clients); read: number of nodes (0 = 1)")
	f.StringVar(&duration, "duration", "10s", "measurement window (Go duration, or seconds)")
	f.StringVar(&warmup, "warmup", "0s", "load before the window, not reported")
	f.IntVar(&cfg.ValueSize, "value-size", 64, "bytes written per put or watch write")
	f.IntVar(&cfg.Sessions, "sessions", 0, "keepalive: live sessions (0 = 100 per client)")
	f.DurationVar(&cfg.Interval, "interval", 50*time.Millisecond, "watch: time between two writes of the watched node")
	f.IntVar(&cfg.Kills, "kills", 20, "failover: leader kills")
	f.DurationVar(&cfg.Settle, "settle", time.Second, "failover: pause between rounds")
	f.StringVar(&cfg.CellDir, "cell-dir", "", "failover: directory of a running local cell (rN.json configs); empty: start one")
	f.StringVar(&cfg.LocalDir, "local-dir", "", "failover: data directory of the cell the bench starts (default: a temporary one)")
	f.IntVar(&cfg.BasePort, "base-port", 7301, "failover: first client port of the cell the bench starts")
	f.IntVar(&cfg.Replicas, "replicas", 5, "failover: replicas of the cell the bench starts")
	f.IntVar(&cfg.Prefill, "prefill", 0, "failover: nodes written before the first kill (restart time with a namespace of that size)")
	f.StringVar(&cfg.Lockd, "lockd", "", "failover: lockd binary for the replicas (default: this program, bin/lockd, or lockd on PATH)")
	f.BoolVar(&jsonOnly, "json", false, "only JSON lines on stdout; the summary goes to stderr")
	f.BoolVar(&quiet, "quiet", false, "no progress on stderr")
	cmd.AddCommand(reportCommand())
	return cmd
}

func write(out, summary io.Writer, res Result) error {
	line, err := res.MarshalJSON()
	if err != nil {
		return err
	}
	if _, err := io.WriteString(summary, res.Text()); err != nil {
		return err
	}
	_, err = fmt.Fprintf(out, "%s\n", line)
	return err
}

// parseDuration takes a Go duration or a number of seconds.
func parseDuration(s string) (time.Duration, error) {
	if n, err := strconv.ParseFloat(s, 64); err == nil {
		return time.Duration(n * float64(time.Second)), nil
	}
	return time.ParseDuration(s)
}

func parseCounts(s string) ([]int, error) {
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want positive integers", p)
		}
		out = append(out, n)
	}
	return out, nil
}
