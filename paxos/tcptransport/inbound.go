package tcptransport

import (
	"bufio"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/lockd/lockd/paxos"
)

// errBadFrame is wrapped when a peer sends a frame we do not accept.
var errBadFrame = errors.New("bad frame")

// frameChunk is how much of a frame the reader allocates ahead of the bytes
// that have arrived.
const frameChunk = 1 << 20

// acceptLoop accepts connections until the listener is closed.
func (t *Transport) acceptLoop() {
	defer t.wg.Done()
	var delay time.Duration
	for {
		raw, err := t.ln.Accept()
		if err != nil {
			if t.ctx.Err() != nil {
				return
			}
			if errors.Is(err, net.ErrClosed) {
				t.log.Error("listener closed, no longer accepting peers", "error", err)
				return
			}
			// Transient (e.g. out of file descriptors): back off as net/http does.
			delay = min(max(2*delay, 5*time.Millisecond), time.Second)
			t.log.Warn("accept failed", "error", err, "retry_in", delay)
			timer := time.NewTimer(delay)
			select {
			case <-t.ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
			continue
		}
		delay = 0
		if !t.track(raw) {
			_ = raw.Close()
			return
		}
		t.wg.Add(1)
		go t.serve(raw)
	}
}

// serve runs the acceptor's handshake on one connection, then reads frames
// until the connection ends.
func (t *Transport) serve(raw net.Conn) {
	defer t.wg.Done()
	defer t.untrack(raw)
	remote := raw.RemoteAddr().String()
	setNoDelay(raw)
	if err := raw.SetDeadline(time.Now().Add(t.cfg.DialTimeout)); err != nil {
		return
	}
	conn := raw
	if t.cfg.TLS != nil {
		tc := tls.Server(raw, t.cfg.TLS)
		if err := tc.Handshake(); err != nil {
			t.refuse(remote, fmt.Errorf("tls handshake: %w", err))
			return
		}
		conn = tc
	}
	br := bufio.NewReaderSize(conn, ioBufferSize)
	h, err := readHello(br)
	if err == nil {
		err = t.checkHello(h)
	}
	if err != nil {
		t.refuse(remote, err)
		return
	}
	if _, err := conn.Write(appendAck(nil)); err != nil {
		t.log.Debug("cannot ack peer hello", "peer", h.from, "remote", remote, "error", err)
		return
	}
	if err := raw.SetDeadline(time.Time{}); err != nil {
		return
	}
	log := t.log.With("peer", h.from, "remote", remote)
	t.setInbound(h.from, raw)
	defer t.clearInbound(h.from, raw)
	log.Info("accepted peer connection")

	err = t.readLoop(br, h.from, log)
	switch {
	case errors.Is(err, errBadFrame) || errors.Is(err, paxos.ErrBadMessage):
		t.badFrames.Add(1)
		log.Warn("closing peer connection", "error", err)
	case t.ctx.Err() != nil:
	default:
		log.Info("peer connection closed", "error", err)
	}
}

// refuse counts and logs a connection closed at the handshake. A
// misconfigured peer retries about once a second, so warnings are rate
// limited.
func (t *Transport) refuse(remote string, err error) {
	n := t.refused.Add(1)
	if t.refuseWarn.allow(time.Now()) {
		t.log.Warn("refused peer connection", "remote", remote, "error", err, "refused_total", n)
	} else {
		t.log.Debug("refused peer connection", "remote", remote, "error", err, "refused_total", n)
	}
}

// checkHello accepts only a configured peer of our cell.
func (t *Transport) checkHello(h hello) error {
	if h.cell != t.cfg.Cell {
		return fmt.Errorf("%w: peer %d is in cell %q, not %q", errHandshake, h.from, h.cell, t.cfg.Cell)
	}
	if t.peers[h.from] == nil {
		return fmt.Errorf("%w: node %d is not a configured peer", errHandshake, h.from)
	}
	return nil
}

// setInbound records raw as from's connection, closing an older one: the
// peer keeps one outbound connection, so the older one is dead or dying.
func (t *Transport) setInbound(from paxos.NodeID, raw net.Conn) {
	t.mu.Lock()
	old := t.inbound[from]
	t.inbound[from] = raw
	t.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
}

func (t *Transport) clearInbound(from paxos.NodeID, raw net.Conn) {
	t.mu.Lock()
	if t.inbound[from] == raw {
		delete(t.inbound, from)
	}
	t.mu.Unlock()
}

// readLoop delivers the frames of one connection from peer from until an
// error, which it returns.
func (t *Transport) readLoop(r io.Reader, from paxos.NodeID, log hclog.Logger) error {
	var hdr [4]byte
	var buf []byte
	for {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return err
		}
		n := binary.BigEndian.Uint32(hdr[:])
		if n == 0 || uint64(n) > uint64(t.cfg.MaxFrame) {
			return fmt.Errorf("%w: %d bytes, limit %d", errBadFrame, n, t.cfg.MaxFrame)
		}
		var err error
		if buf, err = readFrame(r, buf, int(n)); err != nil {
			return err
		}
		m, err := paxos.DecodeMessage(buf)
		if err != nil {
			return err
		}
		if cap(buf) > maxKeptBuffer {
			buf = nil
		}
		if m.From != from || m.To != t.cfg.Self {
			t.receiveDropped.Add(1)
			log.Debug("dropping misaddressed message", "from", m.From, "to", m.To, "type", m.Type.String())
			continue
		}
		select {
		case t.recv <- m:
			t.received.Add(1)
		default:
			t.receiveDropped.Add(1)
			if t.recvWarn.allow(time.Now()) {
				log.Warn("receive buffer full, dropping messages", "buffer", cap(t.recv),
					"dropped_total", t.receiveDropped.Load())
			}
		}
	}
}

// readFrame reads n bytes into buf[:0], growing it no faster than bytes
// arrive, so a peer that announces a large frame and sends nothing costs at
// most frameChunk.
func readFrame(r io.Reader, buf []byte, n int) ([]byte, error) {
	buf = buf[:0]
	for len(buf) < n {
		chunk := min(n-len(buf), frameChunk)
		buf = slices.Grow(buf, chunk)
		got, err := io.ReadFull(r, buf[len(buf):len(buf)+chunk])
		buf = buf[:len(buf)+got]
		if err != nil {
			return buf, err
		}
	}
	return buf, nil
}
