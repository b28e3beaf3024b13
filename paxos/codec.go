package paxos

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// ErrBadMessage is wrapped by every error DecodeMessage and ValidateMessage
// return: the bytes are not a message this codec wrote, or the message breaks
// one of the limits below.
var ErrBadMessage = errors.New("paxos: malformed message")

// Codec limits. DecodeMessage refuses anything larger, before allocating for
// it, so a peer cannot make a replica allocate much more than the frame it
// sent. Senders check ValidateMessage first, because a peer would reject the
// frame.
const (
	// MaxMessageSize is the largest encoded message, in bytes (64 MiB). It
	// must hold the largest snapshot sent in one MsgFetchResp.
	MaxMessageSize = 64 << 20
	// MaxEntries is the most entries one message may carry.
	MaxEntries = 1 << 16
	// MaxSlots is the most slots one MsgAccepted may acknowledge.
	MaxSlots = 1 << 16
	// MaxCommands is the most commands all entries of one message may carry
	// together. It bounds the slice headers decoding allocates (24 MiB).
	MaxCommands = 1 << 20
)

// codecV1 is the leading format byte of the encoding below.
//
// Format 1, after the format byte (uvarint and varint are encoding/binary's;
// a varint delta is zig-zag encoded, computed modulo 2^64, so every sequence
// round-trips whatever its order):
//
//	type     byte (a known MsgType)
//	from, to uvarint (each at most 2^32-1)
//	ballot   uvarint round, uvarint node
//	slot, commit, tick uvarint
//	flags    byte: 0x01 Reject, 0x02 Snapshot present; other bits zero
//	reason   byte (0 or a known NackReason)
//	entries  uvarint count, then per entry:
//	           varint slot delta from the previous entry's slot (first: from 0)
//	           flags byte: 0x01 Chosen, 0x02 same ballot as the previous entry
//	                       (first: the zero ballot); other bits zero
//	           ballot uvarint round, uvarint node, unless flag 0x02
//	           uvarint command count, then per command uvarint length, bytes
//	slots    uvarint count, then per slot a varint delta (first: from 0)
//	snapshot if flag 0x02: uvarint slot, uvarint index, uvarint length, bytes
//
// A nil Value and a Value holding one empty command differ in their command
// count, so they stay distinct.
const codecV1 = 1

const (
	msgFlagReject   = 0x01
	msgFlagSnapshot = 0x02
	msgFlagsKnown   = msgFlagReject | msgFlagSnapshot

	entryFlagChosen     = 0x01
	entryFlagSameBallot = 0x02
	entryFlagsKnown     = entryFlagChosen | entryFlagSameBallot

	// Smallest encodings, used to refuse counts the remaining bytes cannot
	// hold before allocating for them.
	minEntrySize   = 3 // slot delta, flags, command count
	minCommandSize = 1 // length
	minSlotSize    = 1
)

// emptyCommand is what an empty command decodes to: non-nil, so a decoded
// Value{[]byte{}} looks like the one that was encoded. Its capacity is zero,
// so appending to it never writes to shared memory.
var emptyCommand = []byte{}

