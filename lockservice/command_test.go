package lockservice

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

func u64(v uint64) *uint64 { return &v }
func i64(v int64) *int64   { return &v }

func TestKindString(t *testing.T) {
	for k := KindInvalid + 1; k < numKinds; k++ {
		b, err := k.MarshalText()
		if err != nil || string(b) != k.String() {
			t.Fatalf("%d: %q %v", k, b, err)
		}
		var back Kind
		if err := back.UnmarshalText(b); err != nil || back != k {
			t.Fatalf("%v: round trip gave %v %v", k, back, err)
		}
	}
	if KindAcquire.String() != "acquire" || Kind(200).String() != "Kind(200)" {
		t.Fatal(KindAcquire.String(), Kind(200).String())
	}
	if _, err := KindInvalid.MarshalText(); Code(err) != "invalid_argument" {
		t.Fatal(err)
	}
}

func sampleCommands() []Command {
	return []Command{
		{Kind: KindCreateSession, NowMs: 5, TTLMs: 2000, LockDelayMs: i64(0), Label: "w", Host: "h", PID: 9},
		{Kind: KindEndSession, NowMs: 5, Session: "0000000000000001"},
		{Kind: KindExpireSession, NowMs: 5, Session: "0000000000000001"},
		{Kind: KindPutNode, NowMs: 5, Path: p("a/b"), Contents: Bytes([]byte{0, 1, 0xff}), CreateOnly: true, IfContentGeneration: u64(3)},
		{Kind: KindPutNode, NowMs: 5, Path: p("a/e"), Contents: Bytes(nil), Ephemeral: true, Session: "0000000000000001"},
		{Kind: KindPutNode, NowMs: 5, Path: p("a"), Dir: true},
		{Kind: KindDeleteNode, NowMs: 5, Path: p("a"), IfInstance: u64(0)},
		{Kind: KindAcquire, NowMs: 5, Path: p("l"), Session: "01", Mode: ModeShared, WaitMs: 10, RequestID: "r1", Contents: Bytes([]byte("v"))},
		{Kind: KindRelease, NowMs: 5, Path: p("l"), Session: "01", Generation: 4, RequestID: "r2"},
		{Kind: KindTick, NowMs: 5},
		{Kind: KindLeaderChanged, NowMs: 5, Leader: "3"},
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	for _, c := range sampleCommands() {
		if err := c.Validate(testCell); err != nil {
			t.Fatalf("%v: %v", c.Kind, err)
		}
		b, err := Encode(c)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Decode(b)
		if err != nil {
			t.Fatalf("%s: %v", b, err)
		}
		if !reflect.DeepEqual(got, c) {
			t.Fatalf("round trip of %s:\n got %+v\nwant %+v", b, got, c)
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name, in, code string
	}{
		{"not json", `nope`, "invalid_argument"},
		{"empty", ``, "invalid_argument"},
		{"unknown field", `{"kind":"tick","now_ms":1,"bogus":1}`, "invalid_argument"},
		{"unknown kind", `{"kind":"explode","now_ms":1}`, "invalid_argument"},
		{"numeric kind", `{"kind":3,"now_ms":1}`, "invalid_argument"},
		{"no kind", `{"now_ms":1}`, "invalid_argument"},
		{"trailing data", `{"kind":"tick","now_ms":1} {}`, "invalid_argument"},
		{"trailing garbage", `{"kind":"tick","now_ms":1}x`, "invalid_argument"},
		{"wrong type", `{"kind":"tick","now_ms":"1"}`, "invalid_argument"},
		{"bad base64", `{"kind":"put_node","now_ms":1,"path":"/ls/test/a","contents":"!!"}`, "invalid_argument"},
		{"too large", `{"kind":"tick","now_ms":1,"leader":"` + strings.Repeat("x", MaxCommandBytes) + `"}`, "too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Decode([]byte(tt.in)); Code(err) != tt.code {
				t.Fatalf("got %v, want %s", err, tt.code)
			}
		})
	}
	if _, err := Encode(Command{}); err == nil {
		t.Fatal("encoded the invalid kind")
	}
	big := make([]byte, MaxCommandBytes)
	if _, err := Encode(Command{Kind: KindPutNode, Path: p("a"), Contents: &big}); Code(err) != "too_large" {
		t.Fatal(err)
	}
}

