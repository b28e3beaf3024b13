// Package metrics is lockd's Prometheus instrumentation: one Metrics per
// replica, on its own registry (never the global one), served by Handler at
// /metrics.
//
// Three kinds of input feed it:
//   - ObserveFlow, set as (or called from) paxos.NodeConfig.Observer, counts
//     protocol messages, nacks, elections, leader changes and catch-up
//     fetches with no other wiring;
//   - typed methods (ObserveProposal, ObserveCommit, ObservePersist,
//     SnapshotTaken, SessionsExpired, WatchOpened, ...) for the places that
//     know an event happened;
//   - OnCollect hooks, run before every scrape, in which the server reads
//     paxos.Status (SetStatus) and the lock service (SetSessions, SetLocks)
//     so gauges are fresh without a ticker.
//
// Every method is safe for concurrent use and none blocks, so they may be
// called from the paxos loop.
package metrics

import (
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/lockd/lockd/paxos"
)

// Namespace prefixes every lockd metric.
const Namespace = "lockd"

// msgTypes are the paxos message types, pre-declared so every label value
// exists (at zero) from the first scrape.
var msgTypes = []paxos.MsgType{
	paxos.MsgPreVote, paxos.MsgPreVoteResp, paxos.MsgPrepare, paxos.MsgPromise, paxos.MsgAccept,
	paxos.MsgAccepted, paxos.MsgHeartbeat, paxos.MsgHeartbeatResp, paxos.MsgNack, paxos.MsgFetch,
	paxos.MsgFetchResp, paxos.MsgRejoin, paxos.MsgRejoinOK,
}

// roles are the values of lockd_paxos_role's role label.
var roles = []string{"leader", "follower", "candidate", "recovering"}

// Options tunes New.
type Options struct {
	// NoRuntimeCollectors leaves out the Go runtime and process collectors
	// (for tests that count families).
	NoRuntimeCollectors bool
}

// Metrics holds every lockd collector and the registry they live on.
type Metrics struct {
	reg *prometheus.Registry

	// Paxos: the replicated log.
	proposals      *prometheus.CounterVec // result: ok, error
	committedSlots prometheus.Counter
	committedCmds  prometheus.Counter
	commitLatency  prometheus.Histogram
	batchSize      prometheus.Histogram
	acceptSlots    prometheus.Histogram
	persistLatency prometheus.Histogram
	elections      prometheus.Counter
	leaderChanges  prometheus.Counter
	roleChanges    *prometheus.CounterVec // role
	nacks          *prometheus.CounterVec // direction
	msgsSent       *prometheus.CounterVec // type
	msgsRecv       *prometheus.CounterVec // type
	fetches        prometheus.Counter
	snapInstalled  prometheus.Counter
	snapTaken      prometheus.Counter

	// Paxos status gauges (SetStatus).
	commitIndex   prometheus.Gauge
	appliedIndex  prometheus.Gauge
	snapshotIndex prometheus.Gauge
	lastSlot      prometheus.Gauge
	role          *prometheus.GaugeVec // role: 1 for the current one
	isLeader      prometheus.Gauge
	leaderID      prometheus.Gauge
	ballotRound   prometheus.Gauge
	leaseRemain   prometheus.Gauge

	// Lock service and API.
	sessionsAlive   prometheus.Gauge
	sessionsExpired prometheus.Counter
	locksHeld       prometheus.Gauge
	lockWaiters     prometheus.Gauge
	watchStreams    prometheus.Gauge
	httpRequests    *prometheus.CounterVec   // route, method, code
	httpLatency     *prometheus.HistogramVec // route, method

	// Resolved children, so ObserveFlow does no label lookups.
	msgSentByType map[paxos.MsgType]prometheus.Counter
	msgRecvByType map[paxos.MsgType]prometheus.Counter
	nackSent      prometheus.Counter
	nackReceived  prometheus.Counter

	// Flow bookkeeping (ObserveFlow runs on the paxos loop; guarded anyway).
	flowMu       sync.Mutex
	lastElection paxos.Ballot
	lastLeader   paxos.NodeID
	lastRole     string
	sawStatus    bool

	collectMu    sync.Mutex
	collectHooks []func(*Metrics)
	gatherer     prometheus.Gatherer
}

