package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/lockd/lockd/api/wire"
)

// The lock workload: clients with sessions take exclusive locks (waiting)
// and, while they hold one, write to a fenced resource that checks every
// write's sequencer with the cell and refuses generations below the highest
// it has seen.

// Grant is one acquisition as a client saw it. The client believed it held
// the lock from Return (the acquire's answer) to End: the release call, or
// the moment its conservative session lease ran out, whichever came first.
type Grant struct {
	Lock     string `json:"lock"`
	Session  string `json:"session"`
	Client   int    `json:"client"`
	Gen      uint64 `json:"gen"`
	Contents string `json:"contents"`
	Call     int64  `json:"call"`
	Return   int64  `json:"return"`
	End      int64  `json:"end"`
}

// ResourceWrite is one write the fenced resource accepted, with when it
// asked the cell about the sequencer.
type ResourceWrite struct {
	Lock      string `json:"lock"`
	Gen       uint64 `json:"gen"`
	Session   string `json:"session"`
	ID        string `json:"id"`
	CheckCall int64  `json:"check_call"`
}

// resource is the fenced resource: an in-process store that accepts a write
// only if its generation is not below the highest it has accepted for that
// lock and the cell says the sequencer is current.
type resource struct {
	w       *world
	mu      sync.Mutex // guards log and highest
	lockMu  map[string]*sync.Mutex
	highest map[string]uint64
	log     []ResourceWrite
}

func newResource(w *world, locks []string) *resource {
	r := &resource{w: w, lockMu: map[string]*sync.Mutex{}, highest: map[string]uint64{}}
	for _, l := range locks {
		r.lockMu[l] = &sync.Mutex{}
	}
	return r
}

// write applies one write; it reports whether it was accepted.
func (res *resource) write(ctx context.Context, g wire.Grant, id string, prefer int) bool {
	lm := res.lockMu[g.Path]
	lm.Lock()
	defer lm.Unlock()
	res.mu.Lock()
	high := res.highest[g.Path]
	res.mu.Unlock()
	if g.Generation < high {
		return false
	}
	call := res.w.now()
	valid := false
	for attempt := 0; attempt < 3 && ctx.Err() == nil; attempt++ {
		r := do(ctx, res.w.hc, res.w.opTimeout, http.MethodPost, res.w.urls[(prefer+attempt)%len(res.w.urls)]+"/v1/sequencers/check",
			wire.CheckSequencerRequest{Sequencer: g.Sequencer})
		res.w.ops.Add(1)
		if r.outcome() == OK {
			var sr wire.SequencerResult
			if err := r.decode(&sr); err != nil {
				res.w.problem("sequencer check: %v", err)
				return false
			}
			valid = sr.Valid
			break
		}
		call = res.w.now() // a failed check does not count: the next one decides
	}
	if !valid {
		return false
	}
	res.mu.Lock()
	defer res.mu.Unlock()
	res.highest[g.Path] = g.Generation
	res.log = append(res.log, ResourceWrite{Lock: g.Path, Gen: g.Generation, Session: g.Session, ID: id, CheckCall: call})
	return true
}

// lockHistory collects what the lock clients saw.
type lockHistory struct {
	mu     sync.Mutex
	grants []Grant
	acked  []string // ids of resource writes the resource accepted
}

func (h *lockHistory) addGrant(g Grant) {
	h.mu.Lock()
	h.grants = append(h.grants, g)
	h.mu.Unlock()
}

func (h *lockHistory) ack(id string) {
	h.mu.Lock()
	h.acked = append(h.acked, id)
	h.mu.Unlock()
}

const (
	lockTTL   = 2 * time.Second
	lockDelay = 500 * time.Millisecond
)

