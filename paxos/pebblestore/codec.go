package pebblestore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"math"
	"time"

	"github.com/lockd/lockd/paxos"
)

// formatVersion is the version of the key layout and record encodings below.
// A store written with another version is refused as corrupt.
const formatVersion = 1

// Key spaces. Every key starts with one byte naming its space; entry keys add
// the slot as a big-endian uint64 so that pebble iterates them in slot order.
const (
	prefixMeta      = 'm'
	prefixHardState = 'h'
	prefixSnapshot  = 's'
	prefixEntry     = 'e'
)

var (
	keyMeta      = []byte{prefixMeta}
	keyHardState = []byte{prefixHardState}
	keySnapshot  = []byte{prefixSnapshot}
	// keyEntryEnd is the exclusive upper bound of the entry space.
	keyEntryEnd = []byte{prefixEntry + 1}
)

// entryKeyLen is the length of an entry key: prefix and big-endian slot.
const entryKeyLen = 1 + 8

// appendEntryKey appends the key of the entry at slot to dst.
func appendEntryKey(dst []byte, slot uint64) []byte {
	dst = append(dst, prefixEntry)
	return binary.BigEndian.AppendUint64(dst, slot)
}

// entryKeyAbove returns the smallest entry key for a slot strictly above
// slot, or keyEntryEnd when there is none.
func entryKeyAbove(slot uint64) []byte {
	if slot == math.MaxUint64 {
		return keyEntryEnd
	}
	return appendEntryKey(nil, slot+1)
}

// slotOfKey decodes the slot of an entry key.
func slotOfKey(key []byte) (uint64, bool) {
	if len(key) != entryKeyLen || key[0] != prefixEntry {
		return 0, false
	}
	return binary.BigEndian.Uint64(key[1:]), true
}

// Record tags. Each value starts with the tag of its space, so that a value
// stored under the wrong key is detected, and ends with a CRC32-C of the tag
// and payload, little-endian.
const (
	tagMeta      = 1
	tagHardState = 2
	tagSnapshot  = 3
	tagEntry     = 4
)

const crcLen = 4

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// sealRecord appends the checksum of rec[start:] to rec.
func sealRecord(rec []byte, start int) []byte {
	return binary.LittleEndian.AppendUint32(rec, crc32.Checksum(rec[start:], castagnoli))
}

// corruptf returns an error wrapping paxos.ErrCorruptData.
func corruptf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{paxos.ErrCorruptData}, args...)...)
}

// openRecord checks the checksum and tag of rec and returns its payload.
func openRecord(rec []byte, tag byte, what string) ([]byte, error) {
	if len(rec) < 1+crcLen {
		return nil, corruptf("%s record: %d bytes is too short", what, len(rec))
	}
	body, sum := rec[:len(rec)-crcLen], rec[len(rec)-crcLen:]
	if crc32.Checksum(body, castagnoli) != binary.LittleEndian.Uint32(sum) {
		return nil, corruptf("%s record: checksum mismatch", what)
	}
	if body[0] != tag {
		return nil, corruptf("%s record: tag %d, want %d", what, body[0], tag)
	}
	return body[1:], nil
}

// decoder reads the fields of a record payload. The first failure sticks.
type decoder struct {
	b    []byte
	what string
	err  error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = corruptf("%s record: "+format, append([]any{d.what}, args...)...)
	}
}

func (d *decoder) uvarint(field string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad %s", field)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) node(field string) paxos.NodeID {
	v := d.uvarint(field)
	if v > math.MaxUint32 {
		d.fail("%s %d out of range", field, v)
		return 0
	}
	return paxos.NodeID(v)
}

// bytes reads a length-prefixed byte string, aliasing the record.
func (d *decoder) bytes(field string) []byte {
	n := d.uvarint(field + " length")
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("%s length %d exceeds the %d bytes left", field, n, len(d.b))
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) done() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}

// Metadata identifies a data directory. It is written once, when the store is
// created, and never changes.
type Metadata struct {
	// FormatVersion is the version of the on-disk layout.
	FormatVersion uint64
	// Identity is the cell and replica the directory belongs to.
	Identity paxos.Identity
	// Created is when the store was created, to the nanosecond, in UTC.
	Created time.Time
}

func appendMeta(dst []byte, m Metadata) []byte {
	start := len(dst)
	dst = append(dst, tagMeta)
	dst = binary.AppendUvarint(dst, m.FormatVersion)
	dst = binary.AppendUvarint(dst, uint64(len(m.Identity.Cell)))
	dst = append(dst, m.Identity.Cell...)
	dst = binary.AppendUvarint(dst, uint64(m.Identity.Node))
	dst = binary.AppendVarint(dst, m.Created.UnixNano())
	return sealRecord(dst, start)
}

// decodeMeta decodes a metadata record of any format version; the caller
// checks the version.
func decodeMeta(rec []byte) (Metadata, error) {
	p, err := openRecord(rec, tagMeta, "metadata")
	if err != nil {
		return Metadata{}, err
	}
	d := decoder{b: p, what: "metadata"}
	var m Metadata
	m.FormatVersion = d.uvarint("format version")
	if d.err == nil && m.FormatVersion != formatVersion {
		// Later versions may lay the rest out differently: stop here.
		return m, nil
	}
	m.Identity.Cell = string(d.bytes("cell"))
	m.Identity.Node = d.node("node id")
	if d.err == nil {
		ns, n := binary.Varint(d.b)
		if n <= 0 {
			d.fail("bad creation time")
		} else {
			d.b = d.b[n:]
			m.Created = time.Unix(0, ns).UTC()
		}
	}
	return m, d.done()
}

