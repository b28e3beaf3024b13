package lockservice

import "testing"

func BenchmarkApplyAcquireRelease(b *testing.B) {
	for _, enc := range []struct {
		name  string
		typed bool
	}{{"typed", true}, {"encoded", false}} {
		b.Run(enc.name, func(b *testing.B) {
			h := newHarness(b)
			h.typed = enc.typed
			s := h.session(0)
			acq := Command{Kind: KindAcquire, Path: p("bench/lock"), Session: s, Contents: Bytes([]byte("leader-1"))}
			b.ReportAllocs()
			for b.Loop() {
				h.now++
				g := h.mustGrant(h.apply(acq))
				if r := h.release(g); !r.Released {
					b.Fatal(r)
				}
			}
		})
	}
}

func BenchmarkApplyQueuedHandover(b *testing.B) {
	h := newHarness(b)
	h.typed = true
	s1, s2 := h.session(0), h.session(0)
	g := h.mustGrant(h.acquire(p("q"), s1, ModeExclusive, 0))
	b.ReportAllocs()
	for b.Loop() {
		next := s2
		if g.Session == s2 {
			next = s1
		}
		h.acquire(p("q"), next, ModeExclusive, MaxWaitMs)
		h.release(g)
		g = h.lock(p("q")).benchGrant()
	}
}

func (l LockState) benchGrant() Grant {
	x := l.Holders[0]
	return Grant{Path: l.Path, Mode: x.Mode, Generation: x.Generation, Session: x.Session}
}

func BenchmarkSnapshot(b *testing.B) {
	h := newHarness(b)
	h.typed = true
	for i := 0; i < 1000; i++ {
		s := h.session(0)
		h.acquire(p("locks/")+s, s, ModeExclusive, 0)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := h.m.Snapshot(); err != nil {
			b.Fatal(err)
		}
	}
}
