package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/lockd/lockd/api/wire"
)

// session is a client's session with its KeepAlives. validUntil is the
// client's conservative view of its lease (run clock, ns): the send time of
// the newest answered KeepAlive plus the lease the leader said remained, so
// it never outlives the leader's own timer.
type session struct {
	ID         string
	TTL        time.Duration
	LockDelay  time.Duration
	validUntil atomic.Int64
	expired    atomic.Bool // the cell said session_expired (or not_found)
	stop       context.CancelFunc
	done       chan struct{}
}

func (s *session) valid(at int64) bool { return !s.expired.Load() && at < s.validUntil.Load() }

// end stops the KeepAlives and waits for them to stop.
func (s *session) end() {
	if s.stop != nil {
		s.stop()
		<-s.done
	}
}

// createSession creates a session, trying the replicas in turn from prefer
// (following leader hints), until one answers or attempts run out. It does
// not start KeepAlives.
func (w *world) createSession(ctx context.Context, ttl, lockDelay time.Duration, label string, prefer int) (*session, error) {
	ttlMs, delayMs := ttl.Milliseconds(), lockDelay.Milliseconds()
	req := wire.CreateSessionRequest{TTLMs: &ttlMs, LockDelayMs: &delayMs, Label: label, Host: "chaos", PID: 1}
	i := prefer
	var last reply
	for attempt := 0; attempt < 20 && ctx.Err() == nil; attempt++ {
		call := w.now()
		r := do(ctx, w.hc, w.opTimeout, http.MethodPost, w.urls[i%len(w.urls)]+"/v1/sessions", req)
		w.ops.Add(1)
		if r.outcome() == OK {
			var sr wire.SessionResponse
			if err := r.decode(&sr); err != nil {
				return nil, err
			}
			s := &session{ID: sr.Session.ID, TTL: ttl, LockDelay: lockDelay}
			s.validUntil.Store(call + int64(ttl))
			return s, nil
		}
		last = r
		if j := leaderIndex(r.Leader, len(w.urls)); j >= 0 && j != i%len(w.urls) {
			i = j
		} else {
			i++
		}
		w.pause(ctx, nil, 20*time.Millisecond)
	}
	return nil, fmt.Errorf("creating session %s: %v", label, last)
}

// keepAlive renews s every period until ctx ends or the cell says it
// expired. A failed attempt moves on to the next replica at once (or to the
// leader a reply names), each with its own short timeout.
func (w *world) keepAlive(ctx context.Context, s *session, period time.Duration, prefer int) {
	defer close(s.done)
	i := prefer
	for ctx.Err() == nil {
		send := w.now()
		r := do(ctx, w.hc, min(period, time.Second), http.MethodPost, w.urls[i%len(w.urls)]+"/v1/sessions/"+s.ID+"/keepalive", nil)
		switch {
		case r.outcome() == OK:
			var sr wire.SessionResponse
			if err := r.decode(&sr); err == nil {
				until := send + sr.Session.LeaseRemainingMs*int64(time.Millisecond)
				if until > s.validUntil.Load() {
					s.validUntil.Store(until)
				}
			}
			w.pause(ctx, nil, period)
			continue
		case r.Code == wire.CodeSessionExpired || r.Code == wire.CodeNotFound:
			s.expired.Store(true)
			if until, now := s.validUntil.Load(), w.now(); until > now {
				// The cell ended it before the lease it had promised ran
				// out: a holder would still (rightly) think it held its locks.
				w.violation("session %s declared %s at %s, though a KeepAlive had promised its lease until %s",
					s.ID, r.Code, ts(now), ts(until))
			}
			return
		}
		if j := leaderIndex(r.Leader, len(w.urls)); j >= 0 && j != i%len(w.urls) {
			i = j
		} else {
			i++
		}
		if ctx.Err() == nil && r.Err == nil {
			w.pause(ctx, nil, 10*time.Millisecond) // answered with an error: do not spin
		}
	}
}

// endSession stops s's KeepAlives and asks the cell, once, to end it; if
// that fails the session expires on its own.
func (w *world) endSession(ctx context.Context, s *session, prefer int) {
	s.end()
	do(ctx, w.hc, w.opTimeout, http.MethodDelete, w.urls[prefer%len(w.urls)]+"/v1/sessions/"+s.ID, nil)
	w.ops.Add(1)
}

// startKeepAlive runs keepAlive for s in the background; s.end stops it.
func (w *world) startKeepAlive(ctx context.Context, s *session, period time.Duration, prefer int) {
	kctx, cancel := context.WithCancel(ctx)
	s.stop, s.done = cancel, make(chan struct{})
	go w.keepAlive(kctx, s, period, prefer)
}

