package metrics

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/lockd/lockd/paxos"
)

// toFloat64 and collectAndCount do what prometheus/testutil's ToFloat64 and
// CollectAndCount do. testutil itself needs github.com/kylelemons/godebug,
// which go.mod does not list yet; once it does, these two can be replaced by
// testutil one for one.
func toFloat64(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ms := collect(t, c)
	if len(ms) != 1 {
		t.Fatalf("collected %d metrics, want 1", len(ms))
	}
	m := ms[0]
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	t.Fatalf("metric is neither counter, gauge nor untyped")
	return 0
}

func collectAndCount(t *testing.T, c prometheus.Collector) int {
	t.Helper()
	return len(collect(t, c))
}

func collect(t *testing.T, c prometheus.Collector) []*dto.Metric {
	t.Helper()
	ch := make(chan prometheus.Metric)
	go func() { c.Collect(ch); close(ch) }()
	var out []*dto.Metric
	for m := range ch {
		pb := &dto.Metric{}
		if err := m.Write(pb); err != nil {
			t.Fatal(err)
		}
		out = append(out, pb)
	}
	return out
}

func histCount(t *testing.T, c prometheus.Collector) uint64 {
	t.Helper()
	ms := collect(t, c)
	if len(ms) != 1 || ms[0].Histogram == nil {
		t.Fatalf("not one histogram")
	}
	return ms[0].Histogram.GetSampleCount()
}

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: %d", rec.Code)
	}
	b, _ := io.ReadAll(rec.Body)
	return string(b)
}

// MetricNames is every lockd metric family, as the server owner's docs list them.
var metricNames = []string{
	"lockd_paxos_proposals_total", "lockd_paxos_committed_slots_total", "lockd_paxos_committed_commands_total",
	"lockd_paxos_commit_latency_seconds", "lockd_paxos_batch_size", "lockd_paxos_accept_batch_slots",
	"lockd_paxos_persist_latency_seconds", "lockd_paxos_elections_started_total", "lockd_paxos_leader_changes_total",
	"lockd_paxos_role_changes_total", "lockd_paxos_nacks_total", "lockd_paxos_messages_sent_total",
	"lockd_paxos_messages_received_total", "lockd_paxos_catchup_fetches_total", "lockd_paxos_snapshots_installed_total",
	"lockd_paxos_snapshots_taken_total", "lockd_paxos_commit_index", "lockd_paxos_applied_index",
	"lockd_paxos_snapshot_index", "lockd_paxos_last_slot", "lockd_paxos_role", "lockd_paxos_is_leader",
	"lockd_paxos_leader_id", "lockd_paxos_ballot_round", "lockd_paxos_lease_remaining_seconds",
	"lockd_sessions_alive", "lockd_sessions_expired_total", "lockd_locks_held", "lockd_lock_waiters",
	"lockd_watch_streams_open", "lockd_http_requests_total", "lockd_http_request_duration_seconds",
}

func TestScrapeHasEveryName(t *testing.T) {
	m := New(Options{})
	m.ObserveHTTP("/v1/cluster", "GET", 200, time.Millisecond) // vecs without preset labels show once used
	body := scrape(t, m.Handler())
	for _, n := range append(metricNames, "go_goroutines", "go_memstats_alloc_bytes", "process_cpu_seconds_total") {
		if !strings.Contains(body, "\n# TYPE "+n+" ") && !strings.HasPrefix(body, "# TYPE "+n+" ") &&
			!strings.Contains(body, "# HELP "+n+" ") {
			t.Errorf("scrape lacks %s", n)
		}
	}
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.HasPrefix(mf.GetName(), "lockd_") && !contains(metricNames, mf.GetName()) {
			t.Errorf("metric %s is not in the documented list", mf.GetName())
		}
	}
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func TestOwnRegistry(t *testing.T) {
	// Two instances must not collide (no global registry).
	a, b := New(Options{}), New(Options{})
	a.SnapshotTaken()
	if toFloat64(t, a.snapTaken) != 1 || toFloat64(t, b.snapTaken) != 0 {
		t.Fatal("instances share state")
	}
}

