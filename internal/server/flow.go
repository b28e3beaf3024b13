package server

import (
	"sync"

	"github.com/lockd/lockd/paxos"
)

// FlowMessage is one consensus message as the operator's flow view shows it.
type FlowMessage struct {
	Seq    uint64 `json:"seq"`
	Time   int64  `json:"time"` // unix ms
	Type   string `json:"type"` // prepare, promise, accept, accepted, commit, nack, ...
	From   string `json:"from"`
	To     string `json:"to"`
	Ballot string `json:"ballot"`
	Slot   uint64 `json:"slot"`
	Slots  int    `json:"slots"`
	OK     bool   `json:"ok"`
	Sent   bool   `json:"sent"`
	// Role is set (with Type "role") for a role change of this replica.
	Role   string `json:"role,omitempty"`
	Leader string `json:"leader,omitempty"`
}

// flowRing keeps the most recent consensus messages this replica sent or
// received, bounded, for /v1/cluster/flow.
type flowRing struct {
	mu sync.Mutex
	// lastBeat is the commit index of the last heartbeat recorded per
	// link: heartbeats that carry nothing new are left out.
	lastBeat map[[2]paxos.NodeID]uint64
	buf      []FlowMessage
	next     uint64 // seq of the next message
	size     int
}

func newFlowRing(size int) *flowRing {
	return &flowRing{buf: make([]FlowMessage, 0, size), size: size, lastBeat: map[[2]paxos.NodeID]uint64{}}
}

// Observe records a paxos flow event; it is called on the node's loop, so
// it only copies into the ring. Heartbeat acks, and heartbeats whose commit
// index did not move, are left out: they carry no decision and would flood
// the view.
func (r *flowRing) Observe(ev paxos.FlowEvent) {
	var m FlowMessage
	if ev.Status != nil {
		m = FlowMessage{Type: "role", From: nodeName(ev.Status.ID), Role: ev.Status.Role.String(),
			Leader: nodeName(ev.Status.Leader), Ballot: ev.Status.Ballot.String(), OK: true}
	} else {
		if ev.Type == paxos.MsgHeartbeatResp || ev.Type == paxos.MsgPreVoteResp && ev.OK {
			return
		}
		m = FlowMessage{Type: ev.Type.String(), From: nodeName(ev.From), To: nodeName(ev.To), Ballot: ev.Ballot.String(),
			Slot: ev.Slot, Slots: ev.Slots, OK: ev.OK, Sent: ev.Sent}
	}
	m.Time = ev.Time.UnixMilli()
	r.mu.Lock()
	defer r.mu.Unlock()
	if ev.Status == nil && ev.Type == paxos.MsgHeartbeat {
		link := [2]paxos.NodeID{ev.From, ev.To}
		if prev, ok := r.lastBeat[link]; ok && prev == ev.Slot {
			return
		}
		r.lastBeat[link] = ev.Slot
	}
	m.Seq = r.next
	r.next++
	if len(r.buf) < r.size {
		r.buf = append(r.buf, m)
	} else {
		r.buf[m.Seq%uint64(r.size)] = m
	}
}

// Since returns the retained messages with seq >= since, oldest first.
func (r *flowRing) Since(since uint64) []FlowMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	first := uint64(0)
	if r.next > uint64(r.size) {
		first = r.next - uint64(r.size)
	}
	out := make([]FlowMessage, 0, 64)
	for s := max(first, since); s < r.next; s++ {
		out = append(out, r.buf[s%uint64(r.size)])
	}
	return out
}

func nodeName(id paxos.NodeID) string {
	if id == paxos.None {
		return ""
	}
	return formatID(uint32(id))
}