// acquire tries to take an exclusive lock, retrying an unknown outcome with
// the same request id (the cell answers a repeat with the first answer).
func (w *world) acquire(ctx context.Context, s *session, path, reqID, contents string, waitMs int64, prefer int) (wire.Grant, reply) {
	req := wire.AcquireRequest{Path: path, Session: s.ID, Mode: wire.ModeExclusive, WaitMs: waitMs, RequestID: reqID, Contents: &contents}
	timeout := w.opTimeout + time.Duration(waitMs)*time.Millisecond
	i := prefer
	var r reply
	for attempt := 0; attempt < 4 && ctx.Err() == nil; attempt++ {
		r = do(ctx, w.hc, timeout, http.MethodPost, w.urls[i%len(w.urls)]+"/v1/locks/acquire", req)
		w.ops.Add(1)
		switch r.outcome() {
		case OK:
			var lr wire.LockResponse
			if err := r.decode(&lr); err != nil {
				w.problem("acquire %s: %v", path, err)
				return wire.Grant{}, reply{Err: err}
			}
			return lr.Lock, r
		case Failed:
			if r.Code != wire.CodeNoLeader && r.Code != wire.CodeNotLeader && r.Err == nil {
				return wire.Grant{}, r
			}
		}
		i++
	}
	return wire.Grant{}, r
}

// release gives up a lock, retrying an unknown outcome with the same request
// id; false when it could not be confirmed.
func (w *world) release(ctx context.Context, s *session, path string, gen uint64, reqID string, prefer int) bool {
	req := wire.ReleaseRequest{Path: path, Session: s.ID, Generation: gen, RequestID: reqID}
	for attempt := 0; attempt < 4 && ctx.Err() == nil; attempt++ {
		r := do(ctx, w.hc, w.opTimeout, http.MethodPost, w.urls[(prefer+attempt)%len(w.urls)]+"/v1/locks/release", req)
		w.ops.Add(1)
		switch {
		case r.outcome() == OK:
			return true
		case r.Code == wire.CodeSessionExpired || r.Code == wire.CodeNotHolder:
			return false
		}
	}
	return false
}

// The session workload: keepers hold a lock each and send KeepAlives all
// run long, through every leader change; they must survive and still hold
// their locks at the end. Quitters hold a lock each and stop their
// KeepAlives at a seeded time: they must expire, and their locks must be
// free (after lock-delay) at the end.
type sessionWorkload struct {
	keepers  []*sessionHolder
	quitters []*sessionHolder
}

type sessionHolder struct {
	sess   *session
	path   string
	stopAt time.Duration // quitters: when the KeepAlives stop, after the workloads start
	killed float64       // quitters: when they did stop (run clock, seconds)
}

const (
	keeperTTL   = 6 * time.Second
	quitterTTL  = 1500 * time.Millisecond
	quitterWait = 1 * time.Second // lock-delay of quitters
)

// setupSessions creates the sessions; their KeepAlives run until ctx ends
// (quitters: until their time), past the end of the workloads.
func (w *world) setupSessions(ctx context.Context, rnd *rand.Rand, keepers, quitters int) (*sessionWorkload, error) {
	sw := &sessionWorkload{}
	for i := range keepers + quitters {
		keeper := i < keepers
		ttl, label, path := keeperTTL, fmt.Sprintf("keeper-%d", i), fmt.Sprintf("%s/keep-%d", w.base, i)
		if !keeper {
			j := i - keepers
			ttl, label, path = quitterTTL, fmt.Sprintf("quitter-%d", j), fmt.Sprintf("%s/quit-%d", w.base, j)
		}
		s, err := w.createSession(ctx, ttl, quitterWait, label, i)
		if err != nil {
			return sw, err
		}
		h := &sessionHolder{sess: s, path: path}
		w.startKeepAlive(ctx, s, ttl/5, i)
		if _, r := w.acquire(ctx, s, path, label, label, 0, i); r.outcome() != OK {
			return sw, fmt.Errorf("session workload: %s cannot take %s: %v", label, path, r)
		}
		if keeper {
			sw.keepers = append(sw.keepers, h)
		} else {
			d := w.cfg.Duration
			h.stopAt = d/10 + time.Duration(rnd.Int63n(int64(d*4/10)+1))
			sw.quitters = append(sw.quitters, h)
		}
	}
	return sw, nil
}

