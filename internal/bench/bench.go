// Package bench is lockd's load generator (`lockd bench`): workloads over the
// Go SDK against any cell, with the same JSON output as the reference
// harnesses for etcd and ZooKeeper (shared/bench/etcdref, zkref), so that the
// three can be compared line by line on one machine.
//
// Every bench client has its own lockd.Client (its own connections); the
// sessions a workload needs are created before the clock starts. An op
// counts when it starts after the warm-up and completes inside the
// measurement window; an op cut off by the end of the window is neither an
// op nor an error. Latencies are per op, p50/p99 by nearest rank.
//
// Workloads:
//   - put: Put of a 64-byte value to a fresh node per op.
//   - lock: NewMutex, Lock, Unlock; client i on lock i mod keys (keys =
//     clients: uncontended; keys = 1: every client queues on one lock).
//   - elect: clients candidates on one election; the winner resigns at once
//     and campaigns again; op = one handover, latency from the moment the
//     old leader starts Resign until the next candidate's Campaign returns.
//   - read, read-stale: Get of one of keys pre-written nodes, linearizable
//     or ?stale=true.
//   - keepalive: sessions live sessions kept alive by the SDK, and clients
//     loops that send KeepAlives (POST /v1/sessions/{id}/keepalive) over
//     them; reports KeepAlive latency, the log entries committed meanwhile
//     (KeepAlives must write none) and the leader's CPU.
//   - watch: clients watchers (each its own Client and SSE stream) on one
//     node, one writer that writes it every interval; op = one delivery,
//     latency from the start of the write to the delivery.
//   - failover: SIGKILL the leader replica of a local cell, time to the
//     first committed write; kills rounds, the killed replica restarted
//     between rounds (see Failover).
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// Workload names.
const (
	WorkloadPut       = "put"
	WorkloadLock      = "lock"
	WorkloadElect     = "elect"
	WorkloadRead      = "read"
	WorkloadReadStale = "read-stale"
	WorkloadKeepAlive = "keepalive"
	WorkloadWatch     = "watch"
	WorkloadFailover  = "failover"
)

// Workloads lists every workload Run knows.
var Workloads = []string{WorkloadPut, WorkloadLock, WorkloadElect, WorkloadRead, WorkloadReadStale,
	WorkloadKeepAlive, WorkloadWatch, WorkloadFailover}

// Config is one bench run.
type Config struct {
	// Endpoints are the cell's client URLs (any replica will do; more let
	// the clients go on when some are down). Failover may leave them empty:
	// it then starts a local cell of its own (see CellDir, Lockd).
	Endpoints []string
	// Cell is the cell name: nodes are created under /ls/<Cell>/bench/...
	// (default "local").
	Cell string
	// Workload is one of Workloads.
	Workload string
	// Clients is the number of concurrent bench clients (default 1).
	Clients int
	// Keys: lock, the number of locks (default Clients: uncontended; 1:
	// contended); read, the number of nodes read (default 1). Put reports
	// 0 (every op a new node) and elect 1.
	Keys int
	// Duration is the measurement window (default 10s).
	Duration time.Duration
	// Warmup is load put on before the window and not reported (default 0).
	Warmup time.Duration
	// ValueSize is the size of the contents written by put and watch
	// (default 64 bytes).
	ValueSize int
	// Sessions is keepalive's number of live sessions (default 100 per
	// client).
	Sessions int
	// Interval is watch's time between two writes (default 50ms).
	Interval time.Duration

	// Kills is failover's number of rounds (default 20).
	Kills int
	// Settle is failover's pause between rounds (default 1s).
	Settle time.Duration
	// CellDir, for failover: the directory of a running local cell (its
	// rN.json configs, as `lockd cell --dir` writes them; pids from rN.pid
	// or else found in /proc). Empty: failover starts a five-replica cell
	// of its own in a temporary directory (or LocalDir) and stops it at the
	// end.
	CellDir string
	// LocalDir is where failover's own cell lives (default: a temporary
	// directory, removed afterwards).
	LocalDir string
	// BasePort is the first client port of failover's own cell (default
	// 7301; peers at +100, gossip at +200, as `lockd cell` lays them out).
	BasePort int
	// Replicas is the size of failover's own cell (default 5).
	Replicas int
	// Prefill, for failover: nodes written (64 at a time) before the first
	// kill, so that each restarted replica loads a namespace of that size;
	// the time until it serves again is reported.
	Prefill int
	// Lockd is the lockd binary that runs replicas (default: this program
	// when it is lockd, else bin/lockd, else lockd on PATH).
	Lockd string

	// Log receives progress and error counts (default: discarded).
	Log io.Writer
}

