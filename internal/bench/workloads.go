package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lockd "github.com/lockd/lockd/clients/go"
)

// setupTimeout bounds the creation of clients, sessions and nodes before a
// run, and the cleanup after it.
const setupTimeout = 60 * time.Second

// runLoad runs every workload but failover.
func runLoad(ctx context.Context, cfg Config) (Result, error) {
	log := &logger{w: cfg.Log}
	res := Result{System: "lockd", Workload: cfg.Workload, Clients: cfg.Clients, Keys: cfg.Keys, Duration: cfg.Duration}
	prefix := fmt.Sprintf("/ls/%s/bench/%s/%s", cfg.Cell, cfg.Workload, runID())

	setup, cancelSetup := context.WithTimeout(ctx, setupTimeout)
	defer cancelSetup()

	// One Client per bench client, each with its own connections.
	clients := make([]*lockd.Client, cfg.Clients)
	defer func() {
		for _, c := range clients {
			if c != nil {
				c.Close()
			}
		}
	}()
	var opts []lockd.ClientOption
	if cfg.Workload == WorkloadWatch {
		// Thousands of watchers: their Clients share one pool of
		// connections (each stream still has its own), so that setup
		// requests do not leave an idle connection per watcher behind.
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 256
		defer t.CloseIdleConnections()
		opts = append(opts, lockd.WithHTTPClient(&http.Client{Transport: t}))
	}
	for i := range clients {
		c, err := lockd.New(cfg.Endpoints, opts...)
		if err != nil {
			return res, err
		}
		clients[i] = c
	}
	// Learn the leader first, so the first ops do not pay the discovery.
	before, err := clients[0].Cluster(setup)
	if err != nil {
		return res, err
	}
	for _, c := range clients[1:] {
		if _, err := c.Cluster(setup); err != nil {
			return res, err
		}
	}

	// Sessions, before the clock starts.
	var sessions []*lockd.Session
	closeSessions := func() {
		cctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
		defer cancel()
		var wg sync.WaitGroup
		sem := make(chan struct{}, 64)
		for _, s := range sessions {
			sem <- struct{}{}
			wg.Go(func() {
				defer func() { <-sem }()
				_ = s.Close(cctx)
			})
		}
		wg.Wait()
		sessions = nil
	}
	defer closeSessions()
	switch cfg.Workload {
	case WorkloadLock, WorkloadElect:
		sessions = make([]*lockd.Session, cfg.Clients)
		if err := parallel(setup, cfg.Clients, func(i int) error {
			s, err := lockd.NewSession(setup, clients[i], lockd.WithLockDelay(0), lockd.WithLabel("bench"))
			sessions[i] = s
			return err
		}); err != nil {
			return res, fmt.Errorf("creating sessions: %w", err)
		}
	case WorkloadKeepAlive:
		sessions = make([]*lockd.Session, cfg.Sessions)
		log.printf("keepalive: creating %d sessions", cfg.Sessions)
		if err := parallel(setup, cfg.Sessions, func(i int) error {
			s, err := lockd.NewSession(setup, clients[i%cfg.Clients], lockd.WithLabel("bench"))
			sessions[i] = s
			return err
		}); err != nil {
			return res, fmt.Errorf("creating sessions: %w", err)
		}
	}

	recs := make([]*recorder, cfg.Clients)
	for i := range recs {
		recs[i] = &recorder{}
	}
	var wst *watchState
	switch cfg.Workload {
	case WorkloadRead, WorkloadReadStale:
		if err := setupRead(setup, cfg, prefix, clients); err != nil {
			return res, err
		}
	case WorkloadWatch:
		log.printf("watch: starting %d watchers", cfg.Clients)
		if wst, err = setupWatch(ctx, setup, cfg, prefix, clients, recs); err != nil {
			return res, err
		}
		defer wst.close()
	}
	start := time.Now()
	win := window{from: start.Add(cfg.Warmup), to: start.Add(cfg.Warmup + cfg.Duration)}
	// The run's ops are cancelled at the end of the window, not given it
	// as a deadline: a deadline would shorten the SDK's lock waits near
	// the end and make them fail instead of being cut off.
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	endTimer := time.AfterFunc(time.Until(win.to), cancel)
	defer endTimer.Stop()

	switch cfg.Workload {
	case WorkloadPut:
		err = runPut(rctx, cfg, prefix, clients, recs, win)
	case WorkloadLock:
		err = runLock(rctx, cfg, prefix, sessions, recs, win)
	case WorkloadElect:
		err = runElect(rctx, cfg, prefix, sessions, recs, win)
	case WorkloadRead, WorkloadReadStale:
		err = runRead(rctx, cfg, prefix, clients, recs, win)
	case WorkloadKeepAlive:
		err = runKeepAlive(rctx, cfg, clients, sessions, recs, win, &res, log)
	case WorkloadWatch:
		err = runWatch(rctx, cfg, wst, recs, win, &res)
	}
	if err != nil {
		return res, err
	}
	if ctx.Err() != nil {
		return res, ctx.Err()
	}
	merge(&res, recs)

	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	if after, err := clients[0].Cluster(cctx); err == nil && (after.Ballot != before.Ballot || after.Leader != before.Leader) {
		res.Notes = append(res.Notes, fmt.Sprintf("the leader changed during the run (replica %s, ballot %s → replica %s, ballot %s)",
			before.Leader, before.Ballot, after.Leader, after.Ballot))
	}
	return res, nil
}