// EncodeMessage appends the encoding of m to dst and returns the extended
// slice. It does not check limits (see ValidateMessage) and does not retain m.
// With enough capacity in dst it does not allocate.
func EncodeMessage(dst []byte, m *Message) []byte {
	dst = slices.Grow(dst, encodedSize(m))
	dst = append(dst, codecV1, byte(m.Type))
	dst = binary.AppendUvarint(dst, uint64(m.From))
	dst = binary.AppendUvarint(dst, uint64(m.To))
	dst = binary.AppendUvarint(dst, m.Ballot.Round)
	dst = binary.AppendUvarint(dst, uint64(m.Ballot.Node))
	dst = binary.AppendUvarint(dst, m.Slot)
	dst = binary.AppendUvarint(dst, m.Commit)
	dst = binary.AppendUvarint(dst, m.Tick)
	var flags byte
	if m.Reject {
		flags |= msgFlagReject
	}
	if m.Snapshot != nil {
		flags |= msgFlagSnapshot
	}
	dst = append(dst, flags, byte(m.Reason))

	dst = binary.AppendUvarint(dst, uint64(len(m.Entries)))
	var prevSlot uint64
	var prevBallot Ballot
	for i := range m.Entries {
		e := &m.Entries[i]
		dst = binary.AppendVarint(dst, int64(e.Slot-prevSlot))
		prevSlot = e.Slot
		var ef byte
		if e.Chosen {
			ef |= entryFlagChosen
		}
		same := e.Ballot == prevBallot
		if same {
			ef |= entryFlagSameBallot
		}
		dst = append(dst, ef)
		if !same {
			dst = binary.AppendUvarint(dst, e.Ballot.Round)
			dst = binary.AppendUvarint(dst, uint64(e.Ballot.Node))
			prevBallot = e.Ballot
		}
		dst = binary.AppendUvarint(dst, uint64(len(e.Value)))
		for _, c := range e.Value {
			dst = binary.AppendUvarint(dst, uint64(len(c)))
			dst = append(dst, c...)
		}
	}

	dst = binary.AppendUvarint(dst, uint64(len(m.Slots)))
	prevSlot = 0
	for _, s := range m.Slots {
		dst = binary.AppendVarint(dst, int64(s-prevSlot))
		prevSlot = s
	}

	if s := m.Snapshot; s != nil {
		dst = binary.AppendUvarint(dst, s.Slot)
		dst = binary.AppendUvarint(dst, s.Index)
		dst = binary.AppendUvarint(dst, uint64(len(s.Data)))
		dst = append(dst, s.Data...)
	}
	return dst
}

// ValidateMessage reports, with an error wrapping ErrBadMessage, whether
// DecodeMessage would refuse the encoding of m: an unknown type or reason, or
// a count or size over the codec limits.
func ValidateMessage(m *Message) error {
	if !knownType(m.Type) {
		return fmt.Errorf("%w: unknown type %d", ErrBadMessage, m.Type)
	}
	if !knownReason(m.Reason) {
		return fmt.Errorf("%w: unknown nack reason %d", ErrBadMessage, m.Reason)
	}
	if len(m.Entries) > MaxEntries {
		return fmt.Errorf("%w: %d entries, limit %d", ErrBadMessage, len(m.Entries), MaxEntries)
	}
	if len(m.Slots) > MaxSlots {
		return fmt.Errorf("%w: %d slots, limit %d", ErrBadMessage, len(m.Slots), MaxSlots)
	}
	cmds := 0
	for i := range m.Entries {
		cmds += len(m.Entries[i].Value)
	}
	if cmds > MaxCommands {
		return fmt.Errorf("%w: %d commands, limit %d", ErrBadMessage, cmds, MaxCommands)
	}
	if n := encodedSize(m); n > MaxMessageSize {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrBadMessage, n, MaxMessageSize)
	}
	return nil
}

