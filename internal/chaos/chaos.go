// Package chaos is a black-box fault-testing harness for lockd. It starts
// five real lockd processes on 127.0.0.1, each with its own data directory
// and its own view of the others' addresses (every replica reaches every
// other through a fault-injecting TCP proxy, one per direction, for the
// Paxos port and the HTTP port), runs concurrent client workloads through
// the HTTP API, injects faults on a seeded schedule (SIGKILL and restart of
// one replica, the leader, or two at once; SIGSTOP pauses longer than the
// leader lease, of any replica or of the leader, which may also be cut off
// and continue alone a while; partitions that isolate the leader, split the
// cell 3/2 or bridge two halves through one replica; loss of a replica's
// data directory and its rebuild by catch-up), heals, waits for the cell to
// recover, and checks the recorded histories:
//
//   - registers (read, write, compare-and-set on content generation) are
//     linearizable (Porcupine); on a violation the visualization is written;
//   - locks: no generation granted twice, generations rise, no two clients
//     believed they held a lock at once, the fenced resource never accepted
//     a stale sequencer;
//   - sessions that keep their KeepAlives survive every leader change and
//     keep their locks; sessions that stop them expire and their locks free;
//     no session ends before the lease a KeepAlive promised ran out;
//   - every acknowledged write is present at the end.
//
// Every run ends with one summary line (Summary.String):
//
//	chaos: seed S, ops N, faults F, linearizable yes/no, lock violations 0, acknowledged writes lost 0
//
// Run does one run. The tests run a bounded CI profile (TestChaosCI: three
// seeds of 30 s, in -short mode too) and, on demand, a long one:
//
//	go test ./internal/chaos -run TestChaosLong -chaos.long=30m -timeout 40m -v
//	go test ./internal/chaos -run 'TestChaosCI$' -chaos.seed=7 -chaos.duration=1m -v
//	go run ./internal/chaos/cmd/chaos -duration 30m -runs 2
//
// A failed run writes its artifacts (seed.txt with the replay command and
// the fault timeline, registers.json, porcupine.html, locks.json, the
// replicas' logs) to Config.ArtifactsDir or a new temporary directory;
// TestRecheckHistory (-chaos.history) checks a registers.json again and
// narrows a violation down. Bugs the harness found keep their reproductions
// in repro_test.go as regression tests; while one is open, the CI profile
// leaves out the faults that show it (knownBugs in chaos_test.go).
package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/lockd/lockd/api/wire"
	"github.com/lockd/lockd/internal/testcell"
)

// Workloads.
const (
	WorkloadRegister = "register"
	WorkloadLock     = "lock"
	WorkloadSession  = "session"
)

// Config shapes one run.
type Config struct {
	Seed     int64
	Duration time.Duration // workloads under faults; default 30s
	Clients  int           // register clients (lock clients: half as many, at least 2); default 6
	Faults   bool
	// SkipFaults leaves these fault kinds (see FaultKinds) out of the
	// schedule.
	SkipFaults []string
	// Workloads to run; nil runs all of them.
	Workloads []string
	// ArtifactsDir receives the seed, the histories, Porcupine's
	// visualization and the replicas' logs when a check fails; default a
	// new temporary directory (named in the log).
	ArtifactsDir string
	// Binary is a lockd executable; default: build ./cmd/lockd.
	Binary string
	// Logf receives progress lines; default log.Printf.
	Logf func(format string, args ...any)
	// CheckTimeout bounds the linearizability check; default 1 minute.
	CheckTimeout time.Duration
	// SessionGrace is the cell's session grace on failover; default 2s.
	SessionGrace time.Duration
}

func (c Config) withDefaults() Config {
	if c.Duration <= 0 {
		c.Duration = 30 * time.Second
	}
	if c.Clients <= 0 {
		c.Clients = 6
	}
	if c.Workloads == nil {
		c.Workloads = []string{WorkloadRegister, WorkloadLock, WorkloadSession}
	}
	if c.Logf == nil {
		c.Logf = log.Printf
	}
	if c.CheckTimeout <= 0 {
		c.CheckTimeout = time.Minute
	}
	if c.SessionGrace <= 0 {
		c.SessionGrace = 2 * time.Second
	}
	return c
}

func (c Config) has(workload string) bool {
	for _, w := range c.Workloads {
		if w == workload {
			return true
		}
	}
	return false
}