// lockClient runs one client of the lock workload until ctx ends.
func (w *world) lockClient(ctx context.Context, rnd *rand.Rand, h *lockHistory, res *resource, locks []string, id int) {
	var s *session
	defer func() {
		if s != nil {
			s.end()
		}
	}()
	prefer := id
	for seq := 0; ctx.Err() == nil; seq++ {
		if s == nil || !s.valid(w.now()) {
			if s != nil {
				s.end() // abandoned: it expires, its locks freed after lock-delay
				s = nil
			}
			var err error
			if s, err = w.createSession(ctx, lockTTL, lockDelay, fmt.Sprintf("locker-%d", id), prefer); err != nil {
				w.pause(ctx, rnd, 100*time.Millisecond)
				continue
			}
			w.startKeepAlive(ctx, s, lockTTL/5, prefer)
		}
		lock := locks[rnd.Intn(len(locks))]
		reqID := fmt.Sprintf("l%d-%d", id, seq)
		call := w.now()
		g, r := w.acquire(ctx, s, lock, reqID, reqID, 1500, prefer)
		ret := w.now()
		switch r.outcome() {
		case Failed:
			if r.Code == wire.CodeSessionExpired || r.Code == wire.CodeNotFound {
				s.expired.Store(true)
			}
			prefer++
			w.pause(ctx, rnd, 20*time.Millisecond)
			continue
		case Unknown:
			// It may hold the lock without knowing the generation: end the
			// session, which frees whatever it holds (or let it expire).
			w.endSession(ctx, s, prefer)
			s = nil
			prefer++
			continue
		}
		rec := Grant{Lock: lock, Session: s.ID, Client: id, Gen: g.Generation, Contents: reqID, Call: call, Return: ret, End: ret}
		if g.Session != s.ID || g.Path != lock {
			w.problem("acquire %s by %s answered with a grant for %s/%s", lock, s.ID, g.Path, g.Session)
		}
		for i := range 1 + rnd.Intn(3) {
			if !s.valid(w.now()) {
				break
			}
			wid := fmt.Sprintf("%s/%d", reqID, i)
			if res.write(ctx, g, wid, prefer) {
				h.ack(wid)
			}
		}
		end := w.now()
		if until := s.validUntil.Load(); s.expired.Load() || until < end {
			end = min(end, until) // its belief ended when its lease ran out
		}
		rec.End = max(end, ret)
		h.addGrant(rec)
		if !w.release(ctx, s, lock, g.Generation, "rel-"+reqID, prefer) {
			w.endSession(ctx, s, prefer)
			s = nil
		}
	}
}

// CheckLocks checks a lock history and the fenced resource's log; it returns
// every violation found:
//   - no generation granted twice, and a grant answered before another was
//     asked for has the lower generation (generations only rise);
//   - mutual exclusion: a holder's belief (Return..End) ends before any
//     higher generation's holder is told it holds the lock;
//   - the resource accepted each generation from one session only, in
//     non-decreasing generation order, and never after a higher generation
//     was granted (the cell's sequencer check must not be stale);
//   - every write the resource acknowledged is in its log.
func CheckLocks(grants []Grant, log []ResourceWrite, acked []string) []string {
	var bad []string
	byLock := map[string][]Grant{}
	for _, g := range grants {
		byLock[g.Lock] = append(byLock[g.Lock], g)
	}
	var locks []string
	for l := range byLock {
		locks = append(locks, l)
	}
	sort.Strings(locks)
	for _, l := range locks {
		gs := byLock[l]
		sort.Slice(gs, func(i, j int) bool { return gs[i].Gen < gs[j].Gen })
		var prevEnd *Grant
		for i := range gs {
			g := &gs[i]
			if i > 0 && gs[i-1].Gen == g.Gen {
				bad = append(bad, fmt.Sprintf("%s: generation %d granted twice (sessions %s and %s)", l, g.Gen, gs[i-1].Session, g.Session))
			}
			if prevEnd != nil && prevEnd.End > g.Return && prevEnd.Gen < g.Gen {
				bad = append(bad, fmt.Sprintf("%s: two holders at once: client %d (session %s, generation %d) held it until %s, client %d (session %s, generation %d) from %s",
					l, prevEnd.Client, prevEnd.Session, prevEnd.Gen, ts(prevEnd.End), g.Client, g.Session, g.Gen, ts(g.Return)))
			}
			if prevEnd == nil || g.End > prevEnd.End {
				prevEnd = g
			}
		}
		bad = append(bad, risingGenerations(l, gs)...)
	}
	// The resource's log.
	granted := map[string]*grantIndex{}
	for l, gs := range byLock {
		granted[l] = newGrantIndex(gs)
	}
	sessionOf := map[string]map[uint64]string{}
	lastGen := map[string]uint64{}
	for _, wr := range log {
		if wr.Gen < lastGen[wr.Lock] {
			bad = append(bad, fmt.Sprintf("%s: resource accepted generation %d after %d", wr.Lock, wr.Gen, lastGen[wr.Lock]))
		}
		lastGen[wr.Lock] = max(lastGen[wr.Lock], wr.Gen)
		if sessionOf[wr.Lock] == nil {
			sessionOf[wr.Lock] = map[uint64]string{}
		}
		if s, ok := sessionOf[wr.Lock][wr.Gen]; ok && s != wr.Session {
			bad = append(bad, fmt.Sprintf("%s: resource accepted generation %d from sessions %s and %s", wr.Lock, wr.Gen, s, wr.Session))
		}
		sessionOf[wr.Lock][wr.Gen] = wr.Session
		if g, ok := granted[wr.Lock].highestBefore(wr.CheckCall); ok && g.Gen > wr.Gen {
			bad = append(bad, fmt.Sprintf("%s: sequencer of generation %d (session %s) checked valid at %s, after generation %d was granted at %s",
				wr.Lock, wr.Gen, wr.Session, ts(wr.CheckCall), g.Gen, ts(g.Return)))
		}
	}
	inLog := map[string]bool{}
	for _, wr := range log {
		inLog[wr.ID] = true
	}
	for _, id := range acked {
		if !inLog[id] {
			bad = append(bad, fmt.Sprintf("acknowledged resource write %s is missing", id))
		}
	}
	return bad
}