func TestObserveFlowElectionThenPhase2(t *testing.T) {
	m := New(Options{NoRuntimeCollectors: true})
	now := time.Now()
	b := paxos.Ballot{Round: 4, Node: 1}
	st := func(role paxos.Role, leader paxos.NodeID) paxos.FlowEvent {
		return paxos.FlowEvent{Time: now, OK: true, Status: &paxos.Status{ID: 1, Role: role, Leader: leader, Ballot: b}}
	}
	evs := []paxos.FlowEvent{
		st(paxos.Follower, 2),
		{Sent: true, Type: paxos.MsgPreVote, From: 1, To: 2, OK: true},
		{Sent: false, Type: paxos.MsgPreVoteResp, From: 3, To: 1, OK: false}, // refused pre-vote
		st(paxos.Candidate, paxos.None),
		{Sent: true, Type: paxos.MsgPrepare, From: 1, To: 2, Ballot: b, Slot: 10, OK: true},
		{Sent: true, Type: paxos.MsgPrepare, From: 1, To: 3, Ballot: b, Slot: 10, OK: true},
		{Type: paxos.MsgPromise, From: 2, To: 1, Ballot: b, Slot: 10, OK: true},
		{Type: paxos.MsgNack, From: 3, To: 1, Ballot: paxos.Ballot{Round: 5, Node: 3}},
		st(paxos.Leader, 1),
		{Sent: true, Type: paxos.MsgAccept, From: 1, To: 2, Ballot: b, Slot: 11, Slots: 3, OK: true},
		{Sent: true, Type: paxos.MsgAccept, From: 1, To: 3, Ballot: b, Slot: 11, Slots: 3, OK: true},
		{Type: paxos.MsgAccepted, From: 2, To: 1, Ballot: b, Slot: 11, Slots: 3, OK: true},
		{Sent: true, Type: paxos.MsgHeartbeat, From: 1, To: 2, Ballot: b, Slot: 13, OK: true},
		{Sent: true, Type: paxos.MsgPrepare, From: 1, To: 2, Ballot: b, OK: true}, // same ballot: no new election
		{Sent: true, Type: paxos.MsgFetch, From: 1, To: 2, Slot: 3, OK: true},
		{Sent: true, Type: paxos.MsgNack, From: 1, To: 3, Ballot: b},
	}
	for _, ev := range evs {
		m.ObserveFlow(ev)
	}
	checks := []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"elections", m.elections, 1},
		{"leader changes", m.leaderChanges, 2}, // first seen 2, then self
		{"prepare sent", m.msgsSent.WithLabelValues("prepare"), 3},
		{"promise received", m.msgsRecv.WithLabelValues("promise"), 1},
		{"accept sent", m.msgsSent.WithLabelValues("accept"), 2},
		{"commit sent", m.msgsSent.WithLabelValues("commit"), 1},
		{"nack received", m.msgsRecv.WithLabelValues("nack"), 1},
		{"nacks received", m.nacks.WithLabelValues("received"), 2},
		{"nacks sent", m.nacks.WithLabelValues("sent"), 1},
		{"fetches", m.fetches, 1},
		{"to leader", m.roleChanges.WithLabelValues("leader"), 1},
		{"to candidate", m.roleChanges.WithLabelValues("candidate"), 1},
		{"to follower", m.roleChanges.WithLabelValues("follower"), 1},
	}
	for _, c := range checks {
		if got := toFloat64(t, c.c); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	if n := histCount(t, m.acceptSlots); n != 2 {
		t.Errorf("accept batches = %d, want 2", n)
	}
	// Every message type is present from the start, sent and received.
	if n := collectAndCount(t, m.msgsSent); n != len(msgTypes) {
		t.Errorf("messages_sent series = %d, want %d", n, len(msgTypes))
	}
	if n := collectAndCount(t, m.role); n != len(roles) {
		t.Errorf("role series = %d, want %d", n, len(roles))
	}
}

func TestSingleReplicaElection(t *testing.T) {
	m := New(Options{NoRuntimeCollectors: true})
	b := paxos.Ballot{Round: 1, Node: 1}
	for range 2 { // the same ballot reported twice is one election
		m.ObserveFlow(paxos.FlowEvent{OK: true, Status: &paxos.Status{ID: 1, Role: paxos.Leader, Leader: 1, Ballot: b}})
	}
	if got := toFloat64(t, m.elections); got != 1 {
		t.Errorf("elections = %v, want 1", got)
	}
	if got := toFloat64(t, m.leaderChanges); got != 1 {
		t.Errorf("leader changes = %v, want 1", got)
	}
}

func TestStatusGaugesViaCollectHook(t *testing.T) {
	m := New(Options{NoRuntimeCollectors: true})
	st := paxos.Status{ID: 2, Role: paxos.Leader, Leader: 2, Ballot: paxos.Ballot{Round: 7, Node: 2},
		Commit: 120, Applied: 118, Snapshot: 100, LastSlot: 121, LeaseRemaining: 50}
	calls := 0
	m.OnCollect(func(m *Metrics) {
		calls++
		m.SetStatus(st, 10*time.Millisecond)
		m.SetSessions(4)
		m.SetLocks(3, 2)
	})
	body := scrape(t, m.Handler())
	if calls != 1 {
		t.Fatalf("hook ran %d times, want 1", calls)
	}
	for _, want := range []string{"lockd_paxos_commit_index 120", "lockd_paxos_applied_index 118",
		"lockd_paxos_snapshot_index 100", `lockd_paxos_role{role="leader"} 1`, `lockd_paxos_role{role="follower"} 0`,
		"lockd_paxos_is_leader 1", "lockd_paxos_leader_id 2", "lockd_paxos_ballot_round 7",
		"lockd_paxos_lease_remaining_seconds 0.5", "lockd_sessions_alive 4", "lockd_locks_held 3", "lockd_lock_waiters 2"} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("scrape lacks %q", want)
		}
	}
	st.Role, st.Leader, st.Recovering = paxos.Follower, 3, true
	m.Gatherer().Gather()
	if toFloat64(t, m.role.WithLabelValues("recovering")) != 1 || toFloat64(t, m.isLeader) != 0 ||
		toFloat64(t, m.leaseRemain) != 0 {
		t.Error("follower status not reflected")
	}
}

