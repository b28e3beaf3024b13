package lockservice

import (
	"encoding/base64"
	"strings"
	"testing"
)

func TestSequencerRoundTrip(t *testing.T) {
	for _, s := range []Sequencer{
		{Path: p("a"), Mode: ModeExclusive, Generation: 1, Session: "0000000000000001"},
		{Path: p("a/b/c"), Mode: ModeShared, Generation: 0, Session: "x"},
		{Path: "/ls/other/" + strings.Repeat("z", 200), Mode: ModeExclusive, Generation: 1<<64 - 1, Session: strings.Repeat("s", MaxSessionIDBytes)},
	} {
		str := s.String()
		if !strings.HasPrefix(str, "v1:") {
			t.Fatal(str)
		}
		got, err := ParseSequencer(str)
		if err != nil || got != s {
			t.Fatalf("%+v -> %q -> %+v %v", s, str, got, err)
		}
	}
}

func TestParseSequencerRejects(t *testing.T) {
	good := Sequencer{Path: p("a"), Mode: ModeExclusive, Generation: 5, Session: "01"}.String()
	enc := func(b []byte) string { return "v1:" + base64.RawURLEncoding.EncodeToString(b) }
	raw := func(s string) []byte {
		b, err := base64.RawURLEncoding.DecodeString(s[3:])
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, bad := range []string{
		"", "v1:", "v2:" + good[3:], good + "A", good[:len(good)-1], "v1:!!!", good + "=",
		strings.Repeat("v", MaxSequencerBytes+1),
		enc([]byte{3, 5, 1, 'x', 1, 'a'}), // unknown mode
		enc([]byte{1, 0x80}),              // truncated varint
		enc([]byte{1, 5, 50, '/'}),        // path longer than data
		enc(append(raw(good), 0)),         // trailing byte
		Sequencer{Path: p("a/../b"), Mode: ModeExclusive, Generation: 5, Session: "01"}.String(),
		Sequencer{Path: "/ls/test", Mode: ModeExclusive, Generation: 5, Session: "01"}.String(),
		Sequencer{Path: p("a"), Mode: ModeExclusive, Generation: 5, Session: ""}.String(),
		Sequencer{Path: p("a"), Mode: ModeExclusive, Generation: 5, Session: "a b"}.String(),
	} {
		if _, err := ParseSequencer(bad); Code(err) != "invalid_argument" {
			t.Errorf("ParseSequencer(%q) = %v", bad, err)
		}
	}
	// Non-canonical: a varint with a redundant continuation byte.
	b := []byte{1, 0x85, 0x00, byte(len(p("a")))}
	b = append(b, p("a")...)
	b = append(b, 2, '0', '1')
	if _, err := ParseSequencer(enc(b)); Code(err) != "invalid_argument" {
		t.Fatal("non-canonical accepted", err)
	}
}

func TestStaleSequencerAfterHandover(t *testing.T) {
	h := newHarness(t)
	a, b := h.session(0), h.session(0)
	ga := h.mustGrant(h.acquire(p("f"), a, ModeExclusive, 0))
	check := func(seq string, wantValid bool, wantGen uint64) {
		t.Helper()
		valid, gen, err := h.m.CheckSequencer(seq)
		if err != nil || valid != wantValid || gen != wantGen {
			t.Fatalf("CheckSequencer = %v %d %v, want %v %d", valid, gen, err, wantValid, wantGen)
		}
	}
	check(ga.Sequencer, true, ga.Generation)
	w := h.acquire(p("f"), b, ModeExclusive, 10_000)
	h.release(ga)
	gb, _ := h.m.AwaitAcquire(t.Context(), w.WaitID)
	check(ga.Sequencer, false, gb.Generation)
	check(gb.Sequencer, true, gb.Generation)
	// The same session holding again has a new generation: its old
	// sequencer stays stale.
	h.release(gb)
	check(gb.Sequencer, false, gb.Generation)
	ga2 := h.mustGrant(h.acquire(p("f"), a, ModeExclusive, 0))
	check(ga.Sequencer, false, ga2.Generation)
	// Forged mode or session: not valid.
	forged := Sequencer{Path: p("f"), Mode: ModeShared, Generation: ga2.Generation, Session: a}.String()
	check(forged, false, ga2.Generation)
	forged = Sequencer{Path: p("f"), Mode: ModeExclusive, Generation: ga2.Generation, Session: b}.String()
	check(forged, false, ga2.Generation)
	// Expiry ends validity too; delete and re-create never revives it.
	h.ok(Command{Kind: KindEndSession, Session: a})
	check(ga2.Sequencer, false, ga2.Generation)
	h.ok(Command{Kind: KindDeleteNode, Path: p("f")})
	check(ga2.Sequencer, false, 0)
	c := h.session(0)
	gc := h.mustGrant(h.acquire(p("f"), c, ModeExclusive, 0))
	if gc.Generation <= ga2.Generation {
		t.Fatalf("generation went back after re-create: %d <= %d", gc.Generation, ga2.Generation)
	}
	if _, _, err := h.m.CheckSequencer("garbage"); Code(err) != "invalid_argument" {
		t.Fatal(err)
	}
	other := Sequencer{Path: "/ls/other/f", Mode: ModeExclusive, Generation: 1, Session: c}.String()
	if _, _, err := h.m.CheckSequencer(other); Code(err) != "invalid_argument" {
		t.Fatal(err)
	}
	check(Sequencer{Path: p("never"), Mode: ModeExclusive, Generation: 1, Session: c}.String(), false, 0)
}

func TestSharedSequencerStaleAfterWriter(t *testing.T) {
	h := newHarness(t)
	r, w := h.session(0), h.session(0)
	gr := h.mustGrant(h.acquire(p("s"), r, ModeShared, 0))
	if v, _, _ := h.m.CheckSequencer(gr.Sequencer); !v {
		t.Fatal("shared sequencer not valid")
	}
	h.release(gr)
	gw := h.mustGrant(h.acquire(p("s"), w, ModeExclusive, 0))
	h.release(gw)
	gr2 := h.mustGrant(h.acquire(p("s"), r, ModeShared, 0))
	if gr2.Generation != gw.Generation {
		t.Fatal(gr2, gw)
	}
	if v, gen, _ := h.m.CheckSequencer(gr.Sequencer); v || gen != gw.Generation {
		t.Fatal("reader's sequencer from before the writer is still valid")
	}
	if v, _, _ := h.m.CheckSequencer(gr2.Sequencer); !v {
		t.Fatal("current shared sequencer invalid")
	}
}

func FuzzParseSequencer(f *testing.F) {
	f.Add(Sequencer{Path: p("a"), Mode: ModeExclusive, Generation: 5, Session: "01"}.String())
	f.Add(Sequencer{Path: p("a/b"), Mode: ModeShared, Generation: 0, Session: "0000000000000001"}.String())
	f.Add("v1:")
	f.Add("v1:AQ")
	f.Add("garbage")
	f.Fuzz(func(t *testing.T, in string) {
		s, err := ParseSequencer(in)
		if err != nil {
			if Code(err) != "invalid_argument" {
				t.Fatal(err)
			}
			return
		}
		if s.String() != in {
			t.Fatalf("parsed %q as %+v, which encodes as %q", in, s, s.String())
		}
	})
}