// Summary is the outcome of a run.
type Summary struct {
	Seed           int64
	Ops            int64
	Faults         int
	Linearizable   porcupine.CheckResult // Ok, Illegal, or Unknown (the check timed out)
	LockViolations int                   // lock and session guarantees broken
	LostWrites     int                   // acknowledged writes missing at the end
	Violations     []string              // each violation, described
	Problems       []string              // the harness could not check something (e.g. no recovery)
	Artifacts      string                // where the artifacts went, if any
	Elapsed        time.Duration
}

// String is the run's summary line.
func (s Summary) String() string {
	lin := "yes"
	switch s.Linearizable {
	case porcupine.Illegal:
		lin = "no"
	case porcupine.Unknown:
		lin = "unknown (check timed out)"
	}
	return fmt.Sprintf("chaos: seed %d, ops %d, faults %d, linearizable %s, lock violations %d, acknowledged writes lost %d",
		s.Seed, s.Ops, s.Faults, lin, s.LockViolations, s.LostWrites)
}

// OK reports whether every check passed and nothing stopped the checking.
func (s Summary) OK() bool {
	return s.Linearizable != porcupine.Illegal && s.LockViolations == 0 && s.LostWrites == 0 && len(s.Problems) == 0
}

const replicas = 5

// world is one run's shared state.
type world struct {
	cfg       Config
	start     time.Time
	tb        *runTB
	cell      *testcell.Cell
	nw        *Network
	urls      []string
	hc        *http.Client
	opTimeout time.Duration
	grace     time.Duration
	base      string // node path prefix of the run
	ops       atomic.Int64
	logf      func(format string, args ...any)

	mu         sync.Mutex
	problems   []string
	violations []string // of session and lock guarantees, seen while the workloads ran
	timeline   []string
}

func (w *world) now() int64 { return int64(time.Since(w.start)) }

func (w *world) secs() float64 { return time.Since(w.start).Seconds() }