const hsRecovering = 1 << 0

func appendHardState(dst []byte, hs paxos.HardState) []byte {
	start := len(dst)
	dst = append(dst, tagHardState)
	dst = binary.AppendUvarint(dst, hs.Promised.Round)
	dst = binary.AppendUvarint(dst, uint64(hs.Promised.Node))
	dst = binary.AppendUvarint(dst, hs.Commit)
	var flags byte
	if hs.Recovering {
		flags |= hsRecovering
	}
	dst = append(dst, flags)
	return sealRecord(dst, start)
}

func decodeHardState(rec []byte) (paxos.HardState, error) {
	p, err := openRecord(rec, tagHardState, "hard state")
	if err != nil {
		return paxos.HardState{}, err
	}
	d := decoder{b: p, what: "hard state"}
	var hs paxos.HardState
	hs.Promised.Round = d.uvarint("promised round")
	hs.Promised.Node = d.node("promised node")
	hs.Commit = d.uvarint("commit")
	if d.err == nil {
		if len(d.b) == 0 {
			d.fail("missing flags")
		} else {
			flags := d.b[0]
			d.b = d.b[1:]
			if flags&^hsRecovering != 0 {
				d.fail("unknown flags %#x", flags)
			}
			hs.Recovering = flags&hsRecovering != 0
		}
	}
	return hs, d.done()
}

func appendSnapshot(dst []byte, s paxos.Snapshot) []byte {
	start := len(dst)
	dst = append(dst, tagSnapshot)
	dst = binary.AppendUvarint(dst, s.Slot)
	dst = binary.AppendUvarint(dst, s.Index)
	dst = binary.AppendUvarint(dst, uint64(len(s.Data)))
	dst = append(dst, s.Data...)
	return sealRecord(dst, start)
}

// decodeSnapshot decodes a snapshot record; Data is a copy (nil when empty).
func decodeSnapshot(rec []byte) (paxos.Snapshot, error) {
	p, err := openRecord(rec, tagSnapshot, "snapshot")
	if err != nil {
		return paxos.Snapshot{}, err
	}
	d := decoder{b: p, what: "snapshot"}
	var s paxos.Snapshot
	s.Slot = d.uvarint("slot")
	s.Index = d.uvarint("index")
	if data := d.bytes("data"); len(data) > 0 {
		s.Data = append([]byte(nil), data...)
	}
	if err := d.done(); err != nil {
		return paxos.Snapshot{}, err
	}
	if s.Slot == 0 {
		return paxos.Snapshot{}, corruptf("snapshot record: slot 0")
	}
	return s, nil
}

// appendEntry appends the record of e to dst. The layout is: tag, slot,
// ballot round, ballot node, command count, then each command as a length and
// its bytes (all integers uvarint), then the checksum. A no-op has count 0; an
// empty command has length 0, so "no commands" and "one empty command" stay
// distinct. Entry.Chosen is not stored.
func appendEntry(dst []byte, e paxos.Entry) []byte {
	start := len(dst)
	dst = append(dst, tagEntry)
	dst = binary.AppendUvarint(dst, e.Slot)
	dst = binary.AppendUvarint(dst, e.Ballot.Round)
	dst = binary.AppendUvarint(dst, uint64(e.Ballot.Node))
	dst = binary.AppendUvarint(dst, uint64(len(e.Value)))
	for _, c := range e.Value {
		dst = binary.AppendUvarint(dst, uint64(len(c)))
		dst = append(dst, c...)
	}
	return sealRecord(dst, start)
}

// decodeEntry decodes an entry record. The commands share one fresh
// allocation (each capped, so appending to one cannot overwrite another) and
// do not alias rec. A no-op decodes to a nil Value; an empty command decodes
// to a non-nil empty slice.
func decodeEntry(rec []byte) (paxos.Entry, error) {
	p, err := openRecord(rec, tagEntry, "entry")
	if err != nil {
		return paxos.Entry{}, err
	}
	d := decoder{b: p, what: "entry"}
	var e paxos.Entry
	e.Slot = d.uvarint("slot")
	e.Ballot.Round = d.uvarint("ballot round")
	e.Ballot.Node = d.node("ballot node")
	n := d.uvarint("command count")
	if d.err != nil {
		return paxos.Entry{}, d.err
	}
	// Each command takes at least its one-byte length: this bounds the
	// allocation below by the record size.
	if n > uint64(len(d.b)) {
		return paxos.Entry{}, corruptf("entry record: %d commands in %d bytes", n, len(d.b))
	}
	if n > 0 {
		buf := append([]byte(nil), d.b...)
		d.b = buf
		e.Value = make(paxos.Value, n)
		for i := range e.Value {
			e.Value[i] = d.bytes("command")
		}
	}
	if err := d.done(); err != nil {
		return paxos.Entry{}, err
	}
	return e, nil
}