// DecodeMessage decodes one message that EncodeMessage wrote, and nothing
// after it. Every error wraps ErrBadMessage. The message does not alias b: its
// commands and snapshot data share one fresh allocation, so the caller may
// reuse b at once.
//
// Decoding is canonical: empty Entries, Slots, Value and Snapshot.Data decode
// as nil, and an empty command as a non-nil empty slice.
func DecodeMessage(b []byte) (Message, error) {
	var m Message
	if len(b) > MaxMessageSize {
		return m, fmt.Errorf("%w: %d bytes, limit %d", ErrBadMessage, len(b), MaxMessageSize)
	}
	if len(b) < 2 {
		return m, fmt.Errorf("%w: %d bytes is too short", ErrBadMessage, len(b))
	}
	if b[0] != codecV1 {
		return m, fmt.Errorf("%w: unknown format %d", ErrBadMessage, b[0])
	}
	m.Type = MsgType(b[1])
	if !knownType(m.Type) {
		return Message{}, fmt.Errorf("%w: unknown type %d", ErrBadMessage, b[1])
	}
	d := decoder{b: b, off: 2}
	m.From = d.nodeID("from")
	m.To = d.nodeID("to")
	m.Ballot = d.ballot("ballot")
	m.Slot = d.uvarint("slot")
	m.Commit = d.uvarint("commit")
	m.Tick = d.uvarint("tick")
	flags := d.u8("flags")
	if flags&^msgFlagsKnown != 0 {
		d.fail("unknown message flags %#x", flags)
	}
	m.Reject = flags&msgFlagReject != 0
	m.Reason = NackReason(d.u8("reason"))
	if d.err == nil && !knownReason(m.Reason) {
		d.fail("unknown nack reason %d", m.Reason)
	}
	m.Entries = d.entries()
	m.Slots = d.slots()
	if flags&msgFlagSnapshot != 0 {
		s := &Snapshot{}
		s.Slot = d.uvarint("snapshot slot")
		s.Index = d.uvarint("snapshot index")
		if n := d.length("snapshot data", 1); n > 0 {
			s.Data = d.payload(n)
		}
		m.Snapshot = s
	}
	if d.err == nil && d.off != len(b) {
		d.fail("%d trailing bytes", len(b)-d.off)
	}
	if d.err != nil {
		return Message{}, d.err
	}
	return m, nil
}

// decoder reads b from off. The first error sticks: later reads return zero
// values, so callers check d.err once at the end.
type decoder struct {
	b   []byte
	off int
	err error
	// arena holds every command and the snapshot data. It is allocated at
	// the first non-empty payload, as large as the bytes left then, which
	// bounds what is still to come.
	arena []byte
	ncmds int
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s at offset %d", ErrBadMessage, fmt.Sprintf(format, args...), d.off)
	}
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

func (d *decoder) u8(what string) byte {
	if d.err != nil {
		return 0
	}
	if d.off >= len(d.b) {
		d.fail("truncated %s", what)
		return 0
	}
	c := d.b[d.off]
	d.off++
	return c
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b[d.off:])
	if n <= 0 {
		if n == 0 {
			d.fail("truncated %s", what)
		} else {
			d.fail("%s overflows 64 bits", what)
		}
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b[d.off:])
	if n <= 0 {
		if n == 0 {
			d.fail("truncated %s", what)
		} else {
			d.fail("%s overflows 64 bits", what)
		}
		return 0
	}
	d.off += n
	return v
}

func (d *decoder) nodeID(what string) NodeID {
	v := d.uvarint(what)
	if v > math.MaxUint32 {
		d.fail("%s %d is not a node id", what, v)
		return 0
	}
	return NodeID(v)
}

func (d *decoder) ballot(what string) Ballot {
	return Ballot{Round: d.uvarint(what), Node: d.nodeID(what)}
}

// length reads a count or byte length whose items take at least minSize bytes
// each, and refuses it if the remaining bytes cannot hold that many.
func (d *decoder) length(what string, minSize int) int {
	v := d.uvarint(what)
	if d.err != nil {
		return 0
	}
	if v > uint64(d.remaining()/minSize) {
		d.fail("%s %d exceeds the %d bytes left", what, v, d.remaining())
		return 0
	}
	return int(v)
}

// payload returns the next n > 0 bytes, copied into the arena.
func (d *decoder) payload(n int) []byte {
	if d.arena == nil {
		d.arena = make([]byte, 0, d.remaining())
	}
	start := len(d.arena)
	d.arena = append(d.arena, d.b[d.off:d.off+n]...)
	d.off += n
	return d.arena[start : start+n : start+n]
}

