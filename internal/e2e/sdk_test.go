package e2e

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	lockd "github.com/lockd/lockd/clients/go"
	"github.com/lockd/lockd/internal/testcell"
)

// TestSDKElectionProcessesAndLeaderKill: three `lockd elect` processes
// campaign against a five-process cell; an observer sees exactly one leader
// at a time; the leading process is SIGKILLed and a standby leads within the
// session TTL plus the lock-delay.
func TestSDKElectionProcessesAndLeaderKill(t *testing.T) {
	cell := testcell.Start(t, testcell.Options{SessionGraceMs: 1000})
	cell.WaitLeader(20 * time.Second)
	const ttl, lockDelay = 2 * time.Second, time.Second
	type candidate struct {
		cmd     *exec.Cmd
		leading chan time.Time
	}
	var cands []*candidate
	for _, v := range []string{"a", "b", "c"} {
		cmd := exec.Command(testcell.Binary(t), "elect", "--ttl", ttl.String(), "--lock-delay", lockDelay.String(), "sdk-e2e", v)
		cmd.Env = append(cmd.Environ(), "LOCKD_ENDPOINTS="+strings.Join(cell.URLs(), ","))
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		c := &candidate{cmd: cmd, leading: make(chan time.Time, 1)}
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if strings.HasPrefix(sc.Text(), "leading ") {
					c.leading <- time.Now()
				}
			}
		}()
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		cands = append(cands, c)
	}
	client, err := lockd.New(cell.URLs())
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var seen []lockd.LeaderInfo
	observed := make(chan struct{})
	go func() {
		defer close(observed)
		for li := range client.ObserveElection(ctx, "/ls/local/elections/sdk-e2e") {
			mu.Lock()
			seen = append(seen, li)
			mu.Unlock()
		}
	}()
	// Exactly one process says it leads.
	var leader *candidate
	deadline := time.After(10 * time.Second)
	for leader == nil {
		for _, c := range cands {
			select {
			case <-c.leading:
				leader = c
			default:
			}
		}
		select {
		case <-deadline:
			t.Fatal("no candidate leads")
		case <-time.After(20 * time.Millisecond):
		}
	}
	killed := time.Now()
	if err := leader.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	var next time.Time
	bound := ttl + lockDelay + 3*time.Second
	for next.IsZero() {
		for _, c := range cands {
			if c == leader {
				continue
			}
			select {
			case at := <-c.leading:
				if !next.IsZero() {
					t.Fatal("two standbys lead at once")
				}
				next = at
			default:
			}
		}
		if time.Since(killed) > bound+5*time.Second {
			t.Fatalf("no standby leads %v after the leader was killed", time.Since(killed))
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("standby leads %v after the leader process was SIGKILLed (TTL %v + lock-delay %v)", next.Sub(killed).Round(time.Millisecond), ttl, lockDelay)
	if d := next.Sub(killed); d > bound {
		t.Errorf("standby took %v, more than TTL + lock-delay + 3s", d)
	}
	// Nobody else claims leadership meanwhile.
	for _, c := range cands {
		select {
		case <-c.leading:
			if c != leader {
				t.Fatal("a second standby claims leadership")
			}
		default:
		}
	}
	// The observer saw one leader, then the standby, never two at once and
	// never back: sessions change once, with a rising generation.
	eventually(t, 10*time.Second, "the observer to see the new leader", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(distinctLeaders(seen)) >= 2
	})
	cancel()
	<-observed
	leaders := distinctLeaders(seen)
	if len(leaders) != 2 || leaders[1].Generation <= leaders[0].Generation {
		t.Fatalf("observed leaders %+v, want two in turn with rising generations", leaders)
	}
}

// distinctLeaders collapses an observation stream to its leaders in turn.
func distinctLeaders(seen []lockd.LeaderInfo) []lockd.LeaderInfo {
	var out []lockd.LeaderInfo
	for _, li := range seen {
		if li.Session == "" {
			continue
		}
		if len(out) == 0 || out[len(out)-1].Session != li.Session {
			out = append(out, li)
		}
	}
	return out
}

