package paxos

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"pgregory.net/rapid"
)

// codecCases holds one message of every type, filled the way the protocol
// fills it, plus the edge cases of the format.
func codecCases() []struct {
	name string
	m    Message
} {
	cmd := func(s string) []byte { return []byte(s) }
	return []struct {
		name string
		m    Message
	}{
		{"prevote", Message{Type: MsgPreVote, From: 1, To: 2, Ballot: Ballot{4, 1}, Commit: 17}},
		{"prevote_resp", Message{Type: MsgPreVoteResp, From: 2, To: 1, Ballot: Ballot{4, 1}, Reject: true}},
		{"prepare", Message{Type: MsgPrepare, From: 1, To: 3, Ballot: Ballot{5, 1}, Slot: 18, Commit: 17}},
		{"promise", Message{Type: MsgPromise, From: 3, To: 1, Ballot: Ballot{5, 1}, Slot: 18, Entries: []Entry{
			{Slot: 18, Ballot: Ballot{3, 2}, Value: Value{cmd("a"), cmd("bc")}},
			{Slot: 19, Ballot: Ballot{3, 2}},
			{Slot: 21, Ballot: Ballot{4, 5}, Value: Value{cmd("d")}, Chosen: true},
		}}},
		{"accept", Message{Type: MsgAccept, From: 1, To: 4, Ballot: Ballot{5, 1}, Commit: 20, Tick: 991, Entries: []Entry{
			{Slot: 21, Ballot: Ballot{5, 1}, Value: Value{cmd("set x=1")}},
			{Slot: 22, Ballot: Ballot{5, 1}, Value: Value{cmd("set y=2"), cmd("del z")}},
		}}},
		{"accepted", Message{Type: MsgAccepted, From: 4, To: 1, Ballot: Ballot{5, 1}, Tick: 991, Slots: []uint64{21, 22}}},
		{"heartbeat", Message{Type: MsgHeartbeat, From: 1, To: 5, Ballot: Ballot{5, 1}, Commit: 22, Tick: 1000}},
		{"heartbeat_resp", Message{Type: MsgHeartbeatResp, From: 5, To: 1, Ballot: Ballot{5, 1}, Tick: 1000}},
		{"nack", Message{Type: MsgNack, From: 2, To: 1, Ballot: Ballot{9, 3}, Reject: true, Reason: NackLease}},
		{"fetch", Message{Type: MsgFetch, From: 5, To: 1, Slot: 3, Commit: 22}},
		{"fetch_resp_entries", Message{Type: MsgFetchResp, From: 1, To: 5, Commit: 22, Entries: []Entry{
			{Slot: 3, Ballot: Ballot{1, 1}, Value: Value{cmd("x")}, Chosen: true},
			{Slot: 4, Ballot: Ballot{1, 1}, Chosen: true},
		}}},
		{"fetch_resp_snapshot", Message{Type: MsgFetchResp, From: 1, To: 5, Commit: 22,
			Snapshot: &Snapshot{Slot: 20, Index: 31, Data: bytes.Repeat([]byte("snap"), 300)}}},
		{"rejoin", Message{Type: MsgRejoin, From: 2, To: 1}},
		{"rejoin_ok", Message{Type: MsgRejoinOK, From: 1, To: 2, Ballot: Ballot{6, 1}}},

		{"empty_snapshot", Message{Type: MsgFetchResp, From: 1, To: 5, Snapshot: &Snapshot{}}},
		{"noop_vs_empty_command", Message{Type: MsgAccept, From: 1, To: 2, Entries: []Entry{
			{Slot: 1, Value: nil},
			{Slot: 2, Value: Value{{}}},
			{Slot: 3, Value: Value{{}, {}, cmd("q")}},
		}}},
		{"max_values", Message{Type: MsgNack, From: math.MaxUint32, To: math.MaxUint32,
			Ballot: Ballot{math.MaxUint64, math.MaxUint32}, Slot: math.MaxUint64, Commit: math.MaxUint64,
			Tick: math.MaxUint64, Reason: NackRecovering,
			Entries:  []Entry{{Slot: math.MaxUint64, Ballot: Ballot{math.MaxUint64, math.MaxUint32}}, {Slot: 0}},
			Slots:    []uint64{math.MaxUint64, 0, 1 << 63, 5, 4},
			Snapshot: &Snapshot{Slot: math.MaxUint64, Index: math.MaxUint64, Data: []byte{0}}}},
	}
}