// New builds a Metrics on a fresh registry.
func New(opts Options) *Metrics {
	m := &Metrics{reg: prometheus.NewRegistry()}
	f := factory{m.reg}
	latency := prometheus.ExponentialBuckets(0.0005, 2, 15) // 0.5ms .. ~8s

	m.proposals = f.counterVec("paxos_proposals_total", "Commands proposed through this replica, by result (ok, error).", "result")
	m.committedSlots = f.counter("paxos_committed_slots_total", "Log slots this replica learned as chosen and applied.")
	m.committedCmds = f.counter("paxos_committed_commands_total", "Commands applied from chosen slots.")
	m.commitLatency = f.histogram("paxos_commit_latency_seconds", "Time from proposing a command to its being applied (successful proposals).", latency)
	m.batchSize = f.histogram("paxos_batch_size", "Commands per chosen slot.", prometheus.ExponentialBuckets(1, 2, 10))
	m.acceptSlots = f.histogram("paxos_accept_batch_slots", "Slots carried by each Accept this replica sent.", prometheus.ExponentialBuckets(1, 2, 10))
	m.persistLatency = f.histogram("paxos_persist_latency_seconds", "Time to persist (fsync) hard state and entries before sending.", latency)
	m.elections = f.counter("paxos_elections_started_total", "Phase 1 rounds this replica started (a Prepare with a new ballot of its own).")
	m.leaderChanges = f.counter("paxos_leader_changes_total", "Times this replica learned of a new leader.")
	m.roleChanges = f.counterVec("paxos_role_changes_total", "Role changes of this replica, by new role.", "role")
	m.nacks = f.counterVec("paxos_nacks_total", "Ballots rejected: nacks and refused pre-votes, by direction (sent, received).", "direction")
	m.msgsSent = f.counterVec("paxos_messages_sent_total", "Protocol messages sent, by type.", "type")
	m.msgsRecv = f.counterVec("paxos_messages_received_total", "Protocol messages received, by type.", "type")
	m.fetches = f.counter("paxos_catchup_fetches_total", "Catch-up fetches this replica sent to the leader.")
	m.snapInstalled = f.counter("paxos_snapshots_installed_total", "Snapshots installed from the leader.")
	m.snapTaken = f.counter("paxos_snapshots_taken_total", "Snapshots this replica took (and compacted its log below).")

	m.commitIndex = f.gauge("paxos_commit_index", "Highest slot known chosen on this replica.")
	m.appliedIndex = f.gauge("paxos_applied_index", "Highest slot applied to the state machine.")
	m.snapshotIndex = f.gauge("paxos_snapshot_index", "Slot of the latest snapshot.")
	m.lastSlot = f.gauge("paxos_last_slot", "Highest slot in this replica's log.")
	m.role = f.gaugeVec("paxos_role", "1 for this replica's current role, 0 for the others.", "role")
	m.isLeader = f.gauge("paxos_is_leader", "1 while this replica is the leader.")
	m.leaderID = f.gauge("paxos_leader_id", "Replica id of the leader this replica knows of (0: none).")
	m.ballotRound = f.gauge("paxos_ballot_round", "Round of the highest ballot this replica promised.")
	m.leaseRemain = f.gauge("paxos_lease_remaining_seconds", "On the leader, how long its lease still holds (0 elsewhere).")

	m.sessionsAlive = f.gauge("sessions_alive", "Sessions alive in the cell (as this replica applied them).")
	m.sessionsExpired = f.counter("sessions_expired_total", "Sessions that expired.")
	m.locksHeld = f.gauge("locks_held", "Locks with at least one holder.")
	m.lockWaiters = f.gauge("lock_waiters", "Acquires waiting in lock queues.")
	m.watchStreams = f.gauge("watch_streams_open", "Watch streams (SSE and long-poll) open on this replica.")
	m.httpRequests = f.counterVec("http_requests_total", "HTTP requests served, by route pattern, method and status code.", "route", "method", "code")
	m.httpLatency = f.histogramVec("http_request_duration_seconds", "HTTP request latency, by route pattern and method.",
		prometheus.ExponentialBuckets(0.0005, 2, 16), "route", "method")

	m.msgSentByType = map[paxos.MsgType]prometheus.Counter{}
	m.msgRecvByType = map[paxos.MsgType]prometheus.Counter{}
	for _, t := range msgTypes {
		m.msgSentByType[t] = m.msgsSent.WithLabelValues(t.String())
		m.msgRecvByType[t] = m.msgsRecv.WithLabelValues(t.String())
	}
	m.nackSent = m.nacks.WithLabelValues("sent")
	m.nackReceived = m.nacks.WithLabelValues("received")
	for _, r := range roles {
		m.role.WithLabelValues(r)
		m.roleChanges.WithLabelValues(r)
	}
	m.proposals.WithLabelValues("ok")
	m.proposals.WithLabelValues("error")

	if !opts.NoRuntimeCollectors {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m.gatherer = prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		m.runCollectHooks()
		return m.reg.Gather()
	})
	return m
}

