package tcptransport

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/lockd/lockd/paxos"
)

func TestAllToAll(t *testing.T) {
	const n, per = 5, 200
	trs := newCluster(t, n, nil)
	for i, tr := range trs {
		for j := range n {
			if i == j {
				continue
			}
			for s := range uint64(per) {
				tr.Send(msg(paxos.NodeID(i+1), paxos.NodeID(j+1), s+1))
			}
		}
	}
	for i, tr := range trs {
		self := paxos.NodeID(i + 1)
		next := map[paxos.NodeID]uint64{}
		for range (n - 1) * per {
			m := recv(t, tr)
			checkMsg(t, m)
			if m.To != self || m.From == self {
				t.Fatalf("node %d got %d->%d", self, m.From, m.To)
			}
			// Nothing is lost on an idle loopback, and one sender's
			// messages arrive in order.
			if want := next[m.From] + 1; m.Tick != want {
				t.Fatalf("node %d got #%d from %d, want #%d", self, m.Tick, m.From, want)
			}
			next[m.From] = m.Tick
		}
	}
	for i, tr := range trs {
		s := tr.Stats()
		if s.Sent != (n-1)*per || s.Dropped != 0 || s.Received != (n-1)*per || s.ReceiveDropped != 0 {
			t.Errorf("node %d stats %+v", i+1, s)
		}
		for id, ps := range s.Peers {
			if !ps.Connected || ps.Sent != per {
				t.Errorf("node %d peer %d stats %+v", i+1, id, ps)
			}
		}
	}
}

// sendUntilReceived sends numbered messages from a to b until b receives one,
// and returns the number of the next one to send.
func sendUntilReceived(t *testing.T, a, b *Transport, from, to paxos.NodeID) uint64 {
	t.Helper()
	seq := uint64(0)
	waitFor(t, "a message to get through", func() bool {
		seq++
		a.Send(msg(from, to, seq))
		select {
		case m := <-b.Receive():
			checkMsg(t, m)
			return true
		default:
			return false
		}
	})
	return seq + 1
}

// expectInOrder sends k numbered messages from a to b, starting at first, and
// expects them all, in order. Earlier messages still arriving are skipped.
func expectInOrder(t *testing.T, a, b *Transport, from, to paxos.NodeID, first uint64, k int) {
	t.Helper()
	for i := range uint64(k) {
		a.Send(msg(from, to, first+i))
	}
	for i := uint64(0); i < uint64(k); {
		m := recv(t, b)
		checkMsg(t, m)
		if m.Tick < first {
			continue
		}
		if m.Tick != first+i {
			t.Fatalf("got #%d, want #%d", m.Tick, first+i)
		}
		i++
	}
}

func TestPeerDownThenUp(t *testing.T) {
	ln1, addr2 := listen(t), freeAddr(t)
	peers := map[paxos.NodeID]string{1: ln1.Addr().String(), 2: addr2}
	t1 := mustNew(t, Config{Self: 1, Listener: ln1, Peers: peers})

	t1.Send(msg(1, 2, 1))
	waitFor(t, "a failed dial", func() bool { return t1.Stats().DialFailures >= 1 })
	if s := t1.Stats(); s.Dropped < 1 || s.Peers[2].Connected {
		t.Fatalf("stats with peer 2 down: %+v", s)
	}

	t2 := mustNew(t, Config{Self: 2, Listener: listenOn(t, addr2), Peers: peers})
	next := sendUntilReceived(t, t1, t2, 1, 2)
	expectInOrder(t, t1, t2, 1, 2, next, 50)
}

func TestPeerRestartSameAddress(t *testing.T) {
	trs := newCluster(t, 2, nil)
	t1, t2 := trs[0], trs[1]
	expectInOrder(t, t1, t2, 1, 2, 1, 10)
	peers := map[paxos.NodeID]string{1: t1.Addr().String(), 2: t2.Addr().String()}

	if err := t2.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "peer 1 to see the connection close", func() bool { return !t1.Stats().Peers[2].Connected })

	t2b := mustNew(t, Config{Self: 2, Listener: listenOn(t, peers[2]), Peers: peers})
	next := sendUntilReceived(t, t1, t2b, 1, 2)
	expectInOrder(t, t1, t2b, 1, 2, next, 50)
	if s := t1.Stats(); s.Reconnects < 1 {
		t.Fatalf("no reconnect counted: %+v", s)
	}
	// And the restarted peer can talk back.
	expectInOrder(t, t2b, t1, 2, 1, 1, 10)
}

