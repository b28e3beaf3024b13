package tcptransport

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lockd/lockd/paxos"
)

const (
	// minBackoff and maxBackoff bound the wait after a failed dial; it
	// doubles per consecutive failure and is jittered to half..full.
	minBackoff = 20 * time.Millisecond
	maxBackoff = time.Second
	// maxBatch bounds the messages written between flushes, so a steady
	// stream still gets a fresh write deadline and is flushed.
	maxBatch = 1024
	// ioBufferSize is the bufio buffer of each connection.
	ioBufferSize = 64 << 10
	// maxKeptBuffer is the largest frame buffer kept for reuse.
	maxKeptBuffer = 1 << 20
)

// peer is the outbound side of one peer: its queue and the writer goroutine
// that owns its connection.
type peer struct {
	t     *Transport
	id    paxos.NodeID
	addr  string
	tls   *tls.Config
	log   hclog.Logger
	queue chan paxos.Message

	sent, dropped, reconnects, dialFailures atomic.Uint64
	connected                               atomic.Bool
	queueWarn                               rateLimit

	// Owned by the writer goroutine.
	everConnected bool
	frame         []byte
}

// outConn is one open outbound connection.
type outConn struct {
	raw  net.Conn // the TCP connection; closing it stops everything on it
	conn net.Conn // raw, or the TLS client over it
	bw   *bufio.Writer
	dead chan struct{} // closed once the peer closes the connection
}

func newPeer(t *Transport, id paxos.NodeID, addr string) *peer {
	return &peer{
		t:     t,
		id:    id,
		addr:  addr,
		tls:   t.clientTLS(addr),
		log:   t.log.With("peer", id, "addr", addr),
		queue: make(chan paxos.Message, t.cfg.QueueSize),
	}
}

// run is the writer goroutine. It dials when a message arrives and no
// connection is open, writes batches, and hangs up on any error.
func (p *peer) run() {
	t := p.t
	defer t.wg.Done()
	var oc *outConn
	var backoff time.Duration
	var retryAt time.Time
	defer func() {
		if oc != nil {
			p.hangUp(oc)
		}
		p.drainQueue()
	}()
	for {
		var dead <-chan struct{}
		if oc != nil {
			dead = oc.dead
		}
		select {
		case <-t.ctx.Done():
			return
		case <-dead:
			p.log.Info("peer closed connection")
			p.hangUp(oc)
			oc = nil
		case m := <-p.queue:
			if oc == nil {
				if time.Now().Before(retryAt) {
					p.dropped.Add(1)
					continue
				}
				var err error
				if oc, err = p.connect(); err != nil {
					p.dropped.Add(1)
					if t.ctx.Err() != nil {
						return
					}
					p.dialFailures.Add(1)
					backoff = min(max(2*backoff, minBackoff), maxBackoff)
					wait := backoff/2 + rand.N(backoff/2+1)
					retryAt = time.Now().Add(wait)
					if backoff == minBackoff {
						p.log.Warn("cannot reach peer", "error", err, "retry_in", wait)
					} else {
						p.log.Debug("dial failed", "error", err, "retry_in", wait)
					}
					continue
				}
				backoff = 0
			}
			if err := p.writeBatch(oc, m); err != nil {
				if t.ctx.Err() == nil {
					p.log.Warn("lost connection to peer", "error", err)
				}
				p.hangUp(oc)
				oc = nil
			}
		}
	}
}

// connect dials the peer and runs the handshake, all within DialTimeout.
func (p *peer) connect() (*outConn, error) {
	t := p.t
	ctx, cancel := context.WithTimeout(t.ctx, t.cfg.DialTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	if !t.track(raw) {
		_ = raw.Close()
		return nil, net.ErrClosed
	}
	ok := false
	defer func() {
		if !ok {
			t.untrack(raw)
		}
	}()
	setNoDelay(raw)
	deadline, _ := ctx.Deadline()
	if err := raw.SetDeadline(deadline); err != nil {
		return nil, err
	}
	conn := raw
	if p.tls != nil {
		tc := tls.Client(raw, p.tls)
		if err := tc.Handshake(); err != nil {
			return nil, fmt.Errorf("tls handshake: %w", err)
		}
		conn = tc
	}
	if _, err := conn.Write(appendHello(nil, t.cfg.Cell, t.cfg.Self)); err != nil {
		return nil, fmt.Errorf("%w: send hello: %w", errHandshake, err)
	}
	if err := readAck(conn); err != nil {
		return nil, err
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	ok = true
	oc := &outConn{raw: raw, conn: conn, bw: bufio.NewWriterSize(conn, ioBufferSize), dead: make(chan struct{})}
	t.wg.Add(1)
	go p.watch(oc)
	if p.everConnected {
		p.reconnects.Add(1)
	}
	p.everConnected = true
	p.connected.Store(true)
	p.log.Info("connected to peer", "reconnects", p.reconnects.Load())
	return oc, nil
}

// watch waits for the peer to close the connection. The acceptor never writes
// after its ack, so any return from Read (EOF, reset, stray bytes, or our own
// hang-up) means the connection is done. Without it, a restarted peer would
// be noticed only when a write failed, losing the messages written first.
func (p *peer) watch(oc *outConn) {
	defer p.t.wg.Done()
	defer close(oc.dead)
	var b [1]byte
	_, _ = oc.conn.Read(b[:])
}

// writeBatch writes m and whatever else is queued, up to maxBatch messages,
// then flushes. A write error loses the connection.
func (p *peer) writeBatch(oc *outConn, m paxos.Message) error {
	if err := oc.conn.SetWriteDeadline(time.Now().Add(p.t.cfg.WriteTimeout)); err != nil {
		p.dropped.Add(1)
		return err
	}
	for n := 1; ; n++ {
		if err := p.writeFrame(oc, &m); err != nil {
			return err
		}
		if n == maxBatch {
			break
		}
		more := false
		select {
		case m = <-p.queue:
			more = true
		default:
		}
		if !more {
			break
		}
	}
	return oc.bw.Flush()
}

// writeFrame encodes m as a frame into the connection's buffer. A message
// the peer would refuse is dropped here instead.
func (p *peer) writeFrame(oc *outConn, m *paxos.Message) error {
	if err := paxos.ValidateMessage(m); err != nil {
		p.dropped.Add(1)
		p.log.Warn("dropping message the peer would refuse", "type", m.Type.String(), "error", err)
		return nil
	}
	buf := append(p.frame[:0], 0, 0, 0, 0)
	buf = paxos.EncodeMessage(buf, m)
	if cap(buf) <= maxKeptBuffer {
		p.frame = buf
	} else {
		p.frame = nil
	}
	n := len(buf) - 4
	if n > p.t.cfg.MaxFrame {
		p.dropped.Add(1)
		p.log.Warn("dropping oversized message", "type", m.Type.String(), "bytes", n, "max_frame", p.t.cfg.MaxFrame)
		return nil
	}
	binary.BigEndian.PutUint32(buf, uint32(n))
	if _, err := oc.bw.Write(buf); err != nil {
		p.dropped.Add(1)
		return err
	}
	p.sent.Add(1)
	return nil
}

// hangUp closes oc; its watcher then exits.
func (p *peer) hangUp(oc *outConn) {
	p.t.untrack(oc.raw)
	p.connected.Store(false)
}

// drainQueue counts what is left in the queue as dropped.
func (p *peer) drainQueue() {
	for {
		select {
		case <-p.queue:
			p.dropped.Add(1)
		default:
			return
		}
	}
}