func TestValidate(t *testing.T) {
	tooBig := make([]byte, MaxContentsBytes+1)
	maxed := make([]byte, MaxContentsBytes)
	s := "0000000000000001"
	tests := []struct {
		name string
		c    Command
		code string
	}{
		{"tick", Command{Kind: KindTick}, ""},
		{"invalid kind", Command{}, "invalid_argument"},
		{"kind out of range", Command{Kind: numKinds}, "invalid_argument"},
		{"negative now", Command{Kind: KindTick, NowMs: -1}, "invalid_argument"},
		{"tick with path", Command{Kind: KindTick, Path: p("a")}, "invalid_argument"},
		{"session defaults", Command{Kind: KindCreateSession}, ""},
		{"ttl low", Command{Kind: KindCreateSession, TTLMs: MinTTLMs - 1}, "invalid_argument"},
		{"ttl min", Command{Kind: KindCreateSession, TTLMs: MinTTLMs}, ""},
		{"ttl max", Command{Kind: KindCreateSession, TTLMs: MaxTTLMs}, ""},
		{"ttl high", Command{Kind: KindCreateSession, TTLMs: MaxTTLMs + 1}, "invalid_argument"},
		{"ttl negative", Command{Kind: KindCreateSession, TTLMs: -5}, "invalid_argument"},
		{"lock delay zero", Command{Kind: KindCreateSession, LockDelayMs: i64(0)}, ""},
		{"lock delay negative", Command{Kind: KindCreateSession, LockDelayMs: i64(-1)}, "invalid_argument"},
		{"lock delay max", Command{Kind: KindCreateSession, LockDelayMs: i64(MaxLockDelayMs)}, ""},
		{"lock delay high", Command{Kind: KindCreateSession, LockDelayMs: i64(MaxLockDelayMs + 1)}, "invalid_argument"},
		{"label long", Command{Kind: KindCreateSession, Label: strings.Repeat("a", MaxLabelBytes+1)}, "invalid_argument"},
		{"label bad utf8", Command{Kind: KindCreateSession, Label: "\xff"}, "invalid_argument"},
		{"host control", Command{Kind: KindCreateSession, Host: "a\nb"}, "invalid_argument"},
		{"pid negative", Command{Kind: KindCreateSession, PID: -1}, "invalid_argument"},
		{"pid huge", Command{Kind: KindCreateSession, PID: MaxPID + 1}, "invalid_argument"},
		{"create session with path", Command{Kind: KindCreateSession, Path: p("a")}, "invalid_argument"},
		{"end no session", Command{Kind: KindEndSession}, "invalid_argument"},
		{"end bad session id", Command{Kind: KindEndSession, Session: "a b"}, "invalid_argument"},
		{"end long session id", Command{Kind: KindEndSession, Session: strings.Repeat("a", MaxSessionIDBytes+1)}, "invalid_argument"},
		{"expire", Command{Kind: KindExpireSession, Session: s}, ""},
		{"put", Command{Kind: KindPutNode, Path: p("a")}, ""},
		{"put max contents", Command{Kind: KindPutNode, Path: p("a"), Contents: &maxed}, ""},
		{"put contents too big", Command{Kind: KindPutNode, Path: p("a"), Contents: &tooBig}, "too_large"},
		{"put root", Command{Kind: KindPutNode, Path: "/ls/test"}, "invalid_argument"},
		{"put other cell", Command{Kind: KindPutNode, Path: "/ls/other/a"}, "invalid_argument"},
		{"put bad path", Command{Kind: KindPutNode, Path: p("a/../b")}, "invalid_argument"},
		{"put no path", Command{Kind: KindPutNode}, "invalid_argument"},
		{"put dir with contents", Command{Kind: KindPutNode, Path: p("a"), Dir: true, Contents: Bytes([]byte("x"))}, "invalid_argument"},
		{"put dir empty contents", Command{Kind: KindPutNode, Path: p("a"), Dir: true, Contents: Bytes(nil)}, ""},
		{"put dir if gen", Command{Kind: KindPutNode, Path: p("a"), Dir: true, IfContentGeneration: u64(1)}, "invalid_argument"},
		{"put dir ephemeral", Command{Kind: KindPutNode, Path: p("a"), Dir: true, Ephemeral: true, Session: s}, "invalid_argument"},
		{"put ephemeral no session", Command{Kind: KindPutNode, Path: p("a"), Ephemeral: true}, "invalid_argument"},
		{"put session not ephemeral", Command{Kind: KindPutNode, Path: p("a"), Session: s}, "invalid_argument"},
		{"put ephemeral", Command{Kind: KindPutNode, Path: p("a"), Ephemeral: true, Session: s}, ""},
		{"put with mode", Command{Kind: KindPutNode, Path: p("a"), Mode: ModeShared}, "invalid_argument"},
		{"delete", Command{Kind: KindDeleteNode, Path: p("a"), IfInstance: u64(0)}, ""},
		{"delete root", Command{Kind: KindDeleteNode, Path: "/ls/test"}, "invalid_argument"},
		{"delete with contents", Command{Kind: KindDeleteNode, Path: p("a"), Contents: Bytes(nil)}, "invalid_argument"},
		{"acquire", Command{Kind: KindAcquire, Path: p("a"), Session: s}, ""},
		{"acquire no session", Command{Kind: KindAcquire, Path: p("a")}, "invalid_argument"},
		{"acquire bad mode", Command{Kind: KindAcquire, Path: p("a"), Session: s, Mode: "read"}, "invalid_argument"},
		{"acquire wait max", Command{Kind: KindAcquire, Path: p("a"), Session: s, WaitMs: MaxWaitMs}, ""},
		{"acquire wait high", Command{Kind: KindAcquire, Path: p("a"), Session: s, WaitMs: MaxWaitMs + 1}, "invalid_argument"},
		{"acquire wait negative", Command{Kind: KindAcquire, Path: p("a"), Session: s, WaitMs: -1}, "invalid_argument"},
		{"acquire long request id", Command{Kind: KindAcquire, Path: p("a"), Session: s, RequestID: strings.Repeat("r", MaxRequestIDBytes+1)}, "invalid_argument"},
		{"acquire contents too big", Command{Kind: KindAcquire, Path: p("a"), Session: s, Contents: &tooBig}, "too_large"},
		{"acquire root", Command{Kind: KindAcquire, Path: "/ls/test", Session: s}, "invalid_argument"},
		{"acquire with generation", Command{Kind: KindAcquire, Path: p("a"), Session: s, Generation: 3}, "invalid_argument"},
		{"release", Command{Kind: KindRelease, Path: p("a"), Session: s, Generation: 3, RequestID: "x"}, ""},
		{"release with wait", Command{Kind: KindRelease, Path: p("a"), Session: s, WaitMs: 3}, "invalid_argument"},
		{"leader", Command{Kind: KindLeaderChanged, Leader: "2"}, ""},
		{"leader none", Command{Kind: KindLeaderChanged}, ""},
		{"leader long", Command{Kind: KindLeaderChanged, Leader: strings.Repeat("x", MaxLeaderBytes+1)}, "invalid_argument"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Code(tt.c.Validate(testCell)); got != tt.code {
				t.Fatalf("got %v, want %q", tt.c.Validate(testCell), tt.code)
			}
		})
	}
}