// parallel runs f(0..n-1) on up to 64 goroutines and returns the first error.
func parallel(ctx context.Context, n int, f func(i int) error) error {
	var (
		wg    sync.WaitGroup
		next  atomic.Int64
		first atomic.Pointer[error]
	)
	for range min(n, 64) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n || first.Load() != nil || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					first.CompareAndSwap(nil, &err)
				}
			}
		})
	}
	wg.Wait()
	if p := first.Load(); p != nil {
		return *p
	}
	return ctx.Err()
}

// loop runs op over and over in each of n goroutines until ctx ends,
// recording each op that counts in the window.
func loop(ctx context.Context, recs []*recorder, win window, op func(ctx context.Context, i, seq int) error) {
	var wg sync.WaitGroup
	for i := range recs {
		r := recs[i]
		wg.Go(func() {
			for seq := 0; ctx.Err() == nil; seq++ {
				t0 := time.Now()
				err := op(ctx, i, seq)
				t1 := time.Now()
				if ctx.Err() != nil {
					r.cut = t1.Sub(t0) // cut off by the end of the window
					return
				}
				if !win.counts(t0, t1) {
					if err != nil {
						pause(ctx)
					}
					continue
				}
				if err != nil {
					r.fail(err)
					pause(ctx) // don't spin on a broken cell
					continue
				}
				r.lat = append(r.lat, t1.Sub(t0))
			}
		})
	}
	wg.Wait()
}

