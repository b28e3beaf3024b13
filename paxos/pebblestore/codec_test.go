package pebblestore

import (
	"bytes"
	"errors"
	"math"
	"testing"
	"time"

	"github.com/lockd/lockd/paxos"
)

func TestEntryCodec(t *testing.T) {
	tests := []struct {
		name string
		in   paxos.Entry
		want paxos.Entry // as decoded; Chosen dropped
	}{
		{"zero", paxos.Entry{}, paxos.Entry{}},
		{"nil value is a no-op", paxos.Entry{Slot: 1, Ballot: paxos.Ballot{Round: 1, Node: 1}},
			paxos.Entry{Slot: 1, Ballot: paxos.Ballot{Round: 1, Node: 1}}},
		{"empty value is a no-op", paxos.Entry{Slot: 2, Value: paxos.Value{}}, paxos.Entry{Slot: 2}},
		{"one empty command", paxos.Entry{Slot: 3, Value: paxos.Value{nil}}, paxos.Entry{Slot: 3, Value: paxos.Value{{}}}},
		{"commands", paxos.Entry{Slot: 4, Value: paxos.Value{[]byte("a"), {}, []byte("bcd")}},
			paxos.Entry{Slot: 4, Value: paxos.Value{[]byte("a"), {}, []byte("bcd")}}},
		{"chosen is not stored", paxos.Entry{Slot: 5, Chosen: true, Value: paxos.Value{[]byte("x")}},
			paxos.Entry{Slot: 5, Value: paxos.Value{[]byte("x")}}},
		{"maxima", paxos.Entry{Slot: math.MaxUint64, Ballot: paxos.Ballot{Round: math.MaxUint64, Node: math.MaxUint32}},
			paxos.Entry{Slot: math.MaxUint64, Ballot: paxos.Ballot{Round: math.MaxUint64, Node: math.MaxUint32}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := appendEntry([]byte("prefix"), tt.in)[len("prefix"):]
			got, err := decodeEntry(rec)
			if err != nil {
				t.Fatal(err)
			}
			checkEntry(t, got, tt.want)
			if len(got.Value) != len(tt.want.Value) {
				t.Fatalf("decoded %d commands, want %d", len(got.Value), len(tt.want.Value))
			}
			if tt.want.Value == nil && got.Value != nil {
				t.Errorf("a no-op decoded to a non-nil value")
			}
			for i, c := range got.Value {
				if c == nil {
					t.Errorf("command %d decoded to nil, want non-nil", i)
				}
			}
			// Every truncation and every flipped byte is detected.
			for n := range len(rec) {
				if _, err := decodeEntry(rec[:n]); !errors.Is(err, paxos.ErrCorruptData) {
					t.Errorf("truncated to %d bytes: err = %v", n, err)
				}
			}
			for i := range rec {
				if _, err := decodeEntry(flipByte(rec, i)); !errors.Is(err, paxos.ErrCorruptData) {
					t.Errorf("byte %d flipped: err = %v", i, err)
				}
			}
		})
	}
}