// pause waits d (jittered to d/2..3d/2 when rnd is set) or until ctx ends.
// It paces clients and holds faults; it never stands in for synchronization.
func (w *world) pause(ctx context.Context, rnd *rand.Rand, d time.Duration) {
	if rnd != nil && d > 0 {
		d = d/2 + time.Duration(rnd.Int63n(int64(d)+1))
	}
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// problem records something that kept the harness from checking.
func (w *world) problem(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	w.mu.Lock()
	w.problems = append(w.problems, msg)
	w.mu.Unlock()
	w.logf("chaos: %.1fs: problem: %s", w.secs(), msg)
}

// violation records a broken session or lock guarantee seen as it happened.
func (w *world) violation(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	w.mu.Lock()
	w.violations = append(w.violations, msg)
	w.mu.Unlock()
	w.logf("chaos: %.1fs: violation: %s", w.secs(), msg)
}

// event logs a line of the fault timeline.
func (w *world) event(format string, args ...any) {
	msg := fmt.Sprintf("%.1fs: ", w.secs()) + fmt.Sprintf(format, args...)
	w.mu.Lock()
	w.timeline = append(w.timeline, msg)
	w.mu.Unlock()
	w.logf("chaos: %s", msg)
}

// Run does one run: start a cell, run the workloads under the fault
// schedule of cfg.Seed, heal, wait for recovery and check the histories. The
// error is for a run that could not be done (the cell would not start);
// violations are in the Summary.
func Run(ctx context.Context, cfg Config) (Summary, error) {
	cfg = cfg.withDefaults()
	for _, wl := range cfg.Workloads {
		if !slices.Contains([]string{WorkloadRegister, WorkloadLock, WorkloadSession}, wl) {
			return Summary{Seed: cfg.Seed}, fmt.Errorf("unknown workload %q", wl)
		}
	}
	for _, f := range cfg.SkipFaults {
		if !slices.Contains(FaultKinds, f) {
			return Summary{Seed: cfg.Seed}, fmt.Errorf("unknown fault kind %q (want one of %v)", f, FaultKinds)
		}
	}
	ctx, cancelRun := context.WithCancel(ctx)
	defer cancelRun() // ends whatever still runs (KeepAlives) on an early return
	sum := Summary{Seed: cfg.Seed, Linearizable: porcupine.Ok}
	begin := time.Now()
	tb := &runTB{logf: cfg.Logf}
	nw, err := NewNetwork(replicas)
	if err != nil {
		return sum, err
	}
	defer nw.Close()
	defer tb.cleanup() // stops the cell before the network closes
	var cell *testcell.Cell
	err = guard(func() {
		cell = testcell.Start(tb, testcell.Options{Replicas: replicas, Binary: cfg.Binary, LogLevel: "info",
			SessionGraceMs: int(cfg.SessionGrace.Milliseconds()), Addresses: nw.Addresses})
	})
	if err != nil {
		return sum, err
	}
	w := &world{cfg: cfg, start: begin, tb: tb, cell: cell, nw: nw, urls: cell.URLs(), hc: newHTTPClient(),
		opTimeout: 2 * time.Second, grace: cfg.SessionGrace, base: "/ls/local/chaos", logf: cfg.Logf}
	defer w.hc.CloseIdleConnections()
	w.logf("chaos: seed %d: cell up on %s; workloads %v for %v, faults %v", cfg.Seed, strings.Join(w.urls, " "),
		cfg.Workloads, cfg.Duration, cfg.Faults)
	if _, err := w.waitHealthy(ctx, time.Minute, true); err != nil {
		cell.DumpLogs(40)
		return sum, fmt.Errorf("the new cell never became healthy: %w", err)
	}
	master := rand.New(rand.NewSource(cfg.Seed))
	wl, err := w.setup(ctx, master)
	if err != nil {
		return sum, err
	}

	workCtx, stopWork := context.WithCancel(ctx)
	defer stopWork()
	var wg sync.WaitGroup
	wl.start(workCtx, w, master, &wg)
	nemRnd := rand.New(rand.NewSource(master.Int63()))
	if cfg.Faults {
		sum.Faults = w.nemesis(ctx, nemRnd, time.Now().Add(cfg.Duration))
	} else {
		w.pause(ctx, nil, cfg.Duration)
	}
	w.healAll()
	if _, err := w.waitHealthy(ctx, time.Minute, true); err != nil {
		w.problem("the cell did not recover after every fault was healed: %v", err)
	} else {
		w.event("healed and recovered")
	}
	w.pause(ctx, nil, 2*time.Second) // the healed cell serves the workloads a while
	stopWork()
	wg.Wait()

	checkCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	info := w.check(checkCtx, wl, &sum)
	sum.Ops = w.ops.Load()
	w.mu.Lock()
	sum.Problems = append(sum.Problems, w.problems...)
	w.mu.Unlock()
	if err := ctx.Err(); err != nil {
		sum.Problems = append(sum.Problems, fmt.Sprintf("the run was cut short: %v", err))
	}
	sum.Elapsed = time.Since(begin)
	for _, v := range sum.Violations {
		w.logf("chaos: violation: %s", v)
	}
	if !sum.OK() {
		sum.Artifacts = w.writeArtifacts(sum, wl, info)
	}
	return sum, nil
}

// workloads is the state of the run's workloads.
type workloads struct {
	keys  []string // registers
	regH  *regHistory
	locks []string
	lockH *lockHistory
	res   *resource
	sw    *sessionWorkload // nil without the session workload
}

// setup creates the registers and the sessions of the workloads cfg names.
func (w *world) setup(ctx context.Context, master *rand.Rand) (*workloads, error) {
	wl := &workloads{regH: &regHistory{}, lockH: &lockHistory{}}
	if w.cfg.has(WorkloadRegister) {
		for i := range 4 {
			wl.keys = append(wl.keys, fmt.Sprintf("%s/reg-%d", w.base, i))
		}
		if err := w.setupRegisters(ctx, wl.regH, wl.keys); err != nil {
			return nil, err
		}
	}
	if w.cfg.has(WorkloadLock) {
		wl.locks = []string{w.base + "/lock-0", w.base + "/lock-1"}
		wl.res = newResource(w, wl.locks)
	}
	if w.cfg.has(WorkloadSession) {
		sw, err := w.setupSessions(ctx, rand.New(rand.NewSource(master.Int63())), 3, 3)
		if err != nil {
			return nil, err
		}
		wl.sw = sw
	}
	return wl, nil
}

// start runs every client until ctx ends. Half the register clients stay
// on one replica each (a client on that replica's side of a partition), the
// others pick a replica per request.
func (wl *workloads) start(ctx context.Context, w *world, master *rand.Rand, wg *sync.WaitGroup) {
	if len(wl.keys) > 0 {
		for i := range w.cfg.Clients {
			rnd, pin := rand.New(rand.NewSource(master.Int63())), -1
			if i%2 == 0 {
				pin = rnd.Intn(replicas)
			}
			wg.Go(func() { w.registerClient(ctx, rnd, wl.regH, wl.keys, i, pin) })
		}
	}
	if len(wl.locks) > 0 {
		for i := range max(2, w.cfg.Clients/2) {
			rnd := rand.New(rand.NewSource(master.Int63()))
			wg.Go(func() { w.lockClient(ctx, rnd, wl.lockH, wl.res, wl.locks, i) })
		}
	}
	if wl.sw != nil {
		wg.Go(func() { w.runQuitters(ctx, wl.sw) })
	}
}

// check runs every checker on the healed cell and fills in sum; it returns
// Porcupine's information for the visualization.
func (w *world) check(ctx context.Context, wl *workloads, sum *Summary) porcupine.LinearizationInfo {
	add := func(counter *int, bad []string) {
		*counter += len(bad)
		sum.Violations = append(sum.Violations, bad...)
	}
	if wl.sw != nil { // first: the keepers' KeepAlives still run
		t0 := time.Now()
		add(&sum.LockViolations, w.checkSessions(ctx, wl.sw))
		w.logf("chaos: sessions: %d keepers, %d quitters checked in %v", len(wl.sw.keepers), len(wl.sw.quitters),
			time.Since(t0).Round(time.Millisecond))
	}
	w.mu.Lock()
	add(&sum.LockViolations, w.violations) // every KeepAlive has stopped now
	w.mu.Unlock()
	if len(wl.locks) > 0 {
		add(&sum.LockViolations, CheckLocks(wl.lockH.grants, wl.res.log, wl.lockH.acked))
		add(&sum.LostWrites, w.checkLockNodes(ctx, wl.locks, wl.lockH.grants))
		w.logf("chaos: locks: %d grants, %d fenced writes accepted on %d locks", len(wl.lockH.grants), len(wl.res.log), len(wl.locks))
	}
	var info porcupine.LinearizationInfo
	if len(wl.keys) == 0 {
		return info
	}
	final := map[string]RegOutput{}
	for _, k := range wl.keys {
		if out, ok := w.finalRead(ctx, wl.regH, k); ok {
			final[k] = out
		} else {
			w.problem("no final read of %s", k)
		}
	}
	add(&sum.LostWrites, LostWrites(wl.regH.acked, final))
	t0 := time.Now()
	ops := wl.regH.operations()
	sum.Linearizable, info = CheckRegisters(ops, w.cfg.CheckTimeout)
	unknown, open := wl.regH.unknowns(), 0
	for _, op := range ops {
		if op.Output.(RegOutput).Unknown {
			open++
		}
	}
	w.logf("chaos: registers: %d operations on %d keys, %d writes acknowledged, %d of unknown outcome (%d left open): %s in %v",
		len(ops), len(wl.keys), len(wl.regH.acked), unknown, open, sum.Linearizable, time.Since(t0).Round(time.Millisecond))
	if sum.Linearizable == porcupine.Illegal {
		sum.Violations = append(sum.Violations, "the register history is not linearizable (see porcupine.html)")
	}
	return info
}

// setupRegisters creates every key and reads it once, starting its history.
func (w *world) setupRegisters(ctx context.Context, h *regHistory, keys []string) error {
	init := "init"
	for _, k := range keys {
		ok := false
		for i := 0; i < 50 && !ok && ctx.Err() == nil; i++ {
			r := do(ctx, w.hc, w.opTimeout, http.MethodPut, w.urls[i%len(w.urls)]+"/v1/nodes"+k, wire.PutNodeRequest{Contents: &init})
			ok = r.outcome() == OK
			if !ok {
				w.pause(ctx, nil, 100*time.Millisecond)
			}
		}
		if !ok {
			return fmt.Errorf("cannot create register %s", k)
		}
		if _, ok := w.finalRead(ctx, h, k); !ok {
			return fmt.Errorf("cannot read register %s", k)
		}
	}
	return nil
}

// writeArtifacts saves what a failed run needs to be understood and
// replayed, and returns the directory.
func (w *world) writeArtifacts(sum Summary, wl *workloads, info porcupine.LinearizationInfo) string {
	dir := w.cfg.ArtifactsDir
	var err error
	if dir == "" {
		dir, err = os.MkdirTemp("", fmt.Sprintf("lockd-chaos-seed%d-", sum.Seed))
	} else {
		dir = filepath.Join(dir, fmt.Sprintf("seed-%d", sum.Seed))
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		w.logf("chaos: cannot write artifacts: %v", err)
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\nseed: %d\nduration: %v\nclients: %d\nworkloads: %v\n\nreplay:\n", sum, sum.Seed, w.cfg.Duration, w.cfg.Clients, w.cfg.Workloads)
	fmt.Fprintf(&b, "  go test ./internal/chaos -run 'TestChaosCI$' -chaos.seed=%d -chaos.duration=%v -v\n", sum.Seed, w.cfg.Duration)
	fmt.Fprintf(&b, "  go run ./internal/chaos/cmd/chaos -seed %d -duration %v\n\nviolations:\n", sum.Seed, w.cfg.Duration)
	for _, v := range sum.Violations {
		fmt.Fprintf(&b, "  %s\n", v)
	}
	b.WriteString("\nproblems:\n")
	for _, p := range sum.Problems {
		fmt.Fprintf(&b, "  %s\n", p)
	}
	w.mu.Lock()
	b.WriteString("\nfaults:\n  " + strings.Join(w.timeline, "\n  ") + "\n")
	w.mu.Unlock()
	write := func(name string, data []byte) {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			w.logf("chaos: writing %s: %v", name, err)
		}
	}
	write("seed.txt", []byte(b.String()))
	if ops := wl.regH.operations(); len(ops) > 0 {
		data, _ := json.MarshalIndent(ops, "", " ")
		write("registers.json", data) // as checked: ReadRegisterHistory loads it
	}
	if sum.Linearizable == porcupine.Illegal {
		if err := porcupine.VisualizePath(RegisterModel, info, filepath.Join(dir, "porcupine.html")); err != nil {
			w.logf("chaos: porcupine visualization: %v", err)
		}
	}
	if wl.res != nil {
		data, _ := json.MarshalIndent(map[string]any{"grants": wl.lockH.grants, "resource": wl.res.log, "acked": wl.lockH.acked}, "", " ")
		write("locks.json", data)
	}
	w.copyLogs(dir)
	w.logf("chaos: seed %d failed; artifacts in %s", sum.Seed, dir)
	return dir
}

// copyLogs copies every replica's log into dir.
func (w *world) copyLogs(dir string) {
	for _, r := range w.cell.Replicas {
		src, err := os.Open(r.LogPath)
		if err != nil {
			continue
		}
		dst, err := os.Create(filepath.Join(dir, filepath.Base(r.LogPath)))
		if err == nil {
			_, _ = io.Copy(dst, src)
			dst.Close()
		}
		src.Close()
	}
}

// runTB is the testcell.TB of a run: Fatal panics with a fatal value that
// guard turns into an error, so a run works outside tests too.
type runTB struct {
	logf     func(format string, args ...any)
	mu       sync.Mutex
	cleanups []func()
	dirs     []string
}

type fatal struct{ msg string }

func (t *runTB) Helper()                           {}
func (t *runTB) Fatal(args ...any)                 { panic(fatal{fmt.Sprint(args...)}) }
func (t *runTB) Fatalf(format string, args ...any) { panic(fatal{fmt.Sprintf(format, args...)}) }
func (t *runTB) Logf(format string, args ...any)   { t.logf(format, args...) }
func (t *runTB) Failed() bool                      { return false }

func (t *runTB) Cleanup(f func()) {
	t.mu.Lock()
	t.cleanups = append(t.cleanups, f)
	t.mu.Unlock()
}

func (t *runTB) TempDir() string {
	dir, err := os.MkdirTemp("", "lockd-chaos-cell-")
	if err != nil {
		t.Fatal(err)
	}
	t.mu.Lock()
	t.dirs = append(t.dirs, dir)
	t.mu.Unlock()
	return dir
}

func (t *runTB) cleanup() {
	t.mu.Lock()
	fs, dirs := t.cleanups, t.dirs
	t.cleanups, t.dirs = nil, nil
	t.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		_ = guard(fs[i])
	}
	for _, d := range dirs {
		os.RemoveAll(d)
	}
}

// guard runs f, turning a runTB Fatal into an error.
func guard(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			fe, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			err = errors.New(fe.msg)
		}
	}()
	f()
	return nil
}
