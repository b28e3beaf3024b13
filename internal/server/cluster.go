package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/lockd/lockd/paxos"
)

// ReplicaView is one replica as GET /v1/cluster shows it.
type ReplicaView struct {
	ID               string `json:"id"`
	ClientURL        string `json:"client_url"`
	PeerAddress      string `json:"peer_address"`
	Role             string `json:"role"` // leader, follower, candidate, recovering, down
	Up               bool   `json:"up"`
	PromisedBallot   string `json:"promised_ballot"`
	CommitIndex      uint64 `json:"commit_index"`
	AppliedIndex     uint64 `json:"applied_index"`
	Lag              uint64 `json:"lag"`
	SnapshotIndex    uint64 `json:"snapshot_index"`
	LastContactMs    int64  `json:"last_contact_ms"` // since this replica last heard it (-1: never)
	MemberStatus     string `json:"member_status"`   // gossip: alive, suspect, down
	Leader           string `json:"leader"`          // the leader it knows of
	LeaseRemainingMs int64  `json:"lease_remaining_ms"`
	Recovering       bool   `json:"recovering"`
	UptimeMs         int64  `json:"uptime_ms"`
}

// ClusterView is the body of GET /v1/cluster.
type ClusterView struct {
	Cell             string        `json:"cell"`
	Leader           string        `json:"leader"`
	LeaderURL        string        `json:"leader_url"`
	Ballot           string        `json:"ballot"`
	LeaseRemainingMs int64         `json:"lease_remaining_ms"`
	Self             string        `json:"self"`
	Replicas         []ReplicaView `json:"replicas"`
}

// peerStatus asks the other replicas for their own status over HTTP, so the
// cell view is what each replica says of itself, and a replica that does not
// answer is shown down.
type peerStatus struct {
	s      *Server
	client *http.Client
	mu     sync.Mutex
	last   map[string]time.Time // last successful contact per replica
}

func newPeerStatus(s *Server) *peerStatus {
	return &peerStatus{s: s, client: &http.Client{Timeout: 400 * time.Millisecond, Transport: s.sec.transport()},
		last: map[string]time.Time{}}
}

func (p *peerStatus) selfView() ReplicaView {
	s := p.s
	st := s.node.Status()
	v := ReplicaView{
		ID: formatID(s.cfg.ID), ClientURL: s.sec.url(s.cfg.Self().Client), PeerAddress: s.cfg.Self().Peer,
		Role: st.Role.String(), Up: true, PromisedBallot: st.Ballot.String(), CommitIndex: st.Commit,
		AppliedIndex: st.Applied, SnapshotIndex: st.Snapshot, LastContactMs: 0, MemberStatus: "alive",
		Leader: nodeName(st.Leader), Recovering: st.Recovering, UptimeMs: time.Since(s.started).Milliseconds(),
		LeaseRemainingMs: int64(st.LeaseRemaining) * int64(s.cfg.TickMs),
	}
	if st.Recovering {
		v.Role = "recovering"
	}
	return v
}

func (s *Server) cluster(ctx context.Context) (any, error) {
	p := s.peers
	gossip := s.members.Status()
	views := make([]ReplicaView, len(s.cfg.Replicas))
	var wg sync.WaitGroup
	for i, r := range s.cfg.Replicas {
		id := formatID(r.ID)
		if r.ID == s.cfg.ID {
			views[i] = p.selfView()
			continue
		}
		wg.Go(func() {
			v, err := p.fetch(ctx, s.sec.url(r.Client))
			if err != nil {
				v = ReplicaView{ID: id, ClientURL: s.sec.url(r.Client), PeerAddress: r.Peer, Role: "down"}
			}
			p.mu.Lock()
			if err == nil {
				p.last[id] = time.Now()
			}
			if t, ok := p.last[id]; ok {
				v.LastContactMs = time.Since(t).Milliseconds()
			} else {
				v.LastContactMs = -1
			}
			p.mu.Unlock()
			views[i] = v
		})
	}
	wg.Wait()
	out := ClusterView{Cell: s.cfg.Cell, Self: formatID(s.cfg.ID)}
	var leaderCommit uint64
	for i := range views {
		if st, ok := gossip[views[i].ID]; ok {
			views[i].MemberStatus = st
		} else {
			views[i].MemberStatus = "down"
		}
		if views[i].Up && views[i].Role == paxos.Leader.String() {
			out.Leader, out.LeaderURL = views[i].ID, views[i].ClientURL
			out.Ballot = views[i].PromisedBallot
			out.LeaseRemainingMs = views[i].LeaseRemainingMs
			leaderCommit = views[i].CommitIndex
		}
	}
	for i := range views {
		if views[i].Up && leaderCommit > views[i].AppliedIndex {
			views[i].Lag = leaderCommit - views[i].AppliedIndex
		}
	}
	out.Replicas = views
	return out, nil
}

func (p *peerStatus) fetch(ctx context.Context, base string) (ReplicaView, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v1/cluster/self", nil)
	if err != nil {
		return ReplicaView{}, err
	}
	// The replicas prove who they are with their certificate (TLS), or
	// with the shared replica token.
	if tok := p.s.sec.replicaToken; tok != "" && p.s.sec.tls == nil {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		return ReplicaView{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ReplicaView{}, fmt.Errorf("status %d", resp.StatusCode)
	}
	var v ReplicaView
	err = json.NewDecoder(http.MaxBytesReader(nil, resp.Body, 1<<16)).Decode(&v)
	return v, err
}
