package lockservice_test

import (
	"context"
	"fmt"

	"github.com/lockd/lockd/lockservice"
)

// An election: two candidates, the second waits; when the leader's session
// ends, the lock and the published value pass to the second in the same
// command.
func Example() {
	m, _ := lockservice.New(lockservice.Config{Cell: "local"})
	var index uint64
	apply := func(c lockservice.Command) lockservice.Result {
		index++
		c.NowMs = 1_700_000_000_000 + int64(index)
		b, err := lockservice.Encode(c)
		if err != nil {
			panic(err)
		}
		return m.Apply(index, b).(lockservice.Result)
	}
	s1 := apply(lockservice.Command{Kind: lockservice.KindCreateSession, Label: "node-1"}).Session.ID
	s2 := apply(lockservice.Command{Kind: lockservice.KindCreateSession, Label: "node-2"}).Session.ID

	const path = "/ls/local/service/leader"
	r1 := apply(lockservice.Command{Kind: lockservice.KindAcquire, Path: path, Session: s1, Contents: lockservice.Bytes([]byte("10.0.0.1:80"))})
	r2 := apply(lockservice.Command{Kind: lockservice.KindAcquire, Path: path, Session: s2, WaitMs: 30_000, Contents: lockservice.Bytes([]byte("10.0.0.2:80"))})
	fmt.Println("first granted:", r1.Grant != nil, "second waiting:", r2.Waiting)

	leader, _ := m.Election(path)
	fmt.Printf("leader %s value %s\n", leader.Session, leader.Value)

	apply(lockservice.Command{Kind: lockservice.KindEndSession, Session: s1})
	g, err := m.AwaitAcquire(context.Background(), r2.WaitID)
	fmt.Println("second granted:", g.Session == s2, err)
	leader, _ = m.Election(path)
	fmt.Printf("leader %s value %s\n", leader.Session, leader.Value)
	valid, _, _ := m.CheckSequencer(r1.Grant.Sequencer)
	fmt.Println("old leader's sequencer valid:", valid)

	// Output:
	// first granted: true second waiting: true
	// leader 0000000000000001 value 10.0.0.1:80
	// second granted: true <nil>
	// leader 0000000000000002 value 10.0.0.2:80
	// old leader's sequencer valid: false
}
