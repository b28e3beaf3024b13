package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/lockd/lockd/api/wire"
)

// FaultKinds are the faults the schedule deals, from a seeded shuffled deck
// so that a run of a few dozen seconds meets most of them.
var FaultKinds = []string{
	"kill",             // SIGKILL one replica, restart it later
	"kill-leader",      // SIGKILL the leader
	"kill-two",         // SIGKILL the leader and one more at once
	"pause",            // SIGSTOP one replica for longer than the lease
	"pause-leader",     // SIGSTOP the leader
	"pause-isolated",   // SIGSTOP the leader and cut it off; it continues alone a while before the network heals
	"partition-leader", // the leader alone on its side
	"partition-split",  // three against two
	"partition-bridge", // {a,b,c} and {c,d,e}: c sees both sides
	"wipe",             // lose a replica's data directory; it rebuilds by catch-up
}

// FaultOrder is the order in which a run of seed deals the fault kinds
// (less skip): a fresh shuffle of them all, again and again. It depends on
// the seed alone, so a seed's first faults are known in advance (the CI
// profile picks its seeds so that together they meet every kind).
func FaultOrder(seed int64, skip []string, n int) []string {
	var kinds []string
	for _, k := range FaultKinds {
		if !slices.Contains(skip, k) {
			kinds = append(kinds, k)
		}
	}
	if len(kinds) == 0 {
		return nil
	}
	rnd := rand.New(rand.NewSource(seed))
	var out []string
	for len(out) < n {
		deck := append([]string(nil), kinds...)
		rnd.Shuffle(len(deck), func(i, j int) { deck[i], deck[j] = deck[j], deck[i] })
		out = append(out, deck...)
	}
	return out[:n]
}

// nemesis injects faults one at a time until the next would outlast until:
// a quiet spell, a fault held 1-4 s, heal, and a wait for the cell to
// recover. It returns how many faults it injected.
func (w *world) nemesis(ctx context.Context, rnd *rand.Rand, until time.Time) int {
	order := FaultOrder(w.cfg.Seed, w.cfg.SkipFaults, 10_000)
	if len(order) == 0 {
		w.pause(ctx, nil, time.Until(until))
		return 0
	}
	n := 0
	for ctx.Err() == nil && n < len(order) {
		w.pause(ctx, rnd, time.Second)
		hold := time.Second + time.Duration(rnd.Int63n(int64(3*time.Second)))
		if time.Until(until) < hold {
			break
		}
		kind := order[n]
		n++
		heal := w.inject(ctx, rnd, kind, hold)
		w.pause(ctx, nil, hold)
		heal()
		if _, err := w.waitHealthy(ctx, 30*time.Second, false); err != nil {
			w.problem("no recovery within 30s after %s: %v", kind, err)
			w.healAll()
		}
	}
	return n
}

// inject starts one fault and returns what heals it.
func (w *world) inject(ctx context.Context, rnd *rand.Rand, kind string, hold time.Duration) (heal func()) {
	leader := w.leader(ctx)
	pick := func() uint32 { return uint32(1 + rnd.Intn(replicas)) }
	if leader == 0 {
		leader = pick()
	}
	other := func(not uint32) uint32 {
		for {
			if r := pick(); r != not {
				return r
			}
		}
	}
	mode := Drop
	if rnd.Intn(2) == 0 {
		mode = BlackHole
	}
	perm := func() []uint32 {
		p := make([]uint32, replicas)
		for i, v := range rnd.Perm(replicas) {
			p[i] = uint32(v + 1)
		}
		return p
	}
	switch kind {
	case "kill", "kill-leader", "wipe":
		r := leader
		if kind != "kill-leader" {
			r = pick()
		}
		w.event("fault %s: SIGKILL replica %d (leader %d) for %v", kind, r, leader, hold)
		w.cellDo(func() { w.cell.Kill(r) })
		return func() {
			if kind == "wipe" {
				w.event("heal: wipe the data directory of replica %d and restart it empty", r)
				w.cellDo(func() { w.cell.Wipe(r) })
			} else {
				w.event("heal: restart replica %d", r)
			}
			w.cellDo(func() { w.cell.Restart(r) })
		}
	case "kill-two":
		a, b := leader, other(leader)
		w.event("fault %s: SIGKILL replicas %d and %d (leader %d) for %v", kind, a, b, leader, hold)
		w.cellDo(func() { w.cell.Kill(a); w.cell.Kill(b) })
		return func() {
			w.event("heal: restart replicas %d and %d", a, b)
			w.cellDo(func() { w.cell.Restart(a); w.cell.Restart(b) })
		}
	case "pause", "pause-leader":
		r := leader
		if kind == "pause" {
			r = pick()
		}
		w.event("fault %s: SIGSTOP replica %d (leader %d) for %v", kind, r, leader, hold)
		w.cellDo(func() { w.cell.Pause(r) })
		return func() {
			w.event("heal: SIGCONT replica %d", r)
			w.cellDo(func() { w.cell.Resume(r) })
		}
	case "pause-isolated":
		w.event("fault %s: SIGSTOP replica %d (the leader) and cut it off (%s) for %v", kind, leader, mode, hold)
		w.cellDo(func() { w.cell.Pause(leader) })
		w.nw.Partition([][]uint32{{leader}, othersThan(leader)}, mode)
		return func() {
			w.event("heal: SIGCONT replica %d, still cut off", leader)
			w.cellDo(func() { w.cell.Resume(leader) })
			w.pause(ctx, nil, time.Second) // it runs alone, believing it leads, for a while
			w.nw.Heal()
			w.event("heal: the network passes again")
		}
	}
	var groups [][]uint32
	switch kind {
	case "partition-leader":
		groups = [][]uint32{{leader}, othersThan(leader)}
	case "partition-split":
		p := perm()
		groups = [][]uint32{p[:3], p[3:]}
	case "partition-bridge":
		p := perm()
		groups = [][]uint32{p[:3], p[2:]}
	default:
		panic("unknown fault " + kind)
	}
	w.nw.Partition(groups, mode)
	w.event("fault %s: groups %v (%s; leader %d) for %v", kind, groups, mode, leader, hold)
	return func() {
		w.nw.Heal()
		w.event("heal: the network passes again")
	}
}