func pause(ctx context.Context) {
	t := time.NewTimer(10 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

func value(n int) []byte { return []byte(strings.Repeat("v", n)) }

func runPut(ctx context.Context, cfg Config, prefix string, clients []*lockd.Client, recs []*recorder, win window) error {
	val := value(cfg.ValueSize)
	loop(ctx, recs, win, func(ctx context.Context, i, seq int) error {
		_, err := clients[i].Put(ctx, prefix+"/c"+strconv.Itoa(i)+"/"+strconv.Itoa(seq), val)
		return err
	})
	return nil
}

func runLock(ctx context.Context, cfg Config, prefix string, sessions []*lockd.Session, recs []*recorder, win window) error {
	loop(ctx, recs, win, func(ctx context.Context, i, _ int) error {
		m := lockd.NewMutex(sessions[i], prefix+"/k"+strconv.Itoa(i%cfg.Keys))
		if err := m.Lock(ctx); err != nil {
			return err
		}
		return m.Unlock(ctx)
	})
	return nil
}

// runElect: every candidate campaigns; the winner records the handover
// that made it leader and resigns at once, campaigning again after.
func runElect(ctx context.Context, cfg Config, prefix string, sessions []*lockd.Session, recs []*recorder, win window) error {
	var lastResign atomic.Int64 // unix nanos when the current leader began resigning
	path := prefix + "/election"
	var wg sync.WaitGroup
	for i := range recs {
		r := recs[i]
		wg.Go(func() {
			e := lockd.NewElection(sessions[i], path)
			val := strconv.Itoa(i)
			for ctx.Err() == nil {
				err := e.Campaign(ctx, val)
				now := time.Now()
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					if !now.Before(win.from) {
						r.fail(err)
					}
					pause(ctx)
					continue
				}
				if t := lastResign.Load(); t != 0 {
					if from := time.Unix(0, t); win.counts(from, now) {
						r.lat = append(r.lat, now.Sub(from))
					}
				}
				lastResign.Store(time.Now().UnixNano())
				if err := e.Resign(ctx); err != nil && ctx.Err() == nil && !time.Now().Before(win.from) {
					r.fail(err)
				}
			}
		})
	}
	wg.Wait()
	return nil
}

func setupRead(setup context.Context, cfg Config, prefix string, clients []*lockd.Client) error {
	val := value(cfg.ValueSize)
	for k := range cfg.Keys {
		if _, err := clients[0].Put(setup, prefix+"/n"+strconv.Itoa(k), val); err != nil {
			return fmt.Errorf("writing the nodes to read: %w", err)
		}
	}
	return nil
}

func runRead(ctx context.Context, cfg Config, prefix string, clients []*lockd.Client, recs []*recorder, win window) error {
	var opts []lockd.GetOption
	if cfg.Workload == WorkloadReadStale {
		opts = append(opts, lockd.Stale())
	}
	loop(ctx, recs, win, func(ctx context.Context, i, seq int) error {
		_, err := clients[i].Get(ctx, prefix+"/n"+strconv.Itoa((i+seq)%cfg.Keys), opts...)
		return err
	})
	return nil
}

// runKeepAlive measures KeepAlives over live sessions (which the SDK also
// keeps alive by itself, every TTL/3), the log entries committed meanwhile
// and the leader's CPU.
func runKeepAlive(ctx context.Context, cfg Config, clients []*lockd.Client, sessions []*lockd.Session,
	recs []*recorder, win window, res *Result, log *logger) error {
	hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	defer hc.CloseIdleConnections()
	hc.Transport.(*http.Transport).MaxIdleConnsPerHost = cfg.Clients
	// Wait out the warm-up, then read the leader's state.
	if err := sleepUntil(ctx, win.from); err != nil {
		return nil
	}
	snap := func() (string, uint64, float64, error) {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		info, err := clients[0].Cluster(sctx)
		if err != nil {
			return "", 0, 0, err
		}
		var commit uint64
		for _, r := range info.Replicas {
			if r.ID == info.Leader {
				commit = r.CommitIndex
			}
		}
		cpu, err := processCPU(sctx, hc, info.LeaderURL)
		if err != nil {
			cpu = -1
		}
		return info.LeaderURL, commit, cpu, nil
	}
	leaderURL, c0, cpu0, err := snap()
	if err != nil {
		return err
	}
	t0 := time.Now()
	var next atomic.Int64
	loop(ctx, recs, win, func(ctx context.Context, _, _ int) error {
		s := sessions[int(next.Add(1)-1)%len(sessions)]
		return keepAlive(ctx, hc, leaderURL, s.ID())
	})
	elapsed := time.Since(t0)
	_, c1, cpu1, err := snap()
	if err != nil {
		return err
	}
	res.CommitDelta = c1 - c0
	res.Notes = append(res.Notes, fmt.Sprintf("%d live sessions; the leader's commit index moved by %d during the window (KeepAlives write no log entries; other entries are lock-service ticks and session expiries)",
		len(sessions), c1-c0))
	if cpu0 >= 0 && cpu1 >= 0 {
		res.LeaderCPU = (cpu1 - cpu0) / elapsed.Seconds()
		res.Notes = append(res.Notes, fmt.Sprintf("leader CPU over the window: %.2f cores", res.LeaderCPU))
	}
	expired := 0
	for _, s := range sessions {
		if s.Err() != nil {
			expired++
		}
	}
	if expired > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("%d sessions expired during the run", expired))
		res.Errors += expired
		if res.ErrorsByMessage == nil {
			res.ErrorsByMessage = map[string]int{}
		}
		res.ErrorsByMessage["session expired"] += expired
	}
	return nil
}

