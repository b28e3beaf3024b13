// Package lockd is the Go SDK of lockd, a Chubby-style lock and
// leader-election service. It speaks the HTTP/JSON API v1 and imports no
// package of the server (nor anything outside the standard library).
//
// # Pieces
//
//   - Client: the cell's endpoints, leader discovery, retries across leader
//     changes, node reads and writes (Get, Put, Delete, Children), lock and
//     session reads, sequencer checks, Watch.
//   - Session: a lease kept alive in the background, with states Safe →
//     Jeopardy → Expired (or Closed), Done, and a Context cancelled when the
//     session ends. Locks, candidacies and ephemeral nodes live as long as
//     their session.
//   - Mutex and RWMutex: Lock (waiting, FIFO), TryLock, Unlock, Sequencer.
//   - Election: Campaign, Proclaim, Resign, Leader, Observe.
//   - Watch: the events of a path, resumed from the last index after a
//     reconnect, on any replica.
//   - Fencing: a sequencer is a string a holder attaches to its writes to
//     other services; CheckSequencer asks the cell whether it is current, and
//     FenceMiddleware does that for a net/http service.
//
// # Use
//
//	c, err := lockd.New([]string{"127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"})
//	s, err := lockd.NewSession(ctx, c, lockd.WithTTL(10*time.Second))
//	defer s.Close(context.Background())
//
//	m := lockd.NewMutex(s, "/ls/local/jobs/nightly")
//	if err := m.Lock(ctx); err != nil { ... }
//	work(s.Context(), m.Sequencer()) // stops by itself if the session expires
//	m.Unlock(ctx)
//
// # Time, expiry and what a lost session means
//
// A Session renews its lease about every TTL/3. When a renewal fails it goes to
// Jeopardy and keeps trying every endpoint; it expires here when its local
// deadline passes: the send time of the last answered KeepAlive plus the
// lease the cell reported, minus a skew margin. The cell's own deadline is
// later than that, and after it the cell holds the session's locks back for
// the lock-delay, so the holder hears it lost the session (Done closed,
// Context cancelled, state Expired) before anyone else can be granted its
// locks. Every lock handle's doc comment says what happens when the session
// ends during the call.
//
// # Errors
//
// Every answer of the cell that is an error is an *Error, which matches the
// sentinel of its code with errors.Is (ErrLockHeld for lock_held, and so on).
// Errors are wrapped with what the call was doing. See Client for which calls
// are retried after which failures.
//
// The library never panics on bad input from the network, never logs
// fatally, and logs only through the *slog.Logger given with WithLogger.
package lockd