// canonical is m as DecodeMessage returns it: empty slices nil, empty
// commands non-nil.
func canonical(m Message) Message {
	if len(m.Entries) == 0 {
		m.Entries = nil
	} else {
		es := slices.Clone(m.Entries)
		for i := range es {
			if len(es[i].Value) == 0 {
				es[i].Value = nil
				continue
			}
			v := make(Value, len(es[i].Value))
			for j, c := range es[i].Value {
				v[j] = append([]byte{}, c...)
			}
			es[i].Value = v
		}
		m.Entries = es
	}
	if len(m.Slots) == 0 {
		m.Slots = nil
	}
	if m.Snapshot != nil {
		s := *m.Snapshot
		if len(s.Data) == 0 {
			s.Data = nil
		}
		m.Snapshot = &s
	}
	return m
}

// fataler is what *testing.T and *rapid.T share.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// roundTrip encodes m, checks the size and limits, decodes, and compares.
func roundTrip(t fataler, m Message) []byte {
	t.Helper()
	if err := ValidateMessage(&m); err != nil {
		t.Fatalf("ValidateMessage: %v", err)
	}
	enc := EncodeMessage(nil, &m)
	if len(enc) != encodedSize(&m) {
		t.Fatalf("encoded %d bytes, encodedSize says %d", len(enc), encodedSize(&m))
	}
	got, err := DecodeMessage(enc)
	if err != nil {
		t.Fatalf("DecodeMessage: %v", err)
	}
	if want := canonical(m); !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %#v\nwant %#v", got, want)
	}
	return enc
}

func TestCodecRoundTrip(t *testing.T) {
	for _, tc := range codecCases() {
		t.Run(tc.name, func(t *testing.T) { roundTrip(t, tc.m) })
	}
}

// TestCodecKnowsEveryType fails when a MsgType is added without teaching the
// codec (knownType) about it.
func TestCodecKnowsEveryType(t *testing.T) {
	for typ := range msgNames {
		if !knownType(typ) {
			t.Errorf("codec refuses message type %v", typ)
		}
	}
	if knownType(0) || knownType(MsgRejoinOK+1) {
		t.Error("codec accepts an unnamed message type")
	}
}

func TestCodecNoopDistinctFromEmptyCommand(t *testing.T) {
	noop := Message{Type: MsgAccept, Entries: []Entry{{Slot: 1}}}
	empty := Message{Type: MsgAccept, Entries: []Entry{{Slot: 1, Value: Value{{}}}}}
	a, b := roundTrip(t, noop), roundTrip(t, empty)
	if bytes.Equal(a, b) {
		t.Fatal("a no-op and a value of one empty command encode the same")
	}
	got, _ := DecodeMessage(b)
	if v := got.Entries[0].Value; len(v) != 1 || v[0] == nil || len(v[0]) != 0 || v.IsNoop() {
		t.Fatalf("one empty command decoded as %#v", v)
	}
	got, _ = DecodeMessage(a)
	if !got.Entries[0].Value.IsNoop() {
		t.Fatalf("no-op decoded as %#v", got.Entries[0].Value)
	}
}

func TestCodecEncodeAppends(t *testing.T) {
	m := codecCases()[4].m
	prefix := []byte("frame-header")
	out := EncodeMessage(append([]byte{}, prefix...), &m)
	if !bytes.HasPrefix(out, prefix) {
		t.Fatal("EncodeMessage overwrote dst")
	}
	if got, err := DecodeMessage(out[len(prefix):]); err != nil || !reflect.DeepEqual(got, canonical(m)) {
		t.Fatalf("decode after prefix: %v", err)
	}
	buf := make([]byte, 0, 1024)
	if n := testing.AllocsPerRun(100, func() { buf = EncodeMessage(buf[:0], &m) }); n != 0 {
		t.Fatalf("EncodeMessage into a large enough buffer allocates %v times", n)
	}
}

