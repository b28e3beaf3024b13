package lockservice

import (
	"reflect"
	"testing"

	"pgregory.net/rapid"
)

var propPaths = []string{p("a"), p("a/b"), p("c"), p("e/f"), p("e")}

// genCommand draws a command that is mostly meaningful for machine m (it
// reads m to pick live sessions and held generations), and sometimes not.
func genCommand(t *rapid.T, m *Machine, sessions []string, now *int64) Command {
	*now += rapid.Int64Range(0, 1500).Draw(t, "dt")
	nowMs := *now
	if rapid.IntRange(0, 30).Draw(t, "skew") == 0 {
		nowMs -= 5000 // a leader with a slow clock
	}
	sess := func() string {
		if len(sessions) == 0 || rapid.IntRange(0, 20).Draw(t, "unknown_session") == 0 {
			return "00000000000fffff"
		}
		return rapid.SampledFrom(sessions).Draw(t, "session")
	}
	path := func() string { return rapid.SampledFrom(propPaths).Draw(t, "path") }
	contents := func() *[]byte {
		switch rapid.IntRange(0, 2).Draw(t, "contents_kind") {
		case 0:
			return nil
		case 1:
			return Bytes(nil)
		}
		return Bytes([]byte(rapid.SampledFrom([]string{"x", "yy", "\x00\xff"}).Draw(t, "contents")))
	}
	reqID := func() string { return rapid.SampledFrom([]string{"", "", "r1", "r2", "r3"}).Draw(t, "request_id") }
	mode := func() Mode { return rapid.SampledFrom([]Mode{"", ModeExclusive, ModeShared}).Draw(t, "mode") }

	principal := func() string { return rapid.SampledFrom([]string{"teamA", "teamB", Everyone}).Draw(t, "principal") }
	switch rapid.IntRange(0, 14).Draw(t, "kind") {
	case 0, 1:
		ld := rapid.SampledFrom([]int64{0, 500, 2000}).Draw(t, "lock_delay")
		owner := rapid.SampledFrom([]string{"", "teamA", "teamB"}).Draw(t, "owner")
		return Command{Kind: KindCreateSession, NowMs: nowMs, LockDelayMs: &ld, Label: "p", Principal: owner}
	case 13:
		prefix := rapid.SampledFrom(append([]string{PathPrefix + testCell}, propPaths...)).Draw(t, "acl_prefix")
		perms := rapid.SampledFrom([][]string{nil, {"read"}, {"write", "lock"}, {"admin"}}).Draw(t, "perms")
		return Command{Kind: KindSetACL, NowMs: nowMs, Path: prefix, Principal: principal(), Perms: perms}
	case 14:
		return Command{Kind: KindDeleteACL, NowMs: nowMs, Path: path(), Principal: principal()}
	case 2:
		return Command{Kind: KindEndSession, NowMs: nowMs, Session: sess()}
	case 3:
		return Command{Kind: KindExpireSession, NowMs: nowMs, Session: sess()}
	case 4:
		c := Command{Kind: KindPutNode, NowMs: nowMs, Path: path()}
		switch rapid.IntRange(0, 4).Draw(t, "put_kind") {
		case 0:
			c.Dir = true
		case 1:
			c.Ephemeral, c.Session, c.Contents = true, sess(), contents()
		case 2:
			c.CreateOnly, c.Contents = true, contents()
		case 3:
			c.IfContentGeneration, c.Contents = u64(rapid.Uint64Range(1, 3).Draw(t, "if_gen")), contents()
		default:
			c.Contents = contents()
		}
		return c
	case 5:
		c := Command{Kind: KindDeleteNode, NowMs: nowMs, Path: path()}
		if rapid.Bool().Draw(t, "if_instance") {
			c.IfInstance = u64(rapid.Uint64Range(0, 8).Draw(t, "instance"))
		}
		return c
	case 6, 7, 8:
		c := Command{Kind: KindAcquire, NowMs: nowMs, Path: path(), Session: sess(), Mode: mode(), RequestID: reqID(),
			WaitMs: rapid.SampledFrom([]int64{0, 0, 100, 1000, 5000}).Draw(t, "wait")}
		if rapid.IntRange(0, 3).Draw(t, "with_contents") == 0 {
			c.Contents = contents()
		}
		return c
	case 9, 10:
		c := Command{Kind: KindRelease, NowMs: nowMs, Path: path(), Session: sess(), RequestID: reqID()}
		if l, err := m.GetLock(c.Path, nowMs); err == nil && len(l.Holders) > 0 && rapid.IntRange(0, 4).Draw(t, "pick_holder") > 0 {
			h := rapid.SampledFrom(l.Holders).Draw(t, "holder")
			c.Session, c.Generation = h.Session, h.Generation
		} else {
			c.Generation = rapid.Uint64Range(0, 6).Draw(t, "generation")
		}
		return c
	case 11:
		return Command{Kind: KindTick, NowMs: nowMs + rapid.Int64Range(0, 3000).Draw(t, "tick_extra")}
	}
	return Command{Kind: KindLeaderChanged, NowMs: nowMs, Leader: rapid.SampledFrom([]string{"", "1", "2"}).Draw(t, "leader")}
}

