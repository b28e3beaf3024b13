package dockerdrill

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// drill is one run: the cell, a client, and the phase clock.
type drill struct {
	t     *testing.T
	ctx   context.Context
	c     *cell
	cl    *client
	began time.Time
}

func (d *drill) logf(format string, args ...any) {
	d.t.Helper()
	d.t.Logf("[%6.1fs] %s", time.Since(d.began).Seconds(), fmt.Sprintf(format, args...))
}

// let gives the workload time to run against the cell as it is now.
func (d *drill) let(dur time.Duration) {
	d.t.Helper()
	select {
	case <-d.ctx.Done():
		d.t.Fatalf("drill out of time: %v", d.ctx.Err())
	case <-time.After(dur):
	}
}

// eventually polls cond every 50 ms until it holds or timeout passes; the
// last reason cond gave is in the failure.
func (d *drill) eventually(timeout time.Duration, what string, cond func() (bool, string)) {
	d.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, why := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) || d.ctx.Err() != nil {
			d.t.Fatalf("timed out after %v waiting for %s: %s", timeout, what, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// selves asks each of ids for its own view.
func (d *drill) selves(ids []int) (map[int]replicaView, error) {
	out := map[int]replicaView{}
	for _, id := range ids {
		v, err := d.cl.self(d.ctx, d.c.url(id))
		if err != nil {
			return nil, fmt.Errorf("replica %d: %v", id, err)
		}
		out[id] = v
	}
	return out, nil
}

// agreedLeader: every replica in ids answers, names the same leader, and
// that leader is among them and says it leads.
func (d *drill) agreedLeader(ids []int) (int, string) {
	vs, err := d.selves(ids)
	if err != nil {
		return 0, err.Error()
	}
	leader := ""
	for _, id := range ids {
		v := vs[id]
		if v.Leader == "" || leader != "" && v.Leader != leader {
			return 0, fmt.Sprintf("views differ: %s", describeViews(vs))
		}
		leader = v.Leader
	}
	lid, _ := strconv.Atoi(leader)
	if v, ok := vs[lid]; !ok || v.Role != "leader" {
		return 0, fmt.Sprintf("leader %s is not among %v or does not lead: %s", leader, ids, describeViews(vs))
	}
	return lid, ""
}

func describeViews(vs map[int]replicaView) string {
	var parts []string
	for id := 1; id <= replicas; id++ {
		if v, ok := vs[id]; ok {
			parts = append(parts, fmt.Sprintf("%d:%s(leader %s, applied %d/%d, recovering %v)", id, v.Role, v.Leader, v.AppliedIndex, v.CommitIndex, v.Recovering))
		}
	}
	return strings.Join(parts, " ")
}

// waitLeader waits for the replicas other than out to agree on a leader.
func (d *drill) waitLeader(timeout time.Duration, out ...int) int {
	d.t.Helper()
	var ids []int
	for id := 1; id <= replicas; id++ {
		if !slices.Contains(out, id) {
			ids = append(ids, id)
		}
	}
	var leader int
	d.eventually(timeout, fmt.Sprintf("replicas %v to agree on a leader", ids), func() (bool, string) {
		id, why := d.agreedLeader(ids)
		leader = id
		return id != 0, why
	})
	return leader
}

// waitRecovered waits until the whole cell is healthy again: five replicas
// answer and agree on the leader, none recovering, every one applied up to
// the leader's commit index, /readyz answers 200 everywhere, the leader's
// cell view shows all five up with no lag, and every container's
// HEALTHCHECK says healthy.
func (d *drill) waitRecovered(timeout time.Duration) int {
	d.t.Helper()
	all := []int{1, 2, 3, 4, 5}
	var leader int
	d.eventually(timeout, "the cell to recover", func() (bool, string) {
		id, why := d.agreedLeader(all)
		if id == 0 {
			return false, why
		}
		vs, err := d.selves(all)
		if err != nil {
			return false, err.Error()
		}
		commit := vs[id].CommitIndex
		for _, r := range all {
			if vs[r].Recovering || vs[r].Role != "leader" && vs[r].Role != "follower" || vs[r].AppliedIndex < commit {
				return false, "not caught up: " + describeViews(vs)
			}
			rep, err := d.cl.call(d.ctx, 2*time.Second, http.MethodGet, d.c.url(r)+"/readyz", nil)
			if err != nil || rep.Status != http.StatusOK {
				return false, fmt.Sprintf("replica %d not ready: %v %s", r, err, rep.Raw)
			}
		}
		cv, err := d.cl.cluster(d.ctx, d.c.url(id))
		if err != nil {
			return false, err.Error()
		}
		for _, r := range cv.Replicas {
			if !r.Up || r.Lag != 0 || r.Recovering {
				return false, fmt.Sprintf("leader's view: replica %s up=%v lag=%d recovering=%v", r.ID, r.Up, r.Lag, r.Recovering)
			}
		}
		for _, r := range all {
			if h := d.c.health(d.ctx, r); h != "healthy" {
				return false, fmt.Sprintf("container %s health %q", d.c.container(r), h)
			}
		}
		leader = id
		return true, ""
	})
	return leader
}

// budget is how long the drill may take: the test's deadline less a margin
// for cleanup.
func budget(t *testing.T) time.Duration {
	if dl, ok := t.Deadline(); ok {
		return time.Until(dl) - 45*time.Second
	}
	return 10 * time.Minute
}

// TestDockerDrill is the failure drill across containers (see the package
// comment). It needs a Docker engine; without one it skips loudly.
func TestDockerDrill(t *testing.T) {
	requireDocker(t)
	ctx, cancel := context.WithTimeout(context.Background(), budget(t))
	defer cancel()
	d := &drill{t: t, ctx: ctx, cl: newClient(), began: time.Now()}
	defer d.cl.close()
	removeStale(ctx, t)
	image := buildImage(t, ctx)
	d.c = startCell(t, ctx, image)
	c := d.c

	first := d.waitRecovered(60 * time.Second)
	d.logf("cell up: leader %d, five replicas healthy", first)

	start := time.Now()
	urls := c.urls // fixed host ports: the same five whatever runs behind them
	regs := newRegisters(d.cl, urls, c.cell, 6, start)
	if err := regs.setup(ctx); err != nil {
		t.Fatalf("setting up the registers: %v", err)
	}
	lks := newLocks(d.cl, urls, c.cell, 2, start)
	wctx, stopWork := context.WithCancel(ctx)
	waitRegs, waitLocks := regs.run(wctx, 4), lks.run(wctx, 3)
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			stopWork()
			waitRegs()
			waitLocks()
		}
	}
	t.Cleanup(stop) // runs before the cell is removed
	d.let(3 * time.Second)
	d.logf("workload running: %s", regs.summary())

	// 1. A real partition: the leader loses its network.
	l1 := first
	c.do(ctx, "partition", l1)
	d.logf("partitioned the leader, replica %d (docker network disconnect of the cell network)", l1)
	l2 := d.waitLeader(30*time.Second, l1)
	d.logf("new leader %d among the other four", l2)
	d.checkPartitioned(l1, l2)
	d.let(3 * time.Second)

	// 2. Kill the new leader: three replicas are left to form a majority.
	c.do(ctx, "kill", l2)
	d.logf("killed the leader, replica %d (docker kill)", l2)
	l3 := d.waitLeader(30*time.Second, l1, l2)
	d.logf("new leader %d among the remaining three", l3)
	d.let(3 * time.Second)

	// 3. Restart the killed replica on its volume.
	c.do(ctx, "start", l2)
	d.logf("restarted replica %d on its volume", l2)
	d.waitLeader(30*time.Second, l1)
	d.logf("replica %d is back and follows", l2)
	d.let(2 * time.Second)

	// 4. Replace a replica's disk: same id, empty volume, no bootstrap.
	wiped := 0
	for id := 1; id <= replicas && wiped == 0; id++ {
		if id != l1 && id != l2 && id != l3 {
			wiped = id
		}
	}
	c.do(ctx, "replace", wiped)
	d.logf("replaced replica %d with an empty volume (same id, no bootstrap)", wiped)
	sawRecovering := false
	d.eventually(60*time.Second, fmt.Sprintf("replica %d to catch up and rejoin", wiped), func() (bool, string) {
		v, err := d.cl.self(ctx, c.url(wiped))
		if err != nil {
			return false, err.Error()
		}
		if v.Recovering {
			sawRecovering = true
		}
		return !v.Recovering && v.Leader != "" && v.Role == "follower", fmt.Sprintf("role %s recovering %v", v.Role, v.Recovering)
	})
	loaded := c.logs(ctx, wiped, 0)
	if !strings.Contains(loaded, "recovering=true") {
		t.Errorf("replica %d started on an empty volume without bootstrap but its log does not say recovering=true:\n%s", wiped, firstLines(loaded, 15))
	}
	d.logf("replica %d rejoined (seen recovering over HTTP: %v; log says recovering=true at start)", wiped, sawRecovering)
	d.let(2 * time.Second)

	// 5. Heal the partition.
	c.do(ctx, "heal", l1)
	d.logf("reconnected replica %d", l1)
	d.let(4 * time.Second)

	stop()
	workEnd := time.Since(start)
	d.logf("workload stopped; registers: %s", regs.summary())
	d.logf("locks: %s", lks.summary())

	final := d.waitRecovered(60 * time.Second)
	d.logf("recovered: leader %d, all five up, none recovering, no lag, all healthy", final)

	// Every replica converges on the leader's state (the wiped one too).
	d.checkConvergence(regs, final)
	regs.finalReads(c.urls())

	// Linearizability of everything the register clients saw.
	hist := regs.history()
	res, info := porcupine.CheckOperationsVerbose(registerModel, hist, 90*time.Second)
	switch res {
	case porcupine.Ok:
		d.logf("registers: %d operations, linearizable", len(hist))
	case porcupine.Illegal:
		t.Errorf("registers: the history of %d operations is NOT linearizable%s", len(hist), saveVisualization(t, info))
	default:
		t.Errorf("registers: porcupine could not decide linearizability of %d operations in time", len(hist))
	}
	for _, p := range regs.problems {
		t.Error(p)
	}
	if gap, at := regs.longestGap(workEnd); gap > 0 {
		d.logf("longest time without an answered register operation: %v, from %.1fs",
			gap.Round(time.Millisecond), (start.Sub(d.began) + at).Seconds())
	}

	// No acknowledged write lost: every 201 create is there, on the leader
	// (linearizable) and on every replica.
	for id := 1; id <= replicas; id++ {
		missing, unknown, err := regs.checkLog(ctx, c.url(id), id != final)
		if err != nil {
			t.Errorf("listing the log on replica %d: %v", id, err)
			continue
		}
		if len(missing) > 0 {
			t.Errorf("replica %d lost %d acknowledged creates: %v", id, len(missing), missing)
		}
		if len(unknown) > 0 {
			t.Errorf("replica %d holds %d nodes nobody created: %v", id, len(unknown), unknown)
		}
	}
	regs.mu.Lock()
	acked := len(regs.acked)
	regs.mu.Unlock()
	if acked < 20 {
		t.Errorf("only %d acknowledged creates: the register workload barely ran", acked)
	} else if !t.Failed() {
		d.logf("acknowledged creates: %d, all present on all five replicas", acked)
	}

	// No double holders, fencing held.
	grants, fences := lks.snapshot()
	if bad := checkLocks(grants, fences); len(bad) > 0 {
		for _, b := range bad {
			t.Error(b)
		}
	} else {
		d.logf("locks: %d grants, %d sequencer checks, no double holders", len(grants), len(fences))
	}
	if len(grants) < 10 {
		t.Errorf("only %d lock grants: the lock workload barely ran", len(grants))
	}
	d.logf("drill done in %v", time.Since(d.began).Round(100*time.Millisecond))
}