func TestCodecDecodeDoesNotAlias(t *testing.T) {
	m := codecCases()[3].m
	enc := EncodeMessage(nil, &m)
	got, err := DecodeMessage(enc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range enc {
		enc[i] = 0xff
	}
	if !reflect.DeepEqual(got, canonical(m)) {
		t.Fatal("decoded message changed when its input was overwritten")
	}
	// Appending to a decoded command must not write into its neighbour.
	v := got.Entries[0].Value
	_ = append(v[0], 'Z')
	_ = append(v, []byte("extra"))
	if !reflect.DeepEqual(got, canonical(m)) {
		t.Fatal("append to a decoded slice clobbered a neighbour")
	}
}

func genBallot(t *rapid.T, label string) Ballot {
	return Ballot{Round: rapid.Uint64().Draw(t, label+".round"), Node: NodeID(rapid.Uint32().Draw(t, label+".node"))}
}

var genMessage = rapid.Custom(func(t *rapid.T) Message {
	m := Message{
		Type:   MsgType(rapid.IntRange(int(MsgPreVote), int(MsgRejoinOK)).Draw(t, "type")),
		From:   NodeID(rapid.Uint32().Draw(t, "from")),
		To:     NodeID(rapid.Uint32().Draw(t, "to")),
		Ballot: genBallot(t, "ballot"),
		Slot:   rapid.Uint64().Draw(t, "slot"),
		Commit: rapid.Uint64().Draw(t, "commit"),
		Tick:   rapid.Uint64().Draw(t, "tick"),
		Reject: rapid.Bool().Draw(t, "reject"),
		Reason: NackReason(rapid.IntRange(0, int(NackRecovering)).Draw(t, "reason")),
		Slots:  rapid.SliceOfN(rapid.Uint64(), 0, 20).Draw(t, "slots"),
	}
	shared := genBallot(t, "shared")
	for range rapid.IntRange(0, 10).Draw(t, "entries") {
		e := Entry{Slot: rapid.Uint64().Draw(t, "entry.slot"), Chosen: rapid.Bool().Draw(t, "entry.chosen")}
		if rapid.Bool().Draw(t, "entry.shared") {
			e.Ballot = shared
		} else {
			e.Ballot = genBallot(t, "entry.ballot")
		}
		if !rapid.Bool().Draw(t, "entry.noop") {
			for range rapid.IntRange(0, 4).Draw(t, "commands") {
				e.Value = append(e.Value, rapid.SliceOfN(rapid.Byte(), 0, 24).Draw(t, "command"))
			}
		}
		m.Entries = append(m.Entries, e)
	}
	if rapid.Bool().Draw(t, "snapshot") {
		m.Snapshot = &Snapshot{
			Slot:  rapid.Uint64().Draw(t, "snapshot.slot"),
			Index: rapid.Uint64().Draw(t, "snapshot.index"),
			Data:  rapid.SliceOfN(rapid.Byte(), 0, 100).Draw(t, "snapshot.data"),
		}
	}
	return m
})

func TestCodecRoundTripProperty(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		m := genMessage.Draw(t, "m")
		enc := roundTrip(t, m)
		// Canonical encodings are stable: decode then encode gives the same bytes.
		got, _ := DecodeMessage(enc)
		if again := EncodeMessage(nil, &got); !bytes.Equal(again, enc) {
			t.Fatalf("re-encoding differs:\n%x\n%x", enc, again)
		}
	})
}

func TestDecodeMessageTruncated(t *testing.T) {
	for _, tc := range codecCases() {
		t.Run(tc.name, func(t *testing.T) {
			enc := EncodeMessage(nil, &tc.m)
			for n := range len(enc) {
				if _, err := DecodeMessage(enc[:n]); !errors.Is(err, ErrBadMessage) {
					t.Fatalf("prefix of %d/%d bytes: err = %v, want ErrBadMessage", n, len(enc), err)
				}
			}
		})
	}
}

