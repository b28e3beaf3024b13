package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync/atomic"
	"time"

	lockd "github.com/lockd/lockd/clients/go"
)

// Failover measures how fast a local cell serves writes again after its
// leader dies, as the reference harnesses do for etcd and ZooKeeper. Each
// round:
//
//  1. wait (≤ 30s) until every replica answers and all name one leader;
//  2. a Client on the surviving replicas only (no discovery) is warmed up
//     with 3 Puts;
//  3. note the time and SIGKILL the leader's process;
//  4. Put in a loop, each attempt given 100ms, attempts at least 5ms
//     apart, until one succeeds (≤ 30s): the sample is kill → first
//     successful Put;
//  5. restart the killed replica on its data and wait (≤ 30s) until the
//     cell is healthy and a linearizable read through it succeeds;
//  6. wait Settle (not after the last round).
//
// A round that fails stops the run; the rounds left count as errors.
func runFailover(ctx context.Context, cfg Config) (Result, error) {
	log := &logger{w: cfg.Log}
	res := Result{System: "lockd", Workload: WorkloadFailover, Kills: cfg.Kills}
	bin, err := lockdBinary(cfg)
	if err != nil {
		return res, err
	}
	var cell *localCell
	if cfg.CellDir != "" {
		if cell, err = openLocalCell(bin, cfg.CellDir, log); err != nil {
			return res, err
		}
		defer func() {
			// The replicas restarted here are this bench's children, not
			// the cell's: say so, so that they can be stopped.
			cell.mu.Lock()
			defer cell.mu.Unlock()
			for i, p := range cell.procs {
				log.printf("failover: replica %d restarted by the bench keeps running as pid %d (%s)", cell.cfgs[i].ID, p.Process.Pid, cell.paths[i])
			}
		}()
	} else {
		dir := cfg.LocalDir
		if dir == "" {
			tmp, err := os.MkdirTemp("", "lockd-bench-cell-")
			if err != nil {
				return res, err
			}
			defer os.RemoveAll(tmp)
			dir = tmp
		}
		log.printf("failover: starting a %d-replica cell under %s (client ports %d-%d)", cfg.Replicas, dir, cfg.BasePort, cfg.BasePort+cfg.Replicas-1)
		if cell, err = startLocalCell(bin, dir, cfg.Replicas, cfg.BasePort, cfg.Cell, log); err != nil {
			return res, err
		}
		defer cell.stop()
	}
	path := fmt.Sprintf("/ls/%s/bench/failover/%s", cfg.Cell, runID())
	val := value(cfg.ValueSize)
	if cfg.Prefill > 0 {
		if _, err := cell.healthy(ctx, 30*time.Second); err != nil {
			return res, err
		}
		t0 := time.Now()
		if err := prefill(ctx, cell.endpoints(), path+"-prefill", cfg.Prefill, val); err != nil {
			return res, fmt.Errorf("prefill: %w", err)
		}
		log.printf("failover: wrote %d nodes in %s", cfg.Prefill, time.Since(t0).Round(time.Millisecond))
	}
	for round := 1; round <= cfg.Kills; round++ {
		sample, restart, err := failoverRound(ctx, cfg, cell, log, round, path, val)
		if err != nil {
			if ctx.Err() != nil {
				return res, ctx.Err()
			}
			left := cfg.Kills - len(res.Samples)
			log.printf("failover: round %d: %v; stopping, %d rounds count as errors", round, err, left)
			res.Errors += left
			if res.ErrorsByMessage == nil {
				res.ErrorsByMessage = map[string]int{}
			}
			res.ErrorsByMessage[err.Error()] += left
			break
		}
		res.Samples = append(res.Samples, sample)
		res.Restarts = append(res.Restarts, restart)
		if round < cfg.Kills {
			if err := sleepUntil(ctx, time.Now().Add(cfg.Settle)); err != nil {
				return res, err
			}
		}
	}
	sorted := slices.Clone(res.Samples)
	slices.Sort(sorted)
	res.Ops = len(sorted)
	res.P50, res.P99 = percentile(sorted, 0.50), percentile(sorted, 0.99)
	if len(sorted) > 0 {
		res.Min, res.Max = sorted[0], sorted[len(sorted)-1]
	}
	if rs := slices.Sorted(slices.Values(res.Restarts)); len(rs) > 0 {
		res.Notes = append(res.Notes, fmt.Sprintf("restarted replica serving a linearizable read again after p50 %s, max %s (namespace: %d prefilled nodes)",
			fmtMs(percentile(rs, 0.5)), fmtMs(rs[len(rs)-1]), cfg.Prefill))
	}
	return res, nil
}