// checkPartitioned makes sure the partition is real: the cut-off replica
// cannot reach a peer over the cell network (nor the peer it), while
// clients on the host still reach it.
func (d *drill) checkPartitioned(cut, peer int) {
	d.t.Helper()
	if d.c.reaches(d.ctx, cut, peer) || d.c.reaches(d.ctx, peer, cut) {
		d.t.Fatalf("replica %d was disconnected but still talks with replica %d: the partition leaks", cut, peer)
	}
	rep, err := d.cl.call(d.ctx, 2*time.Second, http.MethodGet, d.c.url(cut)+"/healthz", nil)
	if err != nil || rep.Status != http.StatusOK {
		d.t.Fatalf("clients cannot reach the partitioned replica %d: %v %s", cut, err, rep.Raw)
	}
	d.logf("partition checked: replica %d and %d cannot reach each other; clients still reach %d", cut, peer, cut)
}

// checkConvergence waits until every replica's own (stale) view of the
// registers and the log equals the leader's linearizable one.
func (d *drill) checkConvergence(regs *registers, leader int) {
	d.t.Helper()
	paths := append(slices.Clone(regs.keys), regs.log)
	read := func(id int, stale bool) ([]nodeBody, error) {
		var out []nodeBody
		for _, p := range paths {
			q := "?children=true"
			if stale {
				q += "&stale=true"
			}
			rep, err := d.cl.call(d.ctx, 3*time.Second, http.MethodGet, d.c.url(id)+"/v1/nodes"+p+q, nil)
			if err != nil {
				return nil, err
			}
			var nb nodeBody
			if rep.Status != http.StatusOK || rep.decode(&nb) != nil {
				return nil, fmt.Errorf("GET %s: %d %s", p, rep.Status, rep.Raw)
			}
			out = append(out, nb)
		}
		return out, nil
	}
	d.eventually(30*time.Second, "every replica to hold the leader's state", func() (bool, string) {
		want, err := read(leader, false)
		if err != nil {
			return false, err.Error()
		}
		for id := 1; id <= replicas; id++ {
			got, err := read(id, true)
			if err != nil {
				return false, fmt.Sprintf("replica %d: %v", id, err)
			}
			if !reflect.DeepEqual(got, want) {
				return false, fmt.Sprintf("replica %d differs from leader %d", id, leader)
			}
		}
		return true, ""
	})
	d.logf("all five replicas hold the same registers and log as leader %d", leader)
}

// saveVisualization writes porcupine's HTML view of a failed check where it
// outlives the test, and says where.
func saveVisualization(t *testing.T, info porcupine.LinearizationInfo) string {
	dir, err := os.MkdirTemp("", "lockd-drill-")
	if err != nil {
		return ""
	}
	path := filepath.Join(dir, "registers.html")
	if err := porcupine.VisualizePath(registerModel, info, path); err != nil {
		t.Logf("visualization: %v", err)
		return ""
	}
	return "; see " + path
}

func firstLines(s string, n int) string {
	lines := strings.SplitN(s, "\n", n+1)
	if len(lines) > n {
		lines = lines[:n]
	}
	return strings.Join(lines, "\n")
}