func TestRecordCodecs(t *testing.T) {
	hss := []paxos.HardState{
		{},
		{Recovering: true},
		{Promised: paxos.Ballot{Round: math.MaxUint64, Node: math.MaxUint32}, Commit: math.MaxUint64},
	}
	for _, hs := range hss {
		got, err := decodeHardState(appendHardState(nil, hs))
		if err != nil || got != hs {
			t.Errorf("hard state %+v decoded to %+v, %v", hs, got, err)
		}
	}
	snaps := []paxos.Snapshot{{Slot: 1}, {Slot: math.MaxUint64, Index: 7, Data: []byte("image")}}
	for _, s := range snaps {
		got, err := decodeSnapshot(appendSnapshot(nil, s))
		if err != nil || got.Slot != s.Slot || got.Index != s.Index || !bytes.Equal(got.Data, s.Data) {
			t.Errorf("snapshot %+v decoded to %+v, %v", s, got, err)
		}
	}
	m := Metadata{FormatVersion: formatVersion, Identity: testID, Created: time.Unix(1700000000, 123).UTC()}
	got, err := decodeMeta(appendMeta(nil, m))
	if err != nil || got != m {
		t.Errorf("metadata %+v decoded to %+v, %v", m, got, err)
	}

	hardState := func(b []byte) error { _, err := decodeHardState(b); return err }
	snapshot := func(b []byte) error { _, err := decodeSnapshot(b); return err }
	meta := func(b []byte) error { _, err := decodeMeta(b); return err }
	bad := []struct {
		name   string
		rec    []byte
		decode func([]byte) error
	}{
		{"hard state with unknown flags", sealRecord([]byte{tagHardState, 0, 0, 0, 0x80}, 0), hardState},
		{"hard state without flags", sealRecord([]byte{tagHardState, 0, 0, 0}, 0), hardState},
		{"hard state with a trailing byte", sealRecord([]byte{tagHardState, 0, 0, 0, 0, 9}, 0), hardState},
		{"hard state node out of range", sealRecord([]byte{tagHardState, 0, 0x80, 0x80, 0x80, 0x80, 0x10, 0, 0}, 0), hardState},
		{"snapshot at slot 0", appendSnapshot(nil, paxos.Snapshot{Index: 3}), snapshot},
		{"snapshot data cut short", sealRecord([]byte{tagSnapshot, 1, 1, 5, 'a'}, 0), snapshot},
		{"metadata without creation time", sealRecord([]byte{tagMeta, formatVersion, 1, 'c', 2}, 0), meta},
		{"metadata as hard state", appendMeta(nil, m), hardState},
	}
	for _, tt := range bad {
		if err := tt.decode(tt.rec); !errors.Is(err, paxos.ErrCorruptData) {
			t.Errorf("%s: err = %v, want ErrCorruptData", tt.name, err)
		}
	}
}

// FuzzDecodeEntry feeds the entry decoder arbitrary records, both as they
// are (almost always refused by the checksum) and resealed with a valid
// checksum, so that the parser behind it is exercised too. It must never
// panic or allocate beyond the record size, and whatever it accepts must
// re-encode to a record that decodes to the same entry.
func FuzzDecodeEntry(f *testing.F) {
	seeds := []paxos.Entry{
		{},
		{Slot: 1, Ballot: paxos.Ballot{Round: 2, Node: 3}},
		{Slot: 2, Value: paxos.Value{{}}},
		{Slot: 3, Value: paxos.Value{[]byte("set /a 1"), {}, []byte("del /b")}},
		{Slot: math.MaxUint64, Ballot: paxos.Ballot{Round: math.MaxUint64, Node: math.MaxUint32}, Value: paxos.Value{bytes.Repeat([]byte{0xff}, 300)}},
	}
	for _, e := range seeds {
		rec := appendEntry(nil, e)
		f.Add(rec)
		f.Add(rec[:len(rec)-crcLen])
	}
	f.Add([]byte{})
	f.Add([]byte{tagEntry, 1, 1, 1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{tagEntry, 1, 1, 1, 2, 5, 'a'})

	f.Fuzz(func(t *testing.T, data []byte) {
		for _, rec := range [][]byte{data, sealRecord(bytes.Clone(data), 0)} {
			e, err := decodeEntry(rec)
			if err != nil {
				if !errors.Is(err, paxos.ErrCorruptData) {
					t.Fatalf("error %v does not wrap ErrCorruptData", err)
				}
				continue
			}
			if e.Chosen {
				t.Fatal("decoded a chosen entry")
			}
			if e.Value.Size() > len(rec) {
				t.Fatalf("decoded %d command bytes from a %d-byte record", e.Value.Size(), len(rec))
			}
			again, err := decodeEntry(appendEntry(nil, e))
			if err != nil {
				t.Fatalf("re-encoded entry does not decode: %v", err)
			}
			if again.Slot != e.Slot || again.Ballot != e.Ballot || len(again.Value) != len(e.Value) || !again.Value.Equal(e.Value) {
				t.Fatalf("round trip changed %+v into %+v", e, again)
			}
		}
	})
}
