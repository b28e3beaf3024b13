package api

import (
	"math"
	"net/http"
	"sync"
	"time"

	"github.com/lockd/lockd/api/wire"
	"github.com/lockd/lockd/lockservice"
)

// Limits per principal (see doc.go, "Limits"). Zero means no limit.
type Limits struct {
	// Sessions: live sessions the principal created (counted from the
	// replicated state, plus creations in flight on this replica).
	Sessions int
	// Waiters: queued lock waits of its sessions (from the replicated
	// state, plus waiting acquires in flight on this replica). An acquire
	// that would wait (wait_ms > 0) is refused at the limit.
	Waiters int
	// Watches: open watch requests on this replica.
	Watches int
	// SessionCreatesPerS, KeepAlivesPerS and RequestsPerS are token-bucket
	// rates on this replica, with a burst of one second's worth (at least
	// one request).
	SessionCreatesPerS float64
	KeepAlivesPerS     float64
	RequestsPerS       float64
}

// over returns l with every non-zero field of o.
func (l Limits) over(o Limits) Limits {
	pick := func(a, b int) int {
		if b != 0 {
			return b
		}
		return a
	}
	pickf := func(a, b float64) float64 {
		if b != 0 {
			return b
		}
		return a
	}
	return Limits{
		Sessions: pick(l.Sessions, o.Sessions), Waiters: pick(l.Waiters, o.Waiters), Watches: pick(l.Watches, o.Watches),
		SessionCreatesPerS: pickf(l.SessionCreatesPerS, o.SessionCreatesPerS),
		KeepAlivesPerS:     pickf(l.KeepAlivesPerS, o.KeepAlivesPerS),
		RequestsPerS:       pickf(l.RequestsPerS, o.RequestsPerS),
	}
}

type nowFunc func() time.Time

// quotaRetryMs is the retry hint of a quota refusal: nothing but the
// client's own releases will free room, so it is only a pacing hint.
const quotaRetryMs = 1000

// principalState is one principal's counters and buckets on this replica.
type principalState struct {
	limits    Limits
	creates   *bucket
	keepAlive *bucket
	requests  *bucket

	mu              sync.Mutex
	watches         int
	pendingSessions int
	pendingWaits    int
}

func newPrincipalState(l Limits, now nowFunc) *principalState {
	return &principalState{limits: l, creates: newBucket(l.SessionCreatesPerS, now),
		keepAlive: newBucket(l.KeepAlivesPerS, now), requests: newBucket(l.RequestsPerS, now)}
}

func tooMany(retryMs int64, format string, args ...any) *Error {
	e := newError(http.StatusTooManyRequests, wire.CodeTooManyRequests, format, args...)
	e.RetryAfterMs = max(retryMs, 1)
	return e
}

func (ps *principalState) allowRequest() error {
	if wait, ok := ps.requests.take(); !ok {
		return tooMany(wait.Milliseconds()+1, "over the limit of %g requests per second", ps.limits.RequestsPerS)
	}
	return nil
}

func (ps *principalState) allowKeepAlive() error {
	if wait, ok := ps.keepAlive.take(); !ok {
		return tooMany(wait.Milliseconds()+1, "over the limit of %g keepalives per second", ps.limits.KeepAlivesPerS)
	}
	return nil
}

// reserveSession admits one session creation: the rate, then the quota of
// live sessions (used, from the state machine, plus those in flight). The
// returned func ends the reservation once the creation is applied (or
// failed).
func (ps *principalState) reserveSession(used int) (func(), error) {
	if wait, ok := ps.creates.take(); !ok {
		return nil, tooMany(wait.Milliseconds()+1, "over the limit of %g session creations per second", ps.limits.SessionCreatesPerS)
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if n := ps.limits.Sessions; n > 0 && used+ps.pendingSessions >= n {
		return nil, tooMany(quotaRetryMs, "at the limit of %d live sessions: end one first", n)
	}
	ps.pendingSessions++
	return ps.once(&ps.pendingSessions), nil
}

// reserveWait admits one acquire that may wait, against the quota of
// queued waits.
func (ps *principalState) reserveWait(used int) (func(), error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if n := ps.limits.Waiters; n > 0 && used+ps.pendingWaits >= n {
		return nil, tooMany(quotaRetryMs, "at the limit of %d queued lock waits: try without waiting (wait_ms 0), or later", n)
	}
	ps.pendingWaits++
	return ps.once(&ps.pendingWaits), nil
}

// openWatch admits one watch on this replica.
func (ps *principalState) openWatch() (func(), error) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if n := ps.limits.Watches; n > 0 && ps.watches >= n {
		return nil, tooMany(quotaRetryMs, "at the limit of %d open watches on this replica", n)
	}
	ps.watches++
	return ps.once(&ps.watches), nil
}

// once returns a func that decrements *counter the first time it is called.
func (ps *principalState) once(counter *int) func() {
	var o sync.Once
	return func() {
		o.Do(func() {
			ps.mu.Lock()
			*counter--
			ps.mu.Unlock()
		})
	}
}

// usage is the principal's live sessions and queued waits in the state.
func (s *Server) usage(p *principal) lockservice.Usage {
	l := p.state.limits
	if l.Sessions == 0 && l.Waiters == 0 {
		return lockservice.Usage{}
	}
	return s.m.UsageOf(p.name)
}

// bucket is a token bucket: rate tokens per second, holding at most burst
// (one second's worth, at least one). A nil bucket (rate 0) allows all.
type bucket struct {
	mu     sync.Mutex
	rate   float64
	burst  float64
	tokens float64
	last   time.Time
	now    nowFunc
}

func newBucket(rate float64, now nowFunc) *bucket {
	if rate <= 0 {
		return nil
	}
	burst := math.Max(1, math.Ceil(rate))
	return &bucket{rate: rate, burst: burst, tokens: burst, now: now}
}

// take takes one token, or says how long until one is there.
func (b *bucket) take() (time.Duration, bool) {
	if b == nil {
		return 0, true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now()
	if !b.last.IsZero() {
		if d := now.Sub(b.last); d > 0 {
			b.tokens = math.Min(b.burst, b.tokens+d.Seconds()*b.rate)
		}
	}
	b.last = now
	if b.tokens >= 1 {
		b.tokens--
		return 0, true
	}
	return time.Duration((1 - b.tokens) / b.rate * float64(time.Second)), false
}