// prefill writes n nodes under dir, 64 writers at a time.
func prefill(ctx context.Context, endpoints []string, dir string, n int, val []byte) error {
	const writers = 64
	clients := make([]*lockd.Client, writers)
	for i := range clients {
		c, err := lockd.New(endpoints)
		if err != nil {
			return err
		}
		defer c.Close()
		clients[i] = c
	}
	var next atomic.Int64
	return parallel(ctx, writers, func(w int) error {
		for {
			i := next.Add(1) - 1
			if i >= int64(n) {
				return nil
			}
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			_, err := clients[w].Put(wctx, fmt.Sprintf("%s/d%d/n%d", dir, i%100, i), val)
			cancel()
			if err != nil {
				return err
			}
		}
	})
}

func failoverRound(ctx context.Context, cfg Config, cell *localCell, log *logger, round int, path string, val []byte) (sample, restart time.Duration, err error) {
	li, err := cell.healthy(ctx, 30*time.Second)
	if err != nil {
		return 0, 0, err
	}
	var survivors []string
	for i, ep := range cell.endpoints() {
		if i != li {
			survivors = append(survivors, ep)
		}
	}
	// Start the survivors' list at a different replica each round.
	k := round % len(survivors)
	survivors = append(survivors[k:], survivors[:k]...)
	c, err := lockd.New(survivors, lockd.WithoutDiscovery(), lockd.WithRetryWindow(100*time.Millisecond))
	if err != nil {
		return 0, 0, err
	}
	defer c.Close()
	for range 3 {
		wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.Put(wctx, path, val)
		cancel()
		if err != nil {
			return 0, 0, fmt.Errorf("warm-up write: %w", err)
		}
	}
	pid, err := cell.pid(li)
	if err != nil {
		return 0, 0, err
	}
	id := cell.cfgs[li].ID
	t0 := time.Now()
	if err := cell.kill(li); err != nil {
		return 0, 0, err
	}
	failures := map[string]int{}
	giveUp := t0.Add(30 * time.Second)
	for {
		attempt := time.Now()
		actx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
		_, err := c.Put(actx, path, val)
		cancel()
		if err == nil {
			sample = time.Since(t0)
			break
		}
		if ctx.Err() != nil {
			return 0, 0, ctx.Err()
		}
		failures[shortErr(err)]++
		if time.Now().After(giveUp) {
			return 0, 0, fmt.Errorf("no write succeeded within 30s of killing replica %d", id)
		}
		if d := 5*time.Millisecond - time.Since(attempt); d > 0 {
			time.Sleep(d)
		}
	}
	// Restart the killed replica and wait until it serves again.
	if err := cell.waitGone(li, pid, 10*time.Second); err != nil {
		return 0, 0, err
	}
	r0 := time.Now()
	if err := cell.start(li, false); err != nil {
		return 0, 0, err
	}
	newLeader, err := cell.healthy(ctx, 30*time.Second)
	if err != nil {
		return 0, 0, fmt.Errorf("after restarting replica %d: %w", id, err)
	}
	rc, err := lockd.New([]string{cell.endpoints()[li]}, lockd.WithoutDiscovery())
	if err != nil {
		return 0, 0, err
	}
	defer rc.Close()
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	_, err = rc.Get(rctx, path)
	cancel()
	restart = time.Since(r0)
	if err != nil {
		return 0, 0, fmt.Errorf("linearizable read through restarted replica %d: %w", id, err)
	}
	log.printf("failover: round %d: killed leader r%d (pid %d): first write after %s (%d failed attempts %v); new leader r%d; r%d serving again %s after restart",
		round, id, pid, fmtMs(sample), sum(failures), failures, cell.cfgs[newLeader].ID, id, restart.Round(time.Millisecond))
	return sample, restart, nil
}

func sum(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// shortErr names an error by its kind, for the per-round summary.
func shortErr(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, lockd.ErrNoLeader):
		return "no_leader"
	case errors.Is(err, lockd.ErrUnavailable):
		return "unavailable"
	}
	return err.Error()
}
