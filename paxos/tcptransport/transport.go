package tcptransport

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lockd/lockd/paxos"
)

// Transport is a paxos.Transport over TCP. Its methods are safe for
// concurrent use.
type Transport struct {
	cfg   Config
	log   hclog.Logger
	ln    net.Listener
	recv  chan paxos.Message
	peers map[paxos.NodeID]*peer // fixed after New

	ctx       context.Context // cancelled by Close
	cancel    context.CancelFunc
	wg        sync.WaitGroup // every goroutine the transport starts
	closed    atomic.Bool
	closeOnce sync.Once

	mu      sync.Mutex
	closing bool                      // set by Close; no connection is tracked after it
	conns   map[net.Conn]struct{}     // every open TCP connection, closed by Close
	inbound map[paxos.NodeID]net.Conn // the current accepted connection of each peer

	dropped        atomic.Uint64 // Send: unknown peer, not from Self, or closed
	received       atomic.Uint64
	receiveDropped atomic.Uint64
	refused        atomic.Uint64
	badFrames      atomic.Uint64
	sendWarn       rateLimit
	recvWarn       rateLimit
	refuseWarn     rateLimit
}

var _ paxos.Transport = (*Transport)(nil)

// Stats are the transport's counters since New.
type Stats struct {
	// Sent counts messages written to a peer connection (one may still be
	// lost if the connection breaks before the peer reads it).
	Sent uint64
	// Dropped counts outbound messages dropped: queue full, peer unreachable
	// or backing off, write failed, message too large, unknown peer, From
	// not Self, or transport closed (including messages still queued).
	Dropped uint64
	// Received counts messages delivered to the Receive channel.
	Received uint64
	// ReceiveDropped counts inbound messages dropped: Receive channel full,
	// or From or To not matching the connection.
	ReceiveDropped uint64
	// Reconnects counts connections to a peer opened after the first one.
	Reconnects uint64
	// DialFailures counts failed attempts to connect to a peer (TCP, TLS or
	// handshake).
	DialFailures uint64
	// Refused counts inbound connections closed during the handshake (wrong
	// cell, unknown node, not a lockd peer, timeout).
	Refused uint64
	// BadFrames counts inbound connections closed for an oversized, empty
	// or undecodable frame.
	BadFrames uint64
	// Peers has the outbound counters of each peer; their sums are above.
	Peers map[paxos.NodeID]PeerStats
}

// PeerStats are the outbound counters of one peer.
type PeerStats struct {
	Connected    bool // an outbound connection is open now
	Queued       int  // messages waiting in the queue now
	Sent         uint64
	Dropped      uint64
	Reconnects   uint64
	DialFailures uint64
}