func FuzzDecodeCommand(f *testing.F) {
	for _, c := range sampleCommands() {
		b, err := Encode(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{``, `{}`, `null`, `[]`, `{"kind":"tick"}`, `{"kind":"acquire","contents":null}`,
		`{"kind":"put_node","path":"/ls/test/a","contents":""}`, `{"kind":"tick","now_ms":1e3}`,
		`{"kind":"tick","now_ms":-1}`, `{"KIND":"tick"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(data)
		if err != nil {
			if c := Code(err); c != "invalid_argument" && c != "too_large" {
				t.Fatalf("decode error with code %q: %v", c, err)
			}
			return
		}
		// A decoded command re-encodes to something that decodes to it.
		b, err := Encode(c)
		if err != nil {
			if c.Validate(testCell) == nil {
				t.Fatalf("valid command does not encode: %v", err)
			}
			return
		}
		c2, err := Decode(b)
		if err != nil || !reflect.DeepEqual(c, c2) {
			t.Fatalf("unstable round trip: %+v / %+v, %v", c, c2, err)
		}
		b2, _ := Encode(c2)
		if !bytes.Equal(b, b2) {
			t.Fatalf("encoding not canonical: %s / %s", b, b2)
		}
		// Applying it never panics and keeps the state consistent.
		h := newHarness(t)
		h.session(0)
		res, _ := h.m.Apply(2, data).(Result)
		if res.Err != nil && c.Validate(testCell) == nil && Code(res.Err) == "internal" {
			t.Fatalf("internal error: %v", res.Err)
		}
		checkInvariants(t, h.m)
	})
}