func keepAlive(ctx context.Context, hc *http.Client, base, id string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1/sessions/"+id+"/keepalive", nil)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := drain(resp); err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("keepalive: %s", resp.Status)
	}
	return nil
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// watchState is a watch run's watchers and writer, set up before the clock
// starts: every stream is open and has delivered a write.
type watchState struct {
	path   string
	writer *lockd.Client
	got    [][]delivery
	seen   []atomic.Int64
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type delivery struct {
	index uint64
	at    time.Time
}

func (st *watchState) close() {
	st.cancel()
	st.wg.Wait()
	if st.writer != nil {
		st.writer.Close()
	}
}

// setupWatch starts clients watchers on one node and writes it until every
// watcher has seen a write.
func setupWatch(ctx, setup context.Context, cfg Config, prefix string, clients []*lockd.Client, recs []*recorder) (*watchState, error) {
	st := &watchState{path: prefix + "/n", got: make([][]delivery, len(clients)), seen: make([]atomic.Int64, len(clients))}
	val := value(cfg.ValueSize)
	if _, err := clients[0].Put(setup, st.path, val); err != nil {
		return nil, fmt.Errorf("writing the watched node: %w", err)
	}
	writer, err := lockd.New(clients[0].Endpoints())
	if err != nil {
		return nil, err
	}
	st.writer = writer
	var wctx context.Context
	wctx, st.cancel = context.WithCancel(ctx)
	for i, c := range clients {
		w := c.Watch(wctx, st.path, lockd.WatchBuffer(1024))
		st.wg.Go(func() {
			for ev := range w.Events() {
				if ev.Type == lockd.EventContentsChanged {
					st.got[i] = append(st.got[i], delivery{index: ev.Index, at: time.Now()})
					st.seen[i].Add(1)
				}
			}
			if err := w.Err(); err != nil {
				recs[i].fail(err)
			}
		})
	}
	for range 200 {
		if _, err := writer.Put(setup, st.path, val); err != nil {
			st.close()
			return nil, fmt.Errorf("priming the watches: %w", err)
		}
		if sleepUntil(setup, time.Now().Add(50*time.Millisecond)) != nil {
			break
		}
		all := true
		for i := range st.seen {
			if st.seen[i].Load() == 0 {
				all = false
				break
			}
		}
		if all {
			return st, nil
		}
	}
	st.close()
	return nil, errors.New("watch: the watchers did not all see a write within 10s")
}

// runWatch: one writer writes the watched node every interval. A
// delivery's latency runs from the start of the write that caused it.
func runWatch(ctx context.Context, cfg Config, st *watchState, recs []*recorder, win window, res *Result) error {
	val := value(cfg.ValueSize)
	writes := map[uint64]time.Time{}
	tick := time.NewTicker(cfg.Interval)
	defer tick.Stop()
	writeErrs := &recorder{}
	for ctx.Err() == nil {
		t0 := time.Now()
		n, err := st.writer.Put(ctx, st.path, val)
		if err == nil {
			writes[n.ModifyIndex] = t0
		} else if ctx.Err() == nil && !t0.Before(win.from) {
			writeErrs.fail(fmt.Errorf("write: %w", err))
		}
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	// Let the last deliveries arrive, then stop the watches.
	time.Sleep(200 * time.Millisecond)
	st.cancel()
	st.wg.Wait()

	for i := range st.got {
		for _, d := range st.got[i] {
			t0, ok := writes[d.index]
			if !ok || !win.counts(t0, t0) {
				continue
			}
			recs[i].lat = append(recs[i].lat, d.at.Sub(t0))
		}
	}
	recs[0].errs = mergeErrs(recs[0].errs, writeErrs.errs)
	counted := 0
	for _, t0 := range writes {
		if win.counts(t0, t0) {
			counted++
		}
	}
	res.Notes = append(res.Notes, fmt.Sprintf("%d writes in the window, %d watchers: %d deliveries expected",
		counted, len(st.got), counted*len(st.got)))
	return nil
}

func mergeErrs(a, b map[string]int) map[string]int {
	if len(b) == 0 {
		return a
	}
	if a == nil {
		a = map[string]int{}
	}
	for k, v := range b {
		a[k] += v
	}
	return a
}