func newPropMachine(t *rapid.T) *Machine {
	m, err := New(Config{Cell: testCell, EventHistory: 64})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// pathGen is the lock generation a path shows now: the lock's, else the
// node's, else nothing known.
func pathGen(m *Machine, path string) (uint64, bool) {
	if l, err := m.GetLock(path, 0); err == nil {
		return l.Generation, true
	}
	return 0, false
}

// TestPropertyReplicasAgree applies random command sequences to two
// machines (they must return equal results and reach equal snapshots), and
// restores a third from a snapshot taken mid-sequence and feeds it the rest
// (it must agree too). After every step the invariants hold, and lock
// generations never go down.
func TestPropertyReplicasAgree(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a, b := newPropMachine(t), newPropMachine(t)
		var c *Machine
		steps := rapid.IntRange(1, 150).Draw(t, "steps")
		cut := rapid.IntRange(0, steps).Draw(t, "snapshot_at")
		var sessions []string
		now := int64(1_000_000)
		var maxGen uint64
		lastGen := map[string]uint64{}
		lastACLGen := map[string]uint64{}
		for i := 0; i < steps; i++ {
			if i == cut {
				snap, err := a.Snapshot()
				if err != nil {
					t.Fatal(err)
				}
				c = newPropMachine(t)
				if err := c.Restore(snap); err != nil {
					t.Fatalf("restore: %v\n%s", err, snap)
				}
			}
			cmd := genCommand(t, a, sessions, &now)
			data, err := Encode(cmd)
			if err != nil {
				t.Fatal(err)
			}
			index := uint64(i + 1)
			ra := a.Apply(index, data).(Result)
			rb := b.Apply(index, data).(Result)
			if !reflect.DeepEqual(ra, rb) {
				t.Fatalf("step %d %v: replicas disagree:\n%+v\n%+v", i, cmd.Kind, ra, rb)
			}
			if c != nil {
				if rc := c.Apply(index, data).(Result); !reflect.DeepEqual(ra, rc) {
					t.Fatalf("step %d %v: restored replica disagrees:\n%+v\n%+v", i, cmd.Kind, ra, rc)
				}
			}
			if ra.Err != nil && Code(ra.Err) == "internal" {
				t.Fatalf("internal error: %v", ra.Err)
			}
			if ra.Session != nil {
				sessions = append(sessions, ra.Session.ID)
			}
			checkInvariants(t, a)
			// Generations: an exclusive hold gets one above all before it; a
			// shared hold carries the path's current one; no path's
			// generation ever goes down.
			for _, e := range ra.Events {
				if e.Type != EventLockAcquired {
					continue
				}
				if e.Generation > maxGen {
					maxGen = e.Generation
				} else if e.Generation < lastGen[e.Path] {
					t.Fatalf("step %d: %s acquired at generation %d below %d", i, e.Path, e.Generation, lastGen[e.Path])
				}
				lastGen[e.Path] = max(lastGen[e.Path], e.Generation)
			}
			for _, path := range propPaths {
				if g, ok := pathGen(a, path); ok {
					if g < lastGen[path] {
						t.Fatalf("step %d: %s generation went down %d -> %d", i, path, lastGen[path], g)
					}
					lastGen[path] = g
				}
				// acl_generation never goes down either, and moves to this
				// index when an ACL rule of a prefix of the path changes.
				ag := a.ACLGeneration(path)
				if ag < lastACLGen[path] {
					t.Fatalf("step %d: %s acl_generation went down %d -> %d", i, path, lastACLGen[path], ag)
				}
				if ra.Err == nil && (cmd.Kind == KindSetACL || cmd.Kind == KindDeleteACL) && under(path, cmd.Path) && ag != index {
					t.Fatalf("step %d: %s acl_generation %d after an ACL change at %s, index %d", i, path, ag, cmd.Path, index)
				}
				lastACLGen[path] = ag
			}
		}
		sa, _ := a.Snapshot()
		sb, _ := b.Snapshot()
		mustEqualSnapshots(t, sa, sb)
		if c != nil {
			sc, _ := c.Snapshot()
			mustEqualSnapshots(t, sa, sc)
			checkInvariants(t, c)
		}
	})
}

// TestPropertyRejectionsChangeNothing: whenever a random command is
// rejected, the state equals that of a Tick at the same index and time.
func TestPropertyRejectionsChangeNothing(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := newPropMachine(t)
		var sessions []string
		now := int64(1_000_000)
		for i := 0; i < 80; i++ {
			cmd := genCommand(t, m, sessions, &now)
			before, _ := m.Snapshot()
			res := m.ApplyCommand(uint64(i+1), cmd)
			if res.Session != nil {
				sessions = append(sessions, res.Session.ID)
			}
			if res.Err == nil {
				continue
			}
			twin := newPropMachine(t)
			if err := twin.Restore(before); err != nil {
				t.Fatal(err)
			}
			twin.ApplyCommand(uint64(i+1), Command{Kind: KindTick, NowMs: cmd.NowMs})
			after, _ := m.Snapshot()
			tick, _ := twin.Snapshot()
			if string(after) != string(tick) {
				t.Fatalf("rejected %+v (%v) changed the state:\n%s\n%s", cmd, res.Err, tick, after)
			}
		}
	})
}