// Registry is the registry the metrics live on, for registering more
// collectors beside them.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Gatherer gathers like the registry, after running the OnCollect hooks.
func (m *Metrics) Gatherer() prometheus.Gatherer { return m.gatherer }

// Handler serves the metrics in the Prometheus exposition formats (mount it
// at /metrics). Every scrape first runs the OnCollect hooks.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.gatherer, promhttp.HandlerOpts{
		ErrorHandling:     promhttp.ContinueOnError,
		Registry:          m.reg, // promhttp_metric_handler_errors_total
		EnableOpenMetrics: true,
	})
}

// OnCollect adds a hook run before every scrape (serially, never two at
// once), where the server refreshes gauges: SetStatus from paxos.Status,
// SetSessions and SetLocks from lock service reads. A hook must be quick.
func (m *Metrics) OnCollect(fn func(*Metrics)) {
	m.collectMu.Lock()
	defer m.collectMu.Unlock()
	m.collectHooks = append(m.collectHooks, fn)
}

func (m *Metrics) runCollectHooks() {
	m.collectMu.Lock()
	defer m.collectMu.Unlock()
	for _, fn := range m.collectHooks {
		fn(m)
	}
}

// ObserveFlow counts one paxos flow event: messages sent and received by
// type, nacks, catch-up fetches, Accept batch sizes, elections started
// (a Prepare this replica sent under a new ballot of its own, or becoming
// leader under one without any Prepare, as a one-replica cell does), role
// changes and leader changes. It never blocks; pass it as
// paxos.NodeConfig.Observer (or call it from the observer in use).
func (m *Metrics) ObserveFlow(ev paxos.FlowEvent) {
	if ev.Status != nil {
		m.observeStatusChange(*ev.Status)
		return
	}
	byType, nack := m.msgRecvByType, m.nackReceived
	if ev.Sent {
		byType, nack = m.msgSentByType, m.nackSent
	}
	if c, ok := byType[ev.Type]; ok {
		c.Inc()
	}
	if !ev.OK && (ev.Type == paxos.MsgNack || ev.Type == paxos.MsgPreVoteResp) {
		nack.Inc()
	}
	if !ev.Sent {
		return
	}
	switch ev.Type {
	case paxos.MsgFetch:
		m.fetches.Inc()
	case paxos.MsgAccept:
		if ev.Slots > 0 {
			m.acceptSlots.Observe(float64(ev.Slots))
		}
	case paxos.MsgPrepare:
		m.flowMu.Lock()
		if ev.Ballot != m.lastElection && ev.Ballot.Node == ev.From {
			m.lastElection = ev.Ballot
			m.elections.Inc()
		}
		m.flowMu.Unlock()
	}
}

func (m *Metrics) observeStatusChange(st paxos.Status) {
	role := roleName(st)
	m.flowMu.Lock()
	defer m.flowMu.Unlock()
	if !m.sawStatus || role != m.lastRole {
		m.roleChanges.WithLabelValues(role).Inc()
	}
	if st.Leader != paxos.None && (!m.sawStatus || st.Leader != m.lastLeader) {
		m.leaderChanges.Inc()
	}
	if st.Role == paxos.Leader && st.Ballot.Node == st.ID && st.Ballot != m.lastElection {
		// Became leader under a ballot no Prepare was seen for (no peers).
		m.lastElection = st.Ballot
		m.elections.Inc()
	}
	if st.Leader != paxos.None {
		m.lastLeader = st.Leader
	}
	m.lastRole, m.sawStatus = role, true
}