// stuckPeer accepts one connection, completes the handshake, and never reads
// again until the test ends.
func stuckPeer(t *testing.T) string {
	ln := listen(t)
	done := make(chan struct{})
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		if _, err := readHello(c); err != nil {
			return
		}
		if _, err := c.Write(appendAck(nil)); err != nil {
			return
		}
		<-done
	}()
	t.Cleanup(func() {
		close(done)
		_ = ln.Close()
		<-exited
	})
	return ln.Addr().String()
}

func TestQueueFullDropsInsteadOfBlocking(t *testing.T) {
	const n = 2000
	addr := stuckPeer(t)
	t1 := mustNew(t, Config{Self: 1, Listener: listen(t), Peers: map[paxos.NodeID]string{2: addr}, QueueSize: 8})
	big := msg(1, 2, 1)
	big.Entries[0].Value = paxos.Value{bytes.Repeat([]byte("x"), 64<<10)}

	// The peer reads nothing, so 128 MiB cannot all fit in socket buffers: a
	// Send that blocked would never return.
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		for range n {
			t1.Send(big)
		}
	}()
	select {
	case <-sent:
	case <-time.After(waitTimeout):
		t.Fatal("Send blocked on a peer that does not read")
	}
	waitFor(t, "the connection to open", func() bool { return t1.Stats().Peers[2].Connected })
	if s := t1.Stats(); s.Dropped == 0 {
		t.Fatalf("nothing dropped: %+v", s)
	}

	// Close must interrupt the writer blocked on the stuck connection.
	closed := make(chan error)
	go func() { closed <- t1.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(waitTimeout):
		t.Fatal("Close blocked behind a stuck peer")
	}
	if s := t1.Stats(); s.Sent+s.Dropped != n {
		t.Fatalf("sent %d + dropped %d != %d messages", s.Sent, s.Dropped, n)
	}
}

// expectClosedByPeer reads c until the transport closes it, and returns what
// it read. It fails if the connection is still open after waitTimeout.
func expectClosedByPeer(t *testing.T, c net.Conn) []byte {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatal("connection still open")
	}
	return got
}