// cellDo runs a cell operation, logging a failure as a problem.
func (w *world) cellDo(f func()) {
	if err := guard(f); err != nil {
		w.problem("cell operation failed: %v", err)
	}
}

// healAll undoes every fault: the network passes, paused replicas continue,
// dead ones restart.
func (w *world) healAll() {
	w.nw.Heal()
	for _, r := range w.cell.Replicas {
		switch {
		case w.cell.Paused(r.ID):
			w.cellDo(func() { w.cell.Resume(r.ID) })
		case !r.Running():
			w.cellDo(func() { w.cell.Restart(r.ID) })
		}
	}
}

// selfView is what a replica says of itself (GET /v1/cluster/self).
type selfView struct {
	ID           string `json:"id"`
	Role         string `json:"role"`
	Leader       string `json:"leader"`
	Recovering   bool   `json:"recovering"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
}

// views asks every running, unpaused replica about itself; a replica that
// does not answer (or is down) has a nil entry.
func (w *world) views(ctx context.Context) []*selfView {
	out := make([]*selfView, replicas)
	var wg sync.WaitGroup
	for i, r := range w.cell.Replicas {
		if !r.Running() || w.cell.Paused(r.ID) {
			continue
		}
		wg.Go(func() {
			rep := do(ctx, w.hc, 500*time.Millisecond, http.MethodGet, w.urls[i]+"/v1/cluster/self", nil)
			var v selfView
			if rep.outcome() == OK && rep.decode(&v) == nil {
				out[i] = &v
			}
		})
	}
	wg.Wait()
	return out
}

// leader returns the replica that says it leads and that most others follow,
// or 0.
func (w *world) leader(ctx context.Context) uint32 {
	vs := w.views(ctx)
	votes := map[string]int{}
	for _, v := range vs {
		if v != nil && v.Leader != "" {
			votes[v.Leader]++
		}
	}
	best, bestVotes := uint32(0), 0
	for i, v := range vs {
		if v != nil && v.Role == "leader" && votes[v.ID] > bestVotes {
			best, bestVotes = uint32(i+1), votes[v.ID]
		}
	}
	return best
}

// healthy reports the leader when every replica is up, answers, agrees on
// one leader that says it leads, and none is recovering; else why not.
func (w *world) healthy(ctx context.Context) (uint32, error) {
	vs := w.views(ctx)
	leader := ""
	for i, v := range vs {
		switch {
		case v == nil:
			return 0, fmt.Errorf("replica %d does not answer", i+1)
		case v.Recovering:
			return 0, fmt.Errorf("replica %d is recovering (applied %d)", i+1, v.AppliedIndex)
		case v.Leader == "":
			return 0, fmt.Errorf("replica %d knows no leader", i+1)
		case leader != "" && v.Leader != leader:
			return 0, fmt.Errorf("replicas disagree on the leader: %s and %s", leader, v.Leader)
		}
		leader = v.Leader
	}
	id, err := strconv.Atoi(leader)
	if err != nil || id < 1 || id > replicas || vs[id-1].Role != "leader" {
		return 0, fmt.Errorf("leader %q does not say it leads", leader)
	}
	return uint32(id), nil
}

// waitHealthy polls until the cell is healthy (and, with probe, takes a
// write through the leader), or timeout passes.
func (w *world) waitHealthy(ctx context.Context, timeout time.Duration, probe bool) (uint32, error) {
	deadline := time.Now().Add(timeout)
	contents := "probe"
	var last error
	for time.Now().Before(deadline) && ctx.Err() == nil {
		leader, err := w.healthy(ctx)
		if err == nil && probe {
			r := do(ctx, w.hc, w.opTimeout, http.MethodPut, w.urls[leader-1]+"/v1/nodes"+w.base+"/probe",
				wire.PutNodeRequest{Contents: &contents})
			if r.outcome() != OK {
				err = fmt.Errorf("probe write through leader %d: %v", leader, r)
			}
		}
		if err == nil {
			return leader, nil
		}
		last = err
		w.pause(ctx, nil, 50*time.Millisecond)
	}
	if last == nil {
		last = errors.New("cancelled")
	}
	return 0, last
}

// othersThan lists every replica but r.
func othersThan(r uint32) []uint32 {
	var out []uint32
	for i := uint32(1); i <= replicas; i++ {
		if i != r {
			out = append(out, i)
		}
	}
	return out
}