// New validates cfg, starts listening, and returns a running transport.
// Connections to peers open when the first message is sent to them.
func New(cfg Config) (*Transport, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	ln := cfg.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("tcptransport: listen: %w", err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	t := &Transport{
		cfg:     cfg,
		log:     cfg.Logger.Named("transport").With("self", cfg.Self),
		ln:      ln,
		recv:    make(chan paxos.Message, cfg.ReceiveBuffer),
		peers:   make(map[paxos.NodeID]*peer, len(cfg.Peers)),
		ctx:     ctx,
		cancel:  cancel,
		conns:   make(map[net.Conn]struct{}),
		inbound: make(map[paxos.NodeID]net.Conn),
	}
	for id, addr := range cfg.Peers {
		if id != cfg.Self {
			t.peers[id] = newPeer(t, id, addr)
		}
	}
	t.wg.Add(1 + len(t.peers))
	go t.acceptLoop()
	for _, p := range t.peers {
		go p.run()
	}
	t.log.Info("transport listening", "addr", ln.Addr().String(), "cell", cfg.Cell, "peers", len(t.peers),
		"tls", cfg.TLS != nil)
	return t, nil
}

// Addr is the address the transport accepts peer connections on.
func (t *Transport) Addr() net.Addr { return t.ln.Addr() }

// Send queues m for m.To and returns at once. It drops m (see Stats.Dropped)
// if m.To is not a configured peer, m.From is not Self, the peer's queue is
// full, or the transport is closed. The caller must not modify the slices m
// refers to afterwards.
func (t *Transport) Send(m paxos.Message) {
	if t.closed.Load() {
		t.dropped.Add(1)
		return
	}
	p := t.peers[m.To]
	if p == nil || m.From != t.cfg.Self {
		t.dropped.Add(1)
		if t.sendWarn.allow(time.Now()) {
			t.log.Warn("dropping message to an unknown peer or not from self", "to", m.To, "from", m.From,
				"type", m.Type.String())
		}
		return
	}
	select {
	case p.queue <- m:
	default:
		p.dropped.Add(1)
		if p.queueWarn.allow(time.Now()) {
			p.log.Warn("send queue full, dropping messages", "queue_size", cap(p.queue),
				"dropped_total", p.dropped.Load())
		}
	}
}

// Receive returns the channel of messages addressed to this replica. It is
// closed when Close has stopped everything else.
func (t *Transport) Receive() <-chan paxos.Message { return t.recv }

// Close stops the listener and every connection, waits for every goroutine of
// the transport to exit, then closes the Receive channel. Later calls return
// nil and do nothing.
func (t *Transport) Close() error {
	var err error
	t.closeOnce.Do(func() {
		t.closed.Store(true)
		t.cancel()
		if cerr := t.ln.Close(); cerr != nil {
			err = fmt.Errorf("tcptransport: close listener: %w", cerr)
		}
		t.mu.Lock()
		t.closing = true
		conns := t.conns
		t.conns = nil
		t.mu.Unlock()
		for c := range conns {
			_ = c.Close()
		}
		t.wg.Wait()
		close(t.recv)
		t.log.Info("transport closed")
	})
	return err
}

// Stats returns the current counters.
func (t *Transport) Stats() Stats {
	s := Stats{
		Dropped:        t.dropped.Load(),
		Received:       t.received.Load(),
		ReceiveDropped: t.receiveDropped.Load(),
		Refused:        t.refused.Load(),
		BadFrames:      t.badFrames.Load(),
		Peers:          make(map[paxos.NodeID]PeerStats, len(t.peers)),
	}
	for id, p := range t.peers {
		ps := PeerStats{
			Connected:    p.connected.Load(),
			Queued:       len(p.queue),
			Sent:         p.sent.Load(),
			Dropped:      p.dropped.Load(),
			Reconnects:   p.reconnects.Load(),
			DialFailures: p.dialFailures.Load(),
		}
		s.Peers[id] = ps
		s.Sent += ps.Sent
		s.Dropped += ps.Dropped
		s.Reconnects += ps.Reconnects
		s.DialFailures += ps.DialFailures
	}
	return s
}

// track registers an open connection so that Close closes it. It returns
// false, and the caller must close c, once Close has begun.
func (t *Transport) track(c net.Conn) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return false
	}
	t.conns[c] = struct{}{}
	return true
}

// untrack closes c and forgets it.
func (t *Transport) untrack(c net.Conn) {
	t.mu.Lock()
	if t.conns != nil {
		delete(t.conns, c)
	}
	t.mu.Unlock()
	_ = c.Close()
}

func setNoDelay(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
}

// clientTLS is the TLS config to dial addr with.
func (t *Transport) clientTLS(addr string) *tls.Config {
	if t.cfg.TLS == nil {
		return nil
	}
	c := t.cfg.TLS.Clone()
	if c.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			c.ServerName = host
		}
	}
	return c
}

// rateLimit lets a repeated warning through at most once per interval.
type rateLimit struct{ last atomic.Int64 }

const warnInterval = 10 * time.Second

func (r *rateLimit) allow(now time.Time) bool {
	last := r.last.Load()
	if last != 0 && now.UnixNano()-last < int64(warnInterval) {
		return false
	}
	return r.last.CompareAndSwap(last, now.UnixNano())
}