// grantIndex answers "the highest generation granted (answered) before t".
type grantIndex struct {
	byReturn []Grant
	top      []int // top[i]: index in byReturn of the highest generation among byReturn[:i+1]
}

func newGrantIndex(gs []Grant) *grantIndex {
	x := &grantIndex{byReturn: append([]Grant(nil), gs...)}
	sort.Slice(x.byReturn, func(i, j int) bool { return x.byReturn[i].Return < x.byReturn[j].Return })
	x.top = make([]int, len(x.byReturn))
	for i := range x.byReturn {
		x.top[i] = i
		if i > 0 && x.byReturn[x.top[i-1]].Gen > x.byReturn[i].Gen {
			x.top[i] = x.top[i-1]
		}
	}
	return x
}

func (x *grantIndex) highestBefore(t int64) (Grant, bool) {
	if x == nil {
		return Grant{}, false
	}
	n := sort.Search(len(x.byReturn), func(i int) bool { return x.byReturn[i].Return >= t })
	if n == 0 {
		return Grant{}, false
	}
	return x.byReturn[x.top[n-1]], true
}

// risingGenerations: a grant answered before another grant was asked for
// must have the lower generation. gs is one lock's grants.
func risingGenerations(lock string, gs []Grant) []string {
	byReturn := append([]Grant(nil), gs...)
	sort.Slice(byReturn, func(i, j int) bool { return byReturn[i].Return < byReturn[j].Return })
	byCall := append([]Grant(nil), gs...)
	sort.Slice(byCall, func(i, j int) bool { return byCall[i].Call < byCall[j].Call })
	var bad []string
	var top *Grant // highest generation among grants returned so far
	k := 0
	for i := range byCall {
		for k < len(byReturn) && byReturn[k].Return < byCall[i].Call {
			if top == nil || byReturn[k].Gen > top.Gen {
				top = &byReturn[k]
			}
			k++
		}
		if top != nil && top.Gen >= byCall[i].Gen {
			bad = append(bad, fmt.Sprintf("%s: generation %d (session %s) granted at %s, yet a later acquire (asked at %s) got generation %d",
				lock, top.Gen, top.Session, ts(top.Return), ts(byCall[i].Call), byCall[i].Gen))
		}
	}
	return bad
}

// checkLockNodes reads every lock's node at the end: its lock generation
// must be at least the highest granted, and if equal, hold that grant's
// contents (written in the grant's commit). It returns the grants lost.
func (w *world) checkLockNodes(ctx context.Context, locks []string, grants []Grant) []string {
	var lost []string
	for _, l := range locks {
		var top *Grant
		for i := range grants {
			if grants[i].Lock == l && (top == nil || grants[i].Gen > top.Gen) {
				top = &grants[i]
			}
		}
		if top == nil {
			continue
		}
		var nr wire.NodeResponse
		r := w.readUntil(ctx, "/v1/nodes"+l, &nr)
		switch {
		case r.outcome() != OK:
			w.problem("final read of %s: %v", l, r)
		case nr.Node.LockGeneration < top.Gen:
			lost = append(lost, fmt.Sprintf("%s: generation %d was granted, final lock generation %d", l, top.Gen, nr.Node.LockGeneration))
		case nr.Node.LockGeneration == top.Gen && (nr.Node.Contents == nil || *nr.Node.Contents != top.Contents):
			lost = append(lost, fmt.Sprintf("%s: grant %d wrote %q, final contents %v", l, top.Gen, top.Contents, nr.Node.Contents))
		}
	}
	return lost
}

func ts(ns int64) string { return fmt.Sprintf("%.3fs", float64(ns)/1e9) }