func TestTypedMethods(t *testing.T) {
	m := New(Options{NoRuntimeCollectors: true})
	m.ObserveProposal(3*time.Millisecond, nil)
	m.ObserveProposal(time.Second, errors.New("not leader"))
	m.ObserveCommit(4)
	m.ObserveCommit(0)
	m.ObserveCommands(2)
	m.ObservePersist(2 * time.Millisecond)
	m.CatchupFetch()
	m.SnapshotInstalled()
	m.SessionsExpired(2)
	closed := m.WatchOpened()
	m.WatchOpened()
	closed()
	closed() // idempotent
	for _, c := range []struct {
		name string
		c    prometheus.Collector
		want float64
	}{
		{"ok", m.proposals.WithLabelValues("ok"), 1},
		{"error", m.proposals.WithLabelValues("error"), 1},
		{"slots", m.committedSlots, 2},
		{"commands", m.committedCmds, 6},
		{"fetches", m.fetches, 1},
		{"installed", m.snapInstalled, 1},
		{"expired", m.sessionsExpired, 2},
		{"watches", m.watchStreams, 1},
	} {
		if got := toFloat64(t, c.c); got != c.want {
			t.Errorf("%s = %v, want %v", c.name, got, c.want)
		}
	}
	if histCount(t, m.commitLatency) != 1 || histCount(t, m.batchSize) != 2 || histCount(t, m.persistLatency) != 1 {
		t.Error("histogram counts wrong")
	}
}

func TestEchoMiddleware(t *testing.T) {
	m := New(Options{NoRuntimeCollectors: true})
	e := echo.New()
	e.Use(m.EchoMiddleware())
	e.GET("/v1/locks/*", func(c echo.Context) error { return c.String(http.StatusOK, "ok") })
	e.POST("/v1/locks/acquire", func(c echo.Context) error { return echo.NewHTTPError(http.StatusConflict, "held") })
	e.GET("/v1/boom", func(c echo.Context) error { return errors.New("boom") })
	e.GET("/v1/panic", func(c echo.Context) error { panic("bad handler") })
	for _, r := range []struct{ method, path string }{
		{"GET", "/v1/locks/ls/local/a"}, {"GET", "/v1/locks/ls/local/b"}, {"POST", "/v1/locks/acquire"},
		{"GET", "/v1/boom"}, {"GET", "/nope/x"}, {"BREW", "/v1/boom"},
	} {
		e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(r.method, r.path, nil))
	}
	for _, c := range []struct {
		route, method, code string
		want                float64
	}{
		{"/v1/locks/*", "GET", "200", 2},
		{"/v1/locks/acquire", "POST", "409", 1},
		{"/v1/boom", "GET", "500", 1},
		{"unmatched", "GET", "404", 1},
		{"/v1/boom", "OTHER", "405", 1},
	} {
		if got := toFloat64(t, m.httpRequests.WithLabelValues(c.route, c.method, c.code)); got != c.want {
			t.Errorf("%s %s %s = %v, want %v", c.method, c.route, c.code, got, c.want)
		}
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("the panic was swallowed")
			}
		}()
		e.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/v1/panic", nil))
	}()
	if got := toFloat64(t, m.httpRequests.WithLabelValues("/v1/panic", "GET", "500")); got != 1 {
		t.Errorf("panic recorded %v times, want 1", got)
	}
	// Raw paths never become labels.
	for _, mt := range collect(t, m.httpRequests) {
		for _, l := range mt.GetLabel() {
			if strings.Contains(l.GetValue(), "/ls/local") || strings.Contains(l.GetValue(), "/nope") {
				t.Errorf("raw path in label: %s", l.GetValue())
			}
			if l.GetName() == "method" && l.GetValue() == "BREW" {
				t.Error("unbounded method label")
			}
		}
	}
	if n := collectAndCount(t, m.httpLatency); n < 3 {
		t.Errorf("latency series = %d", n)
	}
}

func TestConcurrentUse(t *testing.T) {
	m := New(Options{})
	m.OnCollect(func(m *Metrics) { m.SetStatus(paxos.Status{Role: paxos.Follower}, time.Millisecond) })
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 200 {
				m.ObserveFlow(paxos.FlowEvent{Sent: j%2 == 0, Type: paxos.MsgPrepare, From: paxos.NodeID(i + 1),
					Ballot: paxos.Ballot{Round: uint64(j), Node: paxos.NodeID(i + 1)}, OK: true})
				m.ObserveFlow(paxos.FlowEvent{Status: &paxos.Status{ID: 1, Role: paxos.Role(j % 3), Leader: paxos.NodeID(j % 3)}})
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			rec := httptest.NewRecorder()
			m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
			if rec.Code != http.StatusOK {
				t.Errorf("scrape: %d", rec.Code)
			}
		}
	})
	wg.Wait()
}
