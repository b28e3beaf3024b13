package dockerdrill

import (
	"context"
	"fmt"
	mrand "math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// grant is one exclusive hold of a lock as its client saw it. Times are
// nanoseconds since the drill started.
type grant struct {
	Client  int
	Session string
	Path    string
	ReqID   string
	Gen     uint64
	Seq     string
	AcqCall int64 // the acquire was first sent
	AcqRet  int64 // the grant arrived (by then the cell had granted it)
	// Proven is the latest time at which an answer proves the hold was still
	// live after it: the send time of a sequencer check that said valid, or
	// of a release that released it. 0: never proven after the grant.
	Proven   int64
	Released bool
	Lost     bool // a check said invalid, or the release found it gone
}

// fence is one POST /v1/sequencers/check by a holder of generation Gen,
// which also asked about the generation before it (Prev, 0 if none).
type fence struct {
	Path                 string
	Gen, Prev            uint64
	Valid, PrevValid     bool
	Current, PrevCurrent uint64 // current_generation answered for each
	Call, Ret            int64
}

// checkLocks checks the lock histories: no generation granted twice; no
// two holds of one lock provably live at once (the holder of a lower
// generation proven live after a higher one was granted); generations
// ordered like real time (a grant that completed before another acquire was
// sent has the lower generation); a sequencer check never finds two
// generations of one exclusive lock valid in one answer, and a valid one is
// the current generation.
func checkLocks(grants []grant, fences []fence) []string {
	var bad []string
	// A session that acquires a lock it already holds gets the same
	// generation again: that is one hold.
	type holdKey struct {
		path, session string
		gen           uint64
	}
	merged := map[holdKey]int{}
	byPath := map[string][]grant{}
	for _, g := range grants {
		k := holdKey{g.Path, g.Session, g.Gen}
		if i, ok := merged[k]; ok {
			h := &byPath[g.Path][i]
			h.AcqCall, h.AcqRet, h.Proven = min(h.AcqCall, g.AcqCall), min(h.AcqRet, g.AcqRet), max(h.Proven, g.Proven)
			continue
		}
		merged[k] = len(byPath[g.Path])
		byPath[g.Path] = append(byPath[g.Path], g)
	}
	paths := make([]string, 0, len(byPath))
	for p := range byPath {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		gs := byPath[p]
		sort.Slice(gs, func(i, j int) bool { return gs[i].Gen < gs[j].Gen })
		for i := 1; i < len(gs); i++ {
			if gs[i].Gen == gs[i-1].Gen {
				bad = append(bad, fmt.Sprintf("%s: generation %d granted twice: to session %s (%s) and to session %s (%s)",
					p, gs[i].Gen, gs[i-1].Session, gs[i-1].ReqID, gs[i].Session, gs[i].ReqID))
			}
		}
		// For each grant b, the latest proof of life of any lower generation
		// must come before b was granted.
		var latest *grant
		for i := range gs {
			b := &gs[i]
			if latest != nil && latest.Gen < b.Gen && latest.Proven > b.AcqRet {
				bad = append(bad, fmt.Sprintf("%s: double holders: generation %d (session %s) was proven held at %v, after generation %d (session %s) was granted by %v",
					p, latest.Gen, latest.Session, time.Duration(latest.Proven), b.Gen, b.Session, time.Duration(b.AcqRet)))
			}
			if latest == nil || b.Proven > latest.Proven {
				latest = b
			}
		}
		// For each grant a, every higher generation was granted after a's
		// acquire was sent.
		var earliest *grant
		for i := len(gs) - 1; i >= 0; i-- {
			a := &gs[i]
			if earliest != nil && earliest.Gen > a.Gen && earliest.AcqRet < a.AcqCall {
				bad = append(bad, fmt.Sprintf("%s: generation %d (session %s) was granted by %v, before generation %d (session %s) was even asked for at %v",
					p, earliest.Gen, earliest.Session, time.Duration(earliest.AcqRet), a.Gen, a.Session, time.Duration(a.AcqCall)))
			}
			if earliest == nil || a.AcqRet < earliest.AcqRet {
				earliest = a
			}
		}
	}
	for _, f := range fences {
		if f.Prev != 0 && f.Valid && f.PrevValid {
			bad = append(bad, fmt.Sprintf("%s: one sequencer check at %v found generations %d and %d both valid",
				f.Path, time.Duration(f.Call), f.Prev, f.Gen))
		}
		if f.Valid && f.Current != f.Gen {
			bad = append(bad, fmt.Sprintf("%s: sequencer of generation %d valid while current_generation is %d", f.Path, f.Gen, f.Current))
		}
		if f.Prev != 0 && f.PrevValid && f.PrevCurrent != f.Prev {
			bad = append(bad, fmt.Sprintf("%s: sequencer of generation %d valid while current_generation is %d", f.Path, f.Prev, f.PrevCurrent))
		}
	}
	return bad
}

// locks drives the lock workload: each client keeps a session alive,
// acquires one of a few exclusive locks, checks its sequencer (with the
// previous holder's) while holding it, and releases it.
type locks struct {
	cl    *client
	urls  func() []string
	paths []string
	start time.Time

	mu     sync.Mutex
	grants []*grant
	fences []fence
	counts map[string]int
}

func newLocks(cl *client, urls func() []string, cellName string, nPaths int, start time.Time) *locks {
	l := &locks{cl: cl, urls: urls, start: start, counts: map[string]int{}}
	for i := range nPaths {
		l.paths = append(l.paths, fmt.Sprintf("/ls/%s/drill/locks/l%d", cellName, i))
	}
	return l
}

func (l *locks) now() int64 { return int64(time.Since(l.start)) }

func (l *locks) count(what string) {
	l.mu.Lock()
	l.counts[what]++
	l.mu.Unlock()
}

func (l *locks) run(ctx context.Context, n int) (wait func()) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { l.client(ctx, i) })
	}
	return wg.Wait
}