func (c *Config) defaults() error {
	if c.Cell == "" {
		c.Cell = "local"
	}
	if c.Clients <= 0 {
		c.Clients = 1
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Warmup < 0 {
		c.Warmup = 0
	}
	if c.ValueSize <= 0 {
		c.ValueSize = 64
	}
	if c.Interval <= 0 {
		c.Interval = 50 * time.Millisecond
	}
	if c.Kills <= 0 {
		c.Kills = 20
	}
	if c.Settle < 0 {
		c.Settle = 0
	} else if c.Settle == 0 {
		c.Settle = time.Second
	}
	if c.Replicas <= 0 {
		c.Replicas = 5
	}
	if c.BasePort <= 0 {
		c.BasePort = 7301
	}
	if c.Log == nil {
		c.Log = io.Discard
	}
	switch c.Workload {
	case WorkloadPut:
		c.Keys = 0
	case WorkloadElect:
		c.Keys = 1
	case WorkloadLock:
		if c.Keys <= 0 {
			c.Keys = c.Clients
		}
	case WorkloadRead, WorkloadReadStale:
		if c.Keys <= 0 {
			c.Keys = 1
		}
	case WorkloadKeepAlive:
		if c.Sessions <= 0 {
			c.Sessions = 100 * c.Clients
		}
		c.Keys = c.Sessions
	case WorkloadWatch:
		c.Keys = 1
	case WorkloadFailover:
		return nil
	case "":
		return errors.New("bench: no workload (want one of " + strings.Join(Workloads, ", ") + ")")
	default:
		return fmt.Errorf("bench: unknown workload %q (want one of %s)", c.Workload, strings.Join(Workloads, ", "))
	}
	if len(c.Endpoints) == 0 {
		return errors.New("bench: no endpoints")
	}
	return nil
}

// Result is one run's figures. JSON gives the reference harnesses' fields
// exactly; the rest is for the human summary.
type Result struct {
	System   string
	Workload string
	Clients  int
	Keys     int
	Duration time.Duration
	Ops      int
	Errors   int
	// Latencies, nearest rank.
	P50, P99, Max, Min time.Duration
	// Kills is failover's number of rounds asked for.
	Kills int
	// Samples are failover's kill → first committed write times, in round
	// order.
	Samples []time.Duration
	// ErrorsByMessage counts the failed ops by error message.
	ErrorsByMessage map[string]int
	// Notes are extra findings for the human summary (commit index moves,
	// leader CPU, leader changes).
	Notes []string
	// CommitDelta is keepalive's log entries committed during the window.
	CommitDelta uint64
	// LeaderCPU is keepalive's leader CPU over the window, in cores.
	LeaderCPU float64
	// Restarts are failover's times from restarting the killed replica to
	// its serving a linearizable read again, in round order.
	Restarts []time.Duration
}

// OpsPerSec is Ops over the window, rounded down to 0.1 as the reference
// harnesses do.
func (r Result) OpsPerSec() float64 {
	if r.Duration <= 0 {
		return 0
	}
	return float64(int(float64(r.Ops)/r.Duration.Seconds()*10)) / 10
}

// benchLine and failoverLine are the reference harnesses' JSON shapes.
type benchLine struct {
	System   string  `json:"system"`
	Workload string  `json:"workload"`
	Clients  int     `json:"clients"`
	Keys     int     `json:"keys"`
	Duration float64 `json:"duration"`
	Ops      int     `json:"ops"`
	OpsPerS  float64 `json:"ops_per_s"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
	Errors   int     `json:"errors"`
}

type failoverLine struct {
	System   string  `json:"system"`
	Workload string  `json:"workload"`
	Kills    int     `json:"kills"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
	Max      float64 `json:"max_ms"`
	Min      float64 `json:"min_ms"`
	Errors   int     `json:"errors"`
}

// MarshalJSON writes the reference harnesses' fields, no more.
func (r Result) MarshalJSON() ([]byte, error) {
	if r.Workload == WorkloadFailover {
		return json.Marshal(failoverLine{System: r.System, Workload: r.Workload, Kills: r.Kills,
			P50: ms(r.P50), P99: ms(r.P99), Max: ms(r.Max), Min: ms(r.Min), Errors: r.Errors})
	}
	return json.Marshal(benchLine{System: r.System, Workload: r.Workload, Clients: r.Clients, Keys: r.Keys,
		Duration: r.Duration.Seconds(), Ops: r.Ops, OpsPerS: r.OpsPerSec(), P50: ms(r.P50), P99: ms(r.P99),
		Max: ms(r.Max), Errors: r.Errors})
}

// Text is the human summary of r, one or more lines.
func (r Result) Text() string {
	var b strings.Builder
	if r.Workload == WorkloadFailover {
		fmt.Fprintf(&b, "%s failover: %d kills, %d samples, kill → first committed write p50 %s p99 %s min %s max %s, %d errors\n",
			r.System, r.Kills, len(r.Samples), fmtMs(r.P50), fmtMs(r.P99), fmtMs(r.Min), fmtMs(r.Max), r.Errors)
	} else {
		fmt.Fprintf(&b, "%s %s: %d clients, %d keys, %s: %d ops, %.1f ops/s, p50 %s p99 %s max %s, %d errors\n",
			r.System, r.Workload, r.Clients, r.Keys, r.Duration, r.Ops, r.OpsPerSec(),
			fmtMs(r.P50), fmtMs(r.P99), fmtMs(r.Max), r.Errors)
	}
	msgs := make([]string, 0, len(r.ErrorsByMessage))
	for m := range r.ErrorsByMessage {
		msgs = append(msgs, m)
	}
	sort.Strings(msgs)
	for _, m := range msgs {
		fmt.Fprintf(&b, "  %d x error: %s\n", r.ErrorsByMessage[m], m)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  %s\n", n)
	}
	return b.String()
}

// Run runs cfg's workload and writes its human summary and then its JSON
// line to out (when not nil). The error is for a run that could not be
// done (no cell, setup failed); failed ops are counted in Result.Errors.
func Run(ctx context.Context, cfg Config, out io.Writer) (Result, error) {
	if err := cfg.defaults(); err != nil {
		return Result{}, err
	}
	var (
		res Result
		err error
	)
	if cfg.Workload == WorkloadFailover {
		res, err = runFailover(ctx, cfg)
	} else {
		res, err = runLoad(ctx, cfg)
	}
	if err != nil {
		return res, err
	}
	if out != nil {
		line, jerr := json.Marshal(res)
		if jerr != nil {
			return res, jerr
		}
		if _, werr := fmt.Fprintf(out, "%s%s\n", res.Text(), line); werr != nil {
			return res, werr
		}
	}
	return res, nil
}

// recorder collects one worker's latencies and errors. Only the worker's
// goroutine writes it.
type recorder struct {
	lat  []time.Duration
	errs map[string]int
	cut  time.Duration // how long the op cut off by the end of the window had run
}

func (r *recorder) fail(err error) {
	if r.errs == nil {
		r.errs = map[string]int{}
	}
	r.errs[errKey(err)]++
}

// nodePath matches the node paths in error messages, which differ per op.
var nodePath = regexp.MustCompile(`/ls/[^\s:]+`)

// errKey is err's message with node paths elided, so that failures group.
func errKey(err error) string {
	return nodePath.ReplaceAllString(err.Error(), "<path>")
}

// window is the measurement window: ops that start at or after from and
// end by to count.
type window struct {
	from, to time.Time
}

func (w window) counts(start, end time.Time) bool {
	return !start.Before(w.from) && !end.After(w.to)
}

// merge sums the recorders into res's figures.
func merge(res *Result, recs []*recorder) {
	var all []time.Duration
	for _, r := range recs {
		all = append(all, r.lat...)
		for m, n := range r.errs {
			if res.ErrorsByMessage == nil {
				res.ErrorsByMessage = map[string]int{}
			}
			res.ErrorsByMessage[m] += n
			res.Errors += n
		}
	}
	var cut time.Duration
	for _, r := range recs {
		cut = max(cut, r.cut)
	}
	if cut > time.Second {
		res.Notes = append(res.Notes, fmt.Sprintf("an op cut off by the end of the window had run for %s", cut.Round(time.Millisecond)))
	}
	slices.Sort(all)
	res.Ops = len(all)
	res.P50 = percentile(all, 0.50)
	res.P99 = percentile(all, 0.99)
	if len(all) > 0 {
		res.Min = all[0]
		res.Max = all[len(all)-1]
	}
}

// percentile is the nearest-rank p-quantile (0<p<=1) of sorted samples, as
// the reference harnesses compute it.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p+0.999999) - 1
	i = max(0, min(i, len(sorted)-1))
	return sorted[i]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func fmtMs(d time.Duration) string { return fmt.Sprintf("%.2fms", ms(d)) }

// logf writes one progress line.
type logger struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *logger) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, "bench: "+format+"\n", args...)
}

// runID makes node paths of one run distinct from every other run's.
func runID() string {
	return fmt.Sprintf("%d-%d", time.Now().UnixNano(), os.Getpid())
}