// header is the encoding of a Nack up to the entry count, for building
// malformed inputs by hand.
func header(flags, reason byte) []byte {
	return []byte{codecV1, byte(MsgNack), 1, 2, 3, 1, 0, 0, 0, flags, reason}
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func uv(v uint64) []byte { return binary.AppendUvarint(nil, v) }

func TestDecodeMessageRejects(t *testing.T) {
	valid := cat(header(0, 0), uv(0), uv(0))
	if _, err := DecodeMessage(valid); err != nil {
		t.Fatalf("hand-built base message: %v", err)
	}
	tooManyEntries := cat(header(0, 0), uv(MaxEntries+1), bytes.Repeat([]byte{0, 0, 0}, MaxEntries+1), uv(0))
	tooManySlots := cat(header(0, 0), uv(0), uv(MaxSlots+1), make([]byte, MaxSlots+1))
	// One entry holding MaxCommands+1 empty commands.
	tooManyCommands := cat(header(0, 0), uv(1), []byte{0, entryFlagSameBallot}, uv(MaxCommands+1),
		make([]byte, MaxCommands+1), uv(0))
	oversized := make([]byte, MaxMessageSize+1)
	copy(oversized, valid)

	cases := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"format_only", []byte{codecV1}},
		{"unknown_format", cat([]byte{2}, valid[1:])},
		{"format_zero", cat([]byte{0}, valid[1:])},
		{"type_zero", cat([]byte{codecV1, 0}, valid[2:])},
		{"type_unknown", cat([]byte{codecV1, byte(MsgRejoinOK) + 1}, valid[2:])},
		{"type_255", cat([]byte{codecV1, 255}, valid[2:])},
		{"trailing_byte", cat(valid, []byte{0})},
		{"from_over_uint32", cat([]byte{codecV1, byte(MsgNack)}, uv(math.MaxUint32+1), valid[3:])},
		{"uvarint_overflow", cat([]byte{codecV1, byte(MsgNack)}, bytes.Repeat([]byte{0xff}, 10), []byte{1}, valid[3:])},
		{"unknown_flags", cat(header(0x04, 0), uv(0), uv(0))},
		{"unknown_reason", cat(header(0, byte(NackRecovering)+1), uv(0), uv(0))},
		{"entry_count_exceeds_bytes", cat(header(0, 0), uv(5), []byte{0, 0, 0}, uv(0))},
		{"entry_count_huge", cat(header(0, 0), uv(math.MaxUint64), uv(0))},
		{"entry_count_over_limit", tooManyEntries},
		{"unknown_entry_flags", cat(header(0, 0), uv(1), []byte{0, 0x80, 0}, uv(0))},
		{"command_count_exceeds_bytes", cat(header(0, 0), uv(1), []byte{0, entryFlagSameBallot}, uv(3), uv(0), uv(0))},
		{"command_length_exceeds_bytes", cat(header(0, 0), uv(1), []byte{0, entryFlagSameBallot}, uv(1), uv(100), []byte("short"), uv(0))},
		{"command_count_over_limit", tooManyCommands},
		{"slot_count_exceeds_bytes", cat(header(0, 0), uv(0), uv(3), []byte{2})},
		{"slot_count_over_limit", tooManySlots},
		{"snapshot_missing", cat(header(msgFlagSnapshot, 0), uv(0), uv(0))},
		{"snapshot_data_exceeds_bytes", cat(header(msgFlagSnapshot, 0), uv(0), uv(0), uv(1), uv(1), uv(4), []byte{1, 2})},
		{"snapshot_data_length_huge", cat(header(msgFlagSnapshot, 0), uv(0), uv(0), uv(1), uv(1), uv(math.MaxUint64))},
		{"over_max_size", oversized},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := DecodeMessage(tc.b)
			if !errors.Is(err, ErrBadMessage) {
				t.Fatalf("err = %v, want ErrBadMessage", err)
			}
			if !reflect.DeepEqual(m, Message{}) {
				t.Fatalf("a failed decode returned %#v, want the zero Message", m)
			}
		})
	}
}