func (d *decoder) entries() []Entry {
	n := d.length("entry count", minEntrySize)
	if n > MaxEntries {
		d.fail("%d entries, limit %d", n, MaxEntries)
	}
	if n == 0 || d.err != nil {
		return nil
	}
	es := make([]Entry, n)
	// Every Value is a capped window on cmds. When append moves cmds, the
	// windows already handed out keep the old array, whose headers never
	// change, so no fix-up is needed.
	cmds := make([][]byte, 0, n)
	var slot uint64
	var ballot Ballot
	for i := range es {
		e := &es[i]
		slot += uint64(d.varint("entry slot"))
		e.Slot = slot
		f := d.u8("entry flags")
		if f&^entryFlagsKnown != 0 {
			d.fail("unknown entry flags %#x", f)
		}
		e.Chosen = f&entryFlagChosen != 0
		if f&entryFlagSameBallot == 0 {
			ballot = d.ballot("entry ballot")
		}
		e.Ballot = ballot
		k := d.length("command count", minCommandSize)
		if d.ncmds += k; d.ncmds > MaxCommands {
			d.fail("more than %d commands", MaxCommands)
		}
		if d.err != nil {
			return nil
		}
		if k == 0 {
			continue
		}
		start := len(cmds)
		for range k {
			l := d.length("command length", 1)
			if d.err != nil {
				return nil
			}
			if l == 0 {
				cmds = append(cmds, emptyCommand)
			} else {
				cmds = append(cmds, d.payload(l))
			}
		}
		e.Value = cmds[start:len(cmds):len(cmds)]
	}
	return es
}

func (d *decoder) slots() []uint64 {
	n := d.length("slot count", minSlotSize)
	if n > MaxSlots {
		d.fail("%d slots, limit %d", n, MaxSlots)
	}
	if n == 0 || d.err != nil {
		return nil
	}
	ss := make([]uint64, n)
	var s uint64
	for i := range ss {
		s += uint64(d.varint("slot"))
		ss[i] = s
	}
	if d.err != nil {
		return nil
	}
	return ss
}

// knownType and knownReason must grow with the constants in types.go:
// DecodeMessage refuses anything else.
func knownType(t MsgType) bool { return t >= MsgPreVote && t <= MsgRejoinOK }

func knownReason(r NackReason) bool { return r <= NackRecovering }

// encodedSize is the exact length of EncodeMessage's output for m.
func encodedSize(m *Message) int {
	n := 2 + 2 + // format, type, flags, reason
		uvarintLen(uint64(m.From)) + uvarintLen(uint64(m.To)) +
		uvarintLen(m.Ballot.Round) + uvarintLen(uint64(m.Ballot.Node)) +
		uvarintLen(m.Slot) + uvarintLen(m.Commit) + uvarintLen(m.Tick) +
		uvarintLen(uint64(len(m.Entries))) + uvarintLen(uint64(len(m.Slots)))
	var prevSlot uint64
	var prevBallot Ballot
	for i := range m.Entries {
		e := &m.Entries[i]
		n += varintLen(int64(e.Slot-prevSlot)) + 1
		prevSlot = e.Slot
		if e.Ballot != prevBallot {
			n += uvarintLen(e.Ballot.Round) + uvarintLen(uint64(e.Ballot.Node))
			prevBallot = e.Ballot
		}
		n += uvarintLen(uint64(len(e.Value)))
		for _, c := range e.Value {
			n += uvarintLen(uint64(len(c))) + len(c)
		}
	}
	prevSlot = 0
	for _, s := range m.Slots {
		n += varintLen(int64(s - prevSlot))
		prevSlot = s
	}
	if s := m.Snapshot; s != nil {
		n += uvarintLen(s.Slot) + uvarintLen(s.Index) + uvarintLen(uint64(len(s.Data))) + len(s.Data)
	}
	return n
}

func uvarintLen(x uint64) int { return (bits.Len64(x|1) + 6) / 7 }

// varintLen matches binary.AppendVarint's zig-zag encoding.
func varintLen(x int64) int { return uvarintLen(uint64(x<<1) ^ uint64(x>>63)) }