// SetStatus sets the paxos gauges from a replica's status; tick is the
// length of one paxos tick (LeaseRemaining is counted in ticks). Call it
// from an OnCollect hook with node.Status().
func (m *Metrics) SetStatus(st paxos.Status, tick time.Duration) {
	m.commitIndex.Set(float64(st.Commit))
	m.appliedIndex.Set(float64(st.Applied))
	m.snapshotIndex.Set(float64(st.Snapshot))
	m.lastSlot.Set(float64(st.LastSlot))
	cur := roleName(st)
	for _, r := range roles {
		v := 0.0
		if r == cur {
			v = 1
		}
		m.role.WithLabelValues(r).Set(v)
	}
	lead, lease := 0.0, 0.0
	if st.Role == paxos.Leader {
		lead = 1
		lease = (time.Duration(st.LeaseRemaining) * tick).Seconds()
	}
	m.isLeader.Set(lead)
	m.leaseRemain.Set(lease)
	m.leaderID.Set(float64(st.Leader))
	m.ballotRound.Set(float64(st.Ballot.Round))
}

func roleName(st paxos.Status) string {
	if st.Recovering {
		return "recovering"
	}
	return st.Role.String()
}

// ObserveProposal records one Propose call: its result and, when it
// succeeded, how long it took to be applied.
func (m *Metrics) ObserveProposal(d time.Duration, err error) {
	if err != nil {
		m.proposals.WithLabelValues("error").Inc()
		return
	}
	m.proposals.WithLabelValues("ok").Inc()
	m.commitLatency.Observe(d.Seconds())
}

// ObserveCommit records one chosen slot applied with the given number of
// commands (its batch size; 0 for a no-op).
func (m *Metrics) ObserveCommit(commands int) {
	m.committedSlots.Inc()
	m.committedCmds.Add(float64(commands))
	m.batchSize.Observe(float64(commands))
}

// ObserveCommands counts applied commands when slot boundaries are not
// known (e.g. from a StateMachine.Apply wrapper); it leaves the slot and
// batch metrics alone.
func (m *Metrics) ObserveCommands(n int) { m.committedCmds.Add(float64(n)) }

// ObservePersist records how long one persist (Storage.Save with fsync) took.
func (m *Metrics) ObservePersist(d time.Duration) { m.persistLatency.Observe(d.Seconds()) }

// CatchupFetch counts a catch-up fetch not seen through ObserveFlow.
func (m *Metrics) CatchupFetch() { m.fetches.Inc() }

// SnapshotInstalled counts a snapshot installed from the leader.
func (m *Metrics) SnapshotInstalled() { m.snapInstalled.Inc() }

// SnapshotTaken counts a snapshot this replica took.
func (m *Metrics) SnapshotTaken() { m.snapTaken.Inc() }

// SetSessions sets the number of sessions alive.
func (m *Metrics) SetSessions(alive int) { m.sessionsAlive.Set(float64(alive)) }

// SessionsExpired counts n sessions that expired.
func (m *Metrics) SessionsExpired(n int) { m.sessionsExpired.Add(float64(n)) }

// SetLocks sets the number of locks held and of waiting acquires.
func (m *Metrics) SetLocks(held, waiters int) {
	m.locksHeld.Set(float64(held))
	m.lockWaiters.Set(float64(waiters))
}

// WatchOpened counts an open watch stream; call the returned func (once)
// when it closes.
func (m *Metrics) WatchOpened() (closed func()) {
	m.watchStreams.Inc()
	var once sync.Once
	return func() { once.Do(m.watchStreams.Dec) }
}

// ObserveHTTP records one HTTP request; route must be a pattern (bounded
// cardinality), never the raw URL path.
func (m *Metrics) ObserveHTTP(route, method string, code int, d time.Duration) {
	m.httpRequests.WithLabelValues(route, method, statusText(code)).Inc()
	m.httpLatency.WithLabelValues(route, method).Observe(d.Seconds())
}
