package paxos

import "sync"

// MemNetwork connects in-process replicas with Transports that deliver
// through buffered channels: the in-memory network that Node tests and the
// SDK's in-process examples use. Links can be cut to partition replicas.
type MemNetwork struct {
	mu    sync.Mutex
	boxes map[NodeID]*memTransport
	cut   map[[2]NodeID]bool
}

// NewMemNetwork returns an empty network.
func NewMemNetwork() *MemNetwork {
	return &MemNetwork{boxes: map[NodeID]*memTransport{}, cut: map[[2]NodeID]bool{}}
}

// Transport returns a new transport for replica id, replacing any earlier
// one (as a restarted process would).
func (n *MemNetwork) Transport(id NodeID) Transport {
	t := &memTransport{net: n, id: id, ch: make(chan Message, 8192)}
	n.mu.Lock()
	n.boxes[id] = t
	n.mu.Unlock()
	return t
}

// Cut drops every message between a and b, both ways; Heal undoes all cuts.
func (n *MemNetwork) Cut(a, b NodeID) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut[[2]NodeID{a, b}] = true
	n.cut[[2]NodeID{b, a}] = true
}

// Isolate cuts id off from every other replica.
func (n *MemNetwork) Isolate(id NodeID, peers []NodeID) {
	for _, p := range peers {
		if p != id {
			n.Cut(id, p)
		}
	}
}

// Heal restores every link.
func (n *MemNetwork) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cut = map[[2]NodeID]bool{}
}

type memTransport struct {
	net    *MemNetwork
	id     NodeID
	ch     chan Message
	once   sync.Once
	closed bool
}

func (t *memTransport) Send(m Message) {
	n := t.net
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.boxes[t.id] != t || n.cut[[2]NodeID{m.From, m.To}] {
		return
	}
	dst, ok := n.boxes[m.To]
	if !ok || dst.closed {
		return
	}
	select {
	case dst.ch <- m:
	default: // full: lossy by contract
	}
}

func (t *memTransport) Receive() <-chan Message { return t.ch }

func (t *memTransport) Close() error {
	t.once.Do(func() {
		t.net.mu.Lock()
		t.closed = true
		close(t.ch)
		t.net.mu.Unlock()
	})
	return nil
}