func TestValidateMessage(t *testing.T) {
	ok := Message{Type: MsgAccept}
	big := Message{Type: MsgFetchResp, Snapshot: &Snapshot{Slot: 1, Data: make([]byte, MaxMessageSize)}}
	cases := []struct {
		name string
		m    Message
		ok   bool
	}{
		{"ok", ok, true},
		{"max_entries", Message{Type: MsgAccept, Entries: make([]Entry, MaxEntries)}, true},
		{"unknown_type", Message{Type: 0}, false},
		{"unknown_reason", Message{Type: MsgNack, Reason: 99}, false},
		{"entries", Message{Type: MsgAccept, Entries: make([]Entry, MaxEntries+1)}, false},
		{"slots", Message{Type: MsgAccepted, Slots: make([]uint64, MaxSlots+1)}, false},
		{"commands", Message{Type: MsgAccept, Entries: []Entry{{Value: make(Value, MaxCommands+1)}}}, false},
		{"size", big, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := ValidateMessage(&tc.m)
			if tc.ok && err != nil {
				t.Fatalf("ValidateMessage: %v", err)
			}
			if !tc.ok && !errors.Is(err, ErrBadMessage) {
				t.Fatalf("err = %v, want ErrBadMessage", err)
			}
			if tc.ok {
				roundTrip(t, tc.m)
			}
		})
	}
}

// checkDecoded is the fuzz property: a failed decode wraps ErrBadMessage;
// a successful one is within limits and survives encode and decode unchanged.
func checkDecoded(t *testing.T, b []byte) {
	t.Helper()
	m, err := DecodeMessage(b)
	if err != nil {
		if !errors.Is(err, ErrBadMessage) {
			t.Fatalf("error %v does not wrap ErrBadMessage", err)
		}
		return
	}
	if err := ValidateMessage(&m); err != nil {
		t.Fatalf("decoded message fails ValidateMessage: %v", err)
	}
	enc := EncodeMessage(nil, &m)
	m2, err := DecodeMessage(enc)
	if err != nil {
		t.Fatalf("re-encoded message does not decode: %v\ninput %x\nre-encoded %x", err, b, enc)
	}
	if !reflect.DeepEqual(m, m2) {
		t.Fatalf("re-encoded message decodes differently:\n%#v\n%#v", m, m2)
	}
	if again := EncodeMessage(nil, &m2); !bytes.Equal(enc, again) {
		t.Fatalf("encoding is not stable:\n%x\n%x", enc, again)
	}
}

func TestDecodeMessageMutations(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var encs [][]byte
	for _, tc := range codecCases() {
		encs = append(encs, EncodeMessage(nil, &tc.m))
	}
	for range 20000 {
		b := append([]byte{}, encs[rng.IntN(len(encs))]...)
		for range 1 + rng.IntN(4) {
			switch i := rng.IntN(len(b)); rng.IntN(4) {
			case 0:
				b[i] = byte(rng.Uint32())
			case 1:
				b[i] ^= 1 << rng.IntN(8)
			case 2:
				b = b[:i]
			case 3:
				b = append(b[:i], append([]byte{byte(rng.Uint32())}, b[i:]...)...)
			}
			if len(b) == 0 {
				break
			}
		}
		checkDecoded(t, b)
	}
}

func FuzzDecodeMessage(f *testing.F) {
	for _, tc := range codecCases() {
		f.Add(EncodeMessage(nil, &tc.m))
	}
	f.Add([]byte{})
	f.Add([]byte{codecV1})
	f.Add(cat(header(msgFlagSnapshot, 0), uv(1), []byte{0, 0}, uv(1), uv(1), uv(2), uv(0), uv(0)))
	f.Fuzz(checkDecoded)
}

// accept64 is an Accept of 64 entries of one 100-byte command each.
func accept64() Message {
	m := Message{Type: MsgAccept, From: 1, To: 2, Ballot: Ballot{12, 1}, Commit: 1_000_000, Tick: 123456}
	for i := range 64 {
		m.Entries = append(m.Entries, Entry{Slot: 1_000_001 + uint64(i), Ballot: m.Ballot,
			Value: Value{bytes.Repeat([]byte{byte(i)}, 100)}})
	}
	return m
}

func BenchmarkEncodeMessage(b *testing.B) {
	m := accept64()
	buf := make([]byte, 0, encodedSize(&m))
	b.SetBytes(int64(encodedSize(&m)))
	b.ReportAllocs()
	for b.Loop() {
		buf = EncodeMessage(buf[:0], &m)
	}
}

func BenchmarkDecodeMessage(b *testing.B) {
	m := accept64()
	enc := EncodeMessage(nil, &m)
	b.SetBytes(int64(len(enc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := DecodeMessage(enc); err != nil {
			b.Fatal(err)
		}
	}
}
