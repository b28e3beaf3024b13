package tcptransport

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockd/lockd/paxos"
)

// BenchmarkTransportRoundTrip measures one message there and back between
// two transports on loopback: node 2 echoes every message to node 1.
func BenchmarkTransportRoundTrip(b *testing.B) {
	trs := newCluster(b, 2, nil)
	a, echo := trs[0], trs[1]
	go func() {
		for m := range echo.Receive() {
			m.From, m.To = m.To, m.From
			echo.Send(m)
		}
	}()
	ping := paxos.Message{Type: paxos.MsgHeartbeat, From: 1, To: 2, Ballot: paxos.Ballot{Round: 9, Node: 1},
		Commit: 123456, Tick: 1}
	timer := time.NewTimer(waitTimeout)
	roundTrip := func() {
		a.Send(ping)
		timer.Reset(waitTimeout)
		select {
		case <-a.Receive():
		case <-timer.C:
			b.Fatalf("lost a ping; stats %+v / %+v", a.Stats(), echo.Stats())
		}
	}
	roundTrip() // connect both ways
	roundTrip()
	b.ReportAllocs()
	for b.Loop() {
		roundTrip()
	}
}

// BenchmarkTransportThroughput streams messages from node 1 to node 2,
// keeping at most window in flight so that nothing is dropped.
func BenchmarkTransportThroughput(b *testing.B) {
	accept := paxos.Message{Type: paxos.MsgAccept, From: 1, To: 2, Ballot: paxos.Ballot{Round: 9, Node: 1},
		Commit: 1_000_000, Tick: 77}
	for i := range 16 {
		accept.Entries = append(accept.Entries, paxos.Entry{Slot: 1_000_001 + uint64(i), Ballot: accept.Ballot,
			Value: paxos.Value{bytes.Repeat([]byte{'c'}, 100)}})
	}
	heartbeat := paxos.Message{Type: paxos.MsgHeartbeat, From: 1, To: 2, Ballot: accept.Ballot, Commit: 1_000_000}
	for _, bc := range []struct {
		name string
		m    paxos.Message
	}{{"heartbeat", heartbeat}, {"accept_16x100B", accept}} {
		b.Run(bc.name, func(b *testing.B) { benchStream(b, bc.m) })
	}
}

func benchStream(b *testing.B, m paxos.Message) {
	const window = 1024
	trs := newCluster(b, 2, nil)
	src, dst := trs[0], trs[1]
	var got atomic.Int64
	progress := make(chan struct{}, 1)
	go func() {
		for range dst.Receive() {
			got.Add(1)
			select {
			case progress <- struct{}{}:
			default:
			}
		}
	}()
	timer := time.NewTimer(waitTimeout)
	waitUntil := func(n int64) {
		for got.Load() < n {
			timer.Reset(waitTimeout)
			select {
			case <-progress:
			case <-timer.C:
				b.Fatalf("stalled at %d of %d; stats %+v / %+v", got.Load(), n, src.Stats(), dst.Stats())
			}
		}
	}
	src.Send(m) // connect
	waitUntil(1)
	b.SetBytes(int64(4 + len(paxos.EncodeMessage(nil, &m))))
	b.ReportAllocs()
	b.ResetTimer()
	start := got.Load()
	for i := range b.N {
		waitUntil(start + int64(i) - window + 1)
		src.Send(m)
	}
	waitUntil(start + int64(b.N))
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
}