// runQuitters stops each quitter's KeepAlives at its time.
func (w *world) runQuitters(ctx context.Context, sw *sessionWorkload) {
	var wg sync.WaitGroup
	for _, q := range sw.quitters {
		wg.Go(func() {
			w.pause(ctx, nil, q.stopAt)
			q.sess.end()
			q.killed = w.secs()
			w.logf("chaos: %.1fs: quitter session %s stops its KeepAlives", w.secs(), q.sess.ID)
		})
	}
	wg.Wait()
}

// checkSessions runs after recovery. It returns the violations found.
func (w *world) checkSessions(ctx context.Context, sw *sessionWorkload) []string {
	var bad []string
	for _, k := range sw.keepers {
		if k.sess.expired.Load() {
			bad = append(bad, fmt.Sprintf("keeper session %s expired although its KeepAlives never stopped", k.sess.ID))
			continue
		}
		var sr wire.SessionResponse
		r := w.readUntil(ctx, "/v1/sessions/"+k.sess.ID, &sr)
		switch {
		case r.Code == wire.CodeSessionExpired || r.Code == wire.CodeNotFound:
			bad = append(bad, fmt.Sprintf("keeper session %s is gone at the end (%s)", k.sess.ID, r.Code))
		case r.outcome() != OK:
			w.problem("keeper session %s: no answer: %v", k.sess.ID, r)
		case !slices.Contains(sr.Session.Locks, k.path):
			bad = append(bad, fmt.Sprintf("keeper session %s no longer holds %s (holds %v)", k.sess.ID, k.path, sr.Session.Locks))
		}
	}
	for _, k := range sw.keepers {
		k.sess.end()
	}
	probe, err := w.createSession(ctx, 10*time.Second, 0, "quitter-probe", 0)
	if err != nil {
		w.problem("session check: %v", err)
		return bad
	}
	w.startKeepAlive(ctx, probe, 2*time.Second, 0)
	defer probe.end()
	for _, q := range sw.quitters {
		bad = append(bad, w.checkQuitter(ctx, q, probe)...)
	}
	return bad
}

func (w *world) checkQuitter(ctx context.Context, q *sessionHolder, probe *session) []string {
	deadline := time.Now().Add(q.sess.TTL + w.grace + 15*time.Second)
	for {
		var sr wire.SessionResponse
		r := w.readUntil(ctx, "/v1/sessions/"+q.sess.ID, &sr)
		if r.Code == wire.CodeSessionExpired || r.Code == wire.CodeNotFound {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return []string{fmt.Sprintf("quitter session %s still alive %.1fs after its KeepAlives stopped (%v)",
				q.sess.ID, w.secs()-q.killed, r)}
		}
		w.pause(ctx, nil, 100*time.Millisecond)
	}
	var ls wire.LockStateResponse
	if r := w.readUntil(ctx, "/v1/locks"+q.path, &ls); r.outcome() == OK {
		for _, h := range ls.Lock.Holders {
			if h.Session == q.sess.ID {
				return []string{fmt.Sprintf("quitter session %s expired but still holds %s", q.sess.ID, q.path)}
			}
		}
	}
	deadline = time.Now().Add(q.sess.LockDelay + 15*time.Second)
	for i := 0; ; i++ {
		g, r := w.acquire(ctx, probe, q.path, fmt.Sprintf("probe-%s-%d", q.path, i), "probe", 0, i)
		if r.outcome() == OK {
			w.release(ctx, probe, q.path, g.Generation, fmt.Sprintf("probe-rel-%s", q.path), i)
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return []string{fmt.Sprintf("lock %s of expired quitter %s never became free: %v", q.path, q.sess.ID, r)}
		}
		w.pause(ctx, nil, 100*time.Millisecond)
	}
}

// readUntil GETs path (a linearizable read) from the replicas in turn until
// one answers (any answer but a transport error or 5xx) or ctx ends; it
// decodes a 2xx body into v.
func (w *world) readUntil(ctx context.Context, path string, v any) reply {
	var r reply
	for i := 0; i < 100 && ctx.Err() == nil; i++ {
		r = do(ctx, w.hc, w.opTimeout, http.MethodGet, w.urls[i%len(w.urls)]+path, nil)
		w.ops.Add(1)
		if r.Err == nil && r.Status < 500 {
			if r.outcome() == OK && v != nil {
				if err := r.decode(v); err != nil {
					return reply{Err: err}
				}
			}
			return r
		}
		w.pause(ctx, nil, 50*time.Millisecond)
	}
	return r
}