// lockSession is a session kept alive in the background until it is
// abandoned or expires.
type lockSession struct {
	id     string
	dead   atomic.Bool
	cancel context.CancelFunc
}

func (l *locks) newSession(ctx context.Context, worker int, rnd *mrand.Rand) *lockSession {
	urls := l.urls()
	rep, err := l.cl.call(ctx, opTimeout, http.MethodPost, urls[rnd.IntN(len(urls))]+"/v1/sessions",
		map[string]any{"ttl_ms": 5000, "lock_delay_ms": 500, "label": fmt.Sprintf("drill-lock-%d", worker), "host": "drill"})
	var sb sessionBody
	if err != nil || rep.Status != http.StatusCreated || rep.decode(&sb) != nil {
		l.count("session-create failed")
		return nil
	}
	l.count("session-create ok")
	kctx, cancel := context.WithCancel(context.Background())
	s := &lockSession{id: sb.Session.ID, cancel: cancel}
	go l.keepAlive(kctx, s, rnd.Uint64())
	return s
}

// keepAlive renews the session every second through some replica that
// answers; a session the cell says is gone is marked dead.
func (l *locks) keepAlive(ctx context.Context, s *lockSession, seed uint64) {
	rnd := mrand.New(mrand.NewPCG(seed, 1))
	for {
		urls := l.urls()
		off := rnd.IntN(len(urls))
		for i := range urls {
			rep, err := l.cl.call(ctx, time.Second, http.MethodPost, urls[(off+i)%len(urls)]+"/v1/sessions/"+s.id+"/keepalive", nil)
			if err != nil {
				continue
			}
			if rep.Status == http.StatusOK {
				break
			}
			if rep.Code == "session_expired" || rep.Code == "not_found" {
				l.count("session expired")
				s.dead.Store(true)
				return
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// abandon stops renewing the session and ends it if the cell answers (else
// it expires): whatever it may hold is released either way.
func (l *locks) abandon(s *lockSession) {
	s.cancel()
	s.dead.Store(true)
	for _, url := range l.urls() {
		rep, err := l.cl.call(context.Background(), time.Second, http.MethodDelete, url+"/v1/sessions/"+s.id, nil)
		if err == nil && (rep.Status == http.StatusNoContent || rep.Code == "session_expired") {
			return
		}
	}
}

// retry sends a request with a request_id through random replicas until one
// gives a definite answer, for up to 8 s: no answer, unavailable (outcome
// unknown: a repeat of the request_id returns the first answer or joins its
// wait), and no_leader, not_leader or too_many_requests (not applied) are
// tried again. false: still unknown.
func (l *locks) retry(rnd *mrand.Rand, timeout time.Duration, path string, body map[string]any) (reply, bool) {
	deadline := time.Now().Add(8 * time.Second)
	for {
		urls := l.urls()
		rep, err := l.cl.call(context.Background(), timeout, http.MethodPost, urls[rnd.IntN(len(urls))]+path, body)
		if err == nil {
			switch {
			case rep.Status < 300:
				return rep, true
			case rep.Code == "no_leader" || rep.Code == "not_leader" || rep.Code == "too_many_requests":
			case definitelyNotApplied(rep):
				return rep, true
			}
		}
		if time.Now().After(deadline) {
			return reply{}, false
		}
		time.Sleep(100 * time.Millisecond) // back off before asking again
	}
}

func (l *locks) client(ctx context.Context, worker int) {
	rnd := mrand.New(mrand.NewPCG(uint64(worker)+100, uint64(time.Now().UnixNano())))
	var s *lockSession
	defer func() {
		if s != nil {
			l.abandon(s)
		}
	}()
	for seq := 0; ctx.Err() == nil; seq++ {
		if s != nil && s.dead.Load() {
			s.cancel()
			s = nil
		}
		if s == nil {
			if s = l.newSession(ctx, worker, rnd); s == nil {
				time.Sleep(100 * time.Millisecond) // the cell is failing over
				continue
			}
		}
		path := l.paths[rnd.IntN(len(l.paths))]
		reqID := fmt.Sprintf("acq-%d-%d", worker, seq)
		call := l.now()
		rep, ok := l.retry(rnd, time.Second+opTimeout, "/v1/locks/acquire",
			map[string]any{"path": path, "session": s.id, "mode": "exclusive", "wait_ms": 1000, "request_id": reqID})
		var gb grantBody
		switch {
		case !ok:
			l.count("acquire unknown")
			l.abandon(s)
			s = nil
			continue
		case rep.Status == http.StatusOK && rep.decode(&gb) == nil:
			l.count("acquire granted")
		case rep.Code == "session_expired" || rep.Code == "not_found":
			l.count("acquire " + rep.Code)
			s.dead.Store(true)
			continue
		default:
			l.count("acquire " + errName(rep))
			time.Sleep(time.Duration(10+rnd.IntN(40)) * time.Millisecond)
			continue
		}
		g := &grant{Client: worker, Session: s.id, Path: path, ReqID: reqID, Gen: gb.Lock.Generation,
			Seq: gb.Lock.Sequencer, AcqCall: call, AcqRet: l.now()}
		l.mu.Lock()
		l.grants = append(l.grants, g)
		l.mu.Unlock()
		if !l.hold(rnd, g) {
			continue
		}
		relCall := l.now()
		rep, ok = l.retry(rnd, opTimeout, "/v1/locks/release",
			map[string]any{"path": path, "session": s.id, "generation": g.Gen, "request_id": "rel-" + reqID})
		switch {
		case !ok:
			l.count("release unknown")
			l.abandon(s)
			s = nil
		case rep.Status == http.StatusOK:
			l.count("release ok")
			l.mu.Lock()
			g.Released, g.Proven = true, max(g.Proven, relCall)
			l.mu.Unlock()
		default:
			l.count("release " + errName(rep))
			l.mu.Lock()
			g.Lost = true
			l.mu.Unlock()
			if rep.Code == "session_expired" {
				s.dead.Store(true)
			}
		}
	}
}

// hold keeps g for a moment, checking its sequencer (with the previous
// generation's) twice; false if the hold was found lost.
func (l *locks) hold(rnd *mrand.Rand, g *grant) bool {
	for range 2 {
		time.Sleep(time.Duration(20+rnd.IntN(60)) * time.Millisecond) // the critical section
		prev := l.previous(g)
		seqs := []string{g.Seq}
		if prev != nil {
			seqs = append(seqs, prev.Seq)
		}
		urls := l.urls()
		call := l.now()
		rep, err := l.cl.call(context.Background(), opTimeout, http.MethodPost, urls[rnd.IntN(len(urls))]+"/v1/sequencers/check",
			map[string]any{"sequencers": seqs})
		var cb checkBody
		if err != nil || rep.Status != http.StatusOK || rep.decode(&cb) != nil || len(cb.Results) != len(seqs) {
			l.count("check no-answer")
			continue
		}
		f := fence{Path: g.Path, Gen: g.Gen, Valid: cb.Results[0].Valid, Current: cb.Results[0].CurrentGeneration,
			Call: call, Ret: l.now()}
		if prev != nil {
			f.Prev, f.PrevValid, f.PrevCurrent = prev.Gen, cb.Results[1].Valid, cb.Results[1].CurrentGeneration
		}
		l.mu.Lock()
		l.fences = append(l.fences, f)
		if f.Valid {
			g.Proven = max(g.Proven, call)
		} else {
			g.Lost = true
		}
		l.mu.Unlock()
		if !f.Valid {
			l.count("check lost")
			return false
		}
		l.count("check valid")
	}
	return true
}

// previous is the grant of the highest generation below g's on its path.
func (l *locks) previous(g *grant) *grant {
	l.mu.Lock()
	defer l.mu.Unlock()
	var best *grant
	for _, o := range l.grants {
		if o.Path == g.Path && o.Gen < g.Gen && (best == nil || o.Gen > best.Gen) {
			best = o
		}
	}
	return best
}

// snapshot copies the recorded grants and fences.
func (l *locks) snapshot() ([]grant, []fence) {
	l.mu.Lock()
	defer l.mu.Unlock()
	gs := make([]grant, 0, len(l.grants))
	for _, g := range l.grants {
		gs = append(gs, *g)
	}
	return gs, slices.Clone(l.fences)
}

func (l *locks) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var parts []string
	for k, v := range l.counts {
		parts = append(parts, fmt.Sprintf("%s=%d", k, v))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