func TestBadInboundConnections(t *testing.T) {
	trs := newCluster(t, 2, func(c *Config) {
		c.MaxFrame = 4096
		c.DialTimeout = 300 * time.Millisecond
	})
	a := trs[0]
	dial := func(t *testing.T) net.Conn {
		c, err := net.Dial("tcp", a.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	write := func(t *testing.T, c net.Conn, parts ...[]byte) {
		for _, p := range parts {
			if _, err := c.Write(p); err != nil {
				t.Fatal(err)
			}
		}
	}
	shake := func(t *testing.T, c net.Conn, from paxos.NodeID) {
		write(t, c, appendHello(nil, "test", from))
		if err := readAck(c); err != nil {
			t.Fatal(err)
		}
	}
	u32 := func(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

	refused := []struct {
		name  string
		hello []byte
	}{
		{"garbage", []byte("GET / HTTP/1.1\r\nHost: lockd\r\n\r\n")},
		{"wrong_cell", appendHello(nil, "other", 2)},
		{"unknown_node", appendHello(nil, "test", 9)},
		{"self_id", appendHello(nil, "test", 1)},
		{"bad_version", func() []byte { h := appendHello(nil, "test", 2); h[8] = 99; return h }()},
		{"short_hello", append(u32(3), "LKD"...)},
		{"silent", nil}, // says nothing: the handshake deadline closes it
	}
	for _, tc := range refused {
		t.Run("refused_"+tc.name, func(t *testing.T) {
			c := dial(t)
			write(t, c, tc.hello)
			if got := expectClosedByPeer(t, c); len(got) != 0 {
				t.Fatalf("a refused client got %q", got)
			}
		})
	}
	waitFor(t, "refusals counted", func() bool { return a.Stats().Refused == uint64(len(refused)) })

	good := paxos.EncodeMessage(nil, &paxos.Message{Type: paxos.MsgHeartbeat, From: 2, To: 1})
	badFrames := []struct {
		name  string
		frame [][]byte
	}{
		{"oversized", [][]byte{u32(4097), make([]byte, 100)}},
		{"huge_length", [][]byte{u32(1<<32 - 1)}},
		{"empty", [][]byte{u32(0)}},
		{"garbage_payload", [][]byte{u32(16), bytes.Repeat([]byte{0xee}, 16)}},
		{"trailing_bytes", [][]byte{u32(uint32(len(good) + 1)), good, {0}}},
	}
	for _, tc := range badFrames {
		t.Run("bad_frame_"+tc.name, func(t *testing.T) {
			c := dial(t)
			shake(t, c, 2)
			write(t, c, tc.frame...)
			expectClosedByPeer(t, c)
		})
	}
	waitFor(t, "bad frames counted", func() bool { return a.Stats().BadFrames == uint64(len(badFrames)) })

	t.Run("misaddressed_dropped", func(t *testing.T) {
		c := dial(t)
		shake(t, c, 2)
		frame := func(m paxos.Message) []byte {
			b := paxos.EncodeMessage(u32(0), &m)
			binary.BigEndian.PutUint32(b, uint32(len(b)-4))
			return b
		}
		write(t, c, frame(msg(3, 1, 1)), frame(msg(2, 5, 2)), frame(msg(2, 1, 3)))
		if m := recv(t, a); m.Tick != 3 {
			t.Fatalf("got #%d, want only #3", m.Tick)
		}
		if s := a.Stats(); s.ReceiveDropped != 2 {
			t.Fatalf("ReceiveDropped = %d, want 2", s.ReceiveDropped)
		}
	})

	// The transport still works for the real peer.
	expectInOrder(t, trs[1], a, 2, 1, 1, 10)
	expectInOrder(t, a, trs[1], 1, 2, 1, 10)
}

func TestWrongCellRefused(t *testing.T) {
	lnA, lnX := listen(t), listen(t)
	peers := map[paxos.NodeID]string{1: lnA.Addr().String(), 2: lnX.Addr().String()}
	a := mustNew(t, Config{Self: 1, Cell: "alpha", Listener: lnA, Peers: peers})
	x := mustNew(t, Config{Self: 2, Cell: "beta", Listener: lnX, Peers: peers})
	seq := uint64(0)
	waitFor(t, "both sides to refuse each other", func() bool {
		seq++
		x.Send(msg(2, 1, seq))
		a.Send(msg(1, 2, seq))
		sa, sx := a.Stats(), x.Stats()
		return sa.Refused >= 2 && sx.Refused >= 2 && sa.DialFailures >= 2 && sx.DialFailures >= 2
	})
	for _, tr := range []*Transport{a, x} {
		if s := tr.Stats(); s.Received != 0 || s.Sent != 0 || len(tr.Receive()) != 0 || s.Peers[3-tr.cfg.Self].Connected {
			t.Fatalf("a message crossed cells: %+v", s)
		}
	}
}

func TestSendDrops(t *testing.T) {
	trs := newCluster(t, 2, func(c *Config) { c.MaxFrame = 1024 })
	a, b := trs[0], trs[1]
	a.Send(msg(1, 9, 1)) // unknown peer
	a.Send(msg(1, 1, 1)) // self
	a.Send(msg(3, 2, 1)) // not from self
	tooBig := msg(1, 2, 2)
	tooBig.Entries[0].Value = append(tooBig.Entries[0].Value, make([]byte, 2000))
	a.Send(tooBig)
	bad := msg(1, 2, 3)
	bad.Type = 0 // the peer would refuse it
	a.Send(bad)
	a.Send(msg(1, 2, 4))
	if m := recv(t, b); m.Tick != 4 {
		t.Fatalf("got #%d, want #4", m.Tick)
	}
	if s := a.Stats(); s.Dropped != 5 || s.Sent != 1 {
		t.Fatalf("stats %+v, want 5 dropped and 1 sent", s)
	}
}

func TestCloseLeaksNoGoroutines(t *testing.T) {
	base := runtime.NumGoroutine()
	down := freeAddr(t)
	trs := newCluster(t, 3, func(c *Config) { c.Peers[4] = down })
	for i, tr := range trs {
		for to := range paxos.NodeID(4) {
			tr.Send(msg(paxos.NodeID(i+1), to+1, 1))
		}
	}
	for _, tr := range trs {
		for range 2 {
			checkMsg(t, recv(t, tr))
		}
	}
	// Leave a client mid-handshake and one mid-frame.
	for _, shake := range []bool{false, true} {
		c, err := net.Dial("tcp", trs[0].Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if shake {
			if _, err := c.Write(appendHello(nil, "test", 2)); err != nil {
				t.Fatal(err)
			}
			if err := readAck(c); err != nil {
				t.Fatal(err)
			}
			if _, err := c.Write([]byte{0, 0, 1, 0, 1, 2}); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor(t, "the dial to the down peer to fail", func() bool { return trs[0].Stats().DialFailures >= 1 })

	for _, tr := range trs {
		if err := tr.Close(); err != nil {
			t.Fatal(err)
		}
		for range tr.Receive() { // returns once the channel is closed
		}
		if err := tr.Close(); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		before := tr.Stats().Dropped
		tr.Send(msg(1, 2, 9))
		if tr.Stats().Dropped != before+1 {
			t.Fatal("Send after Close was not counted as dropped")
		}
	}
	deadline := time.Now().Add(waitTimeout)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines after Close, %d before:\n%s", runtime.NumGoroutine(), base,
				buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// selfSignedTLS returns a config that serves and verifies one self-signed
// certificate for 127.0.0.1, requiring client certificates.
func selfSignedTLS(t *testing.T) *tls.Config {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "lockd-test"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}},
		RootCAs:      pool,
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}
}

func TestMutualTLS(t *testing.T) {
	cfg := selfSignedTLS(t)
	trs := newCluster(t, 2, func(c *Config) { c.TLS = cfg })
	expectInOrder(t, trs[0], trs[1], 1, 2, 1, 20)
	expectInOrder(t, trs[1], trs[0], 2, 1, 1, 20)

	// A plaintext client is refused.
	c, err := net.Dial("tcp", trs[0].Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(appendHello(nil, "test", 2)); err != nil {
		t.Fatal(err)
	}
	if got := expectClosedByPeer(t, c); bytes.Contains(got, appendAck(nil)) {
		t.Fatal("a plaintext client got an ack")
	}
	waitFor(t, "the refusal", func() bool { return trs[0].Stats().Refused == 1 })
}

func TestNewRejectsBadConfig(t *testing.T) {
	ok := Config{Self: 1, Cell: "c", Listen: "127.0.0.1:0", Peers: map[paxos.NodeID]string{2: "127.0.0.1:1"}}
	cases := []struct {
		name  string
		tweak func(*Config)
	}{
		{"no_self", func(c *Config) { c.Self = 0 }},
		{"no_cell", func(c *Config) { c.Cell = "" }},
		{"long_cell", func(c *Config) { c.Cell = string(make([]byte, 256)) }},
		{"no_listen", func(c *Config) { c.Listen = "" }},
		{"peer_zero", func(c *Config) { c.Peers = map[paxos.NodeID]string{0: "x:1"} }},
		{"peer_no_addr", func(c *Config) { c.Peers = map[paxos.NodeID]string{2: ""} }},
		{"negative_queue", func(c *Config) { c.QueueSize = -1 }},
		{"negative_timeout", func(c *Config) { c.DialTimeout = -time.Second }},
		{"huge_frame", func(c *Config) { c.MaxFrame = paxos.MaxMessageSize + 1 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := ok
			tc.tweak(&cfg)
			if tr, err := New(cfg); !errors.Is(err, ErrInvalidConfig) {
				if err == nil {
					_ = tr.Close()
				}
				t.Fatalf("err = %v, want ErrInvalidConfig", err)
			}
		})
	}
	tr, err := New(ok)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestReceiveFullDrops(t *testing.T) {
	const n = 100
	trs := newCluster(t, 2, func(c *Config) { c.ReceiveBuffer = 4 })
	a, b := trs[0], trs[1]
	for i := range uint64(n) {
		a.Send(msg(1, 2, i+1))
	}
	// Nobody reads b.Receive: the reader drops rather than stalls.
	waitFor(t, "every message to be delivered or dropped", func() bool {
		s := b.Stats()
		return s.Received+s.ReceiveDropped == n
	})
	if s := b.Stats(); s.Received != 4 {
		t.Fatalf("stats %+v, want 4 received", s)
	}
	for range 4 {
		checkMsg(t, recv(t, b))
	}
	expectInOrder(t, a, b, 1, 2, n+1, 4)
}