// TestSDKMutexSurvivesLeaderReplicaKill: while a client holds a Mutex, the
// cell's leader replica is SIGKILLed. The session and the lock survive (no
// Done), and a Lock call in flight across the failover completes.
func TestSDKMutexSurvivesLeaderReplicaKill(t *testing.T) {
	cell := testcell.Start(t, testcell.Options{SessionGraceMs: 2000})
	leader := cell.WaitLeader(20 * time.Second)
	ctx := context.Background()
	ca, _ := lockd.New(cell.URLs())
	cb, _ := lockd.New(cell.URLs())
	defer ca.Close()
	defer cb.Close()
	sa, err := lockd.NewSession(ctx, ca, lockd.WithTTL(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	sb, err := lockd.NewSession(ctx, cb, lockd.WithTTL(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	held := lockd.NewMutex(sa, "/ls/local/sdk/held")
	if err := held.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	contended := lockd.NewMutex(sa, "/ls/local/sdk/contended")
	if err := contended.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	// B waits for the contended lock across the failover.
	inflight := make(chan error, 1)
	go func() { inflight <- lockd.NewMutex(sb, "/ls/local/sdk/contended").Lock(ctx) }()
	eventually(t, 10*time.Second, "B to queue", func() bool {
		st, err := ca.LockState(ctx, "/ls/local/sdk/contended")
		return err == nil && len(st.Waiters) == 1
	})
	killed := time.Now()
	cell.Kill(leader)
	cell.WaitLeader(20 * time.Second)
	if err := contended.Unlock(ctx); err != nil {
		t.Fatalf("unlock after the failover: %v", err)
	}
	select {
	case err := <-inflight:
		if err != nil {
			t.Fatalf("the Lock in flight across the failover: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the Lock in flight across the failover did not complete")
	}
	// Past TTL + grace: the session and its lock are still there.
	eventually(t, 15*time.Second, "TTL and grace to pass", func() bool { return time.Since(killed) > 6*time.Second })
	select {
	case <-sa.Done():
		t.Fatalf("the holder's session ended across a leader failover: %v", sa.Err())
	default:
	}
	st, err := cb.LockState(ctx, "/ls/local/sdk/held")
	if err != nil || len(st.Holders) != 1 || st.Holders[0].Session != sa.ID() {
		t.Fatalf("after the failover the held lock is %+v (%v), want session %s", st, err, sa.ID())
	}
}

// TestSDKPartitionedClientHearsFirst: a client cut off from the cell for
// longer than its TTL sees Done() closed before any other client can take
// its lock; its stale sequencer is then refused by the fencing middleware.
func TestSDKPartitionedClientHearsFirst(t *testing.T) {
	cell := testcell.Start(t, testcell.Options{SessionGraceMs: 1000})
	cell.WaitLeader(20 * time.Second)
	ctx := context.Background()
	var proxies []*cutProxy
	var via []string
	for _, r := range cell.Replicas {
		p := newCutProxy(t, r.Client)
		proxies = append(proxies, p)
		via = append(via, "http://"+p.addr())
	}
	// Behind proxies, the client must not learn the replicas' real URLs.
	cut, err := lockd.New(via, lockd.WithoutDiscovery())
	if err != nil {
		t.Fatal(err)
	}
	defer cut.Close()
	other, _ := lockd.New(cell.URLs())
	defer other.Close()
	sc, err := lockd.NewSession(ctx, cut, lockd.WithTTL(2*time.Second), lockd.WithLockDelay(0))
	if err != nil {
		t.Fatal(err)
	}
	mc := lockd.NewMutex(sc, "/ls/local/sdk/fenced")
	if err := mc.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	staleSeq := mc.Sequencer()
	so, err := lockd.NewSession(ctx, other, lockd.WithTTL(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	acquired := make(chan time.Time, 1)
	go func() {
		if err := lockd.NewMutex(so, "/ls/local/sdk/fenced").Lock(ctx); err == nil {
			acquired <- time.Now()
		}
	}()
	for _, p := range proxies {
		p.cut()
	}
	var done time.Time
	select {
	case <-sc.Done():
		done = time.Now()
	case <-time.After(20 * time.Second):
		t.Fatal("the partitioned client never saw its session end")
	}
	var got time.Time
	select {
	case got = <-acquired:
	case <-time.After(20 * time.Second):
		t.Fatal("the other client never got the lock")
	}
	t.Logf("partitioned client saw Done %v before the other client got the lock", got.Sub(done).Round(time.Millisecond))
	if !done.Before(got) {
		t.Fatalf("the other client got the lock at %v, before the partitioned client saw Done at %v", got, done)
	}
	// The old holder's sequencer is stale: the middleware refuses it.
	guarded := lockd.FenceMiddleware(other, "X-Lockd-Sequencer")(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("POST", "/write", nil)
	req.Header.Set("X-Lockd-Sequencer", staleSeq)
	guarded.ServeHTTP(rec, req)
	if rec.Code != http.StatusConflict {
		t.Fatalf("stale sequencer through the middleware: %d %s, want 409", rec.Code, rec.Body)
	}
}

// cutProxy forwards TCP to one replica until cut; then it drops every
// connection and refuses new ones (a client-side partition).
type cutProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	isCut  bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.cut() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.isCut {
				p.mu.Unlock()
				c.Close()
				continue
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				p.mu.Unlock()
				c.Close()
				continue
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); up.Close() }()
			go func() { _, _ = io.Copy(c, up); c.Close() }()
		}
	}()
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.isCut = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}
