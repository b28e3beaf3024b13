package lockservice

import (
	"encoding/base64"
	"encoding/binary"
	"strings"
)

// Sequencer names one hold of a lock: path, mode, generation and holding
// session. Its string form (String) is opaque to clients: "v1:" and the
// unpadded base64url of a small binary encoding. A holder passes it to the
// services it writes to, which check it with the cell (fencing).
type Sequencer struct {
	Path       string
	Mode       Mode
	Generation uint64
	Session    string
}

const (
	sequencerPrefix = "v1:"
	seqExclusive    = 1
	seqShared       = 2
)

var seqEncoding = base64.RawURLEncoding.Strict()

// String encodes s: mode byte, uvarint generation, uvarint-length-prefixed
// path and session.
func (s Sequencer) String() string {
	b := make([]byte, 0, 1+binary.MaxVarintLen64+4+len(s.Path)+len(s.Session))
	if s.Mode == ModeShared {
		b = append(b, seqShared)
	} else {
		b = append(b, seqExclusive)
	}
	b = binary.AppendUvarint(b, s.Generation)
	b = binary.AppendUvarint(b, uint64(len(s.Path)))
	b = append(b, s.Path...)
	b = binary.AppendUvarint(b, uint64(len(s.Session)))
	b = append(b, s.Session...)
	return sequencerPrefix + seqEncoding.EncodeToString(b)
}

// ParseSequencer decodes a sequencer made by String. Anything else
// (including a non-canonical encoding, a bad path or session id) is
// ErrInvalidArgument.
func ParseSequencer(str string) (Sequencer, error) {
	bad := func(why string) (Sequencer, error) {
		return Sequencer{}, errorf(ErrInvalidArgument, "garbled sequencer: %s", why)
	}
	if len(str) > MaxSequencerBytes {
		return bad("too long")
	}
	rest, ok := strings.CutPrefix(str, sequencerPrefix)
	if !ok {
		return bad("unknown version")
	}
	b, err := seqEncoding.DecodeString(rest)
	if err != nil {
		return bad("not base64url")
	}
	if len(b) == 0 {
		return bad("empty")
	}
	var s Sequencer
	switch b[0] {
	case seqExclusive:
		s.Mode = ModeExclusive
	case seqShared:
		s.Mode = ModeShared
	default:
		return bad("unknown mode")
	}
	b = b[1:]
	gen, n := binary.Uvarint(b)
	if n <= 0 {
		return bad("generation")
	}
	s.Generation, b = gen, b[n:]
	readString := func(max int) (string, bool) {
		l, n := binary.Uvarint(b)
		if n <= 0 || l > uint64(max) || l > uint64(len(b)-n) {
			return "", false
		}
		v := string(b[n : n+int(l)])
		b = b[n+int(l):]
		return v, true
	}
	if s.Path, ok = readString(MaxPathBytes); !ok {
		return bad("path")
	}
	if s.Session, ok = readString(MaxSessionIDBytes); !ok {
		return bad("session")
	}
	if len(b) != 0 {
		return bad("trailing bytes")
	}
	if s.String() != str {
		return bad("not canonical")
	}
	if err := validNodePath(cellOf(s.Path), s.Path); err != nil {
		return bad("path: " + err.Error())
	}
	if err := validSessionID(s.Session); err != nil {
		return bad("session: " + err.Error())
	}
	return s, nil
}

// CheckSequencer reports whether seq is current: valid is true exactly while
// the session it names holds that lock, in that mode, at that generation.
// currentGeneration is the lock's generation now (0 for a path with neither
// lock nor node). A garbled sequencer, or one of another cell, is
// ErrInvalidArgument.
func (m *Machine) CheckSequencer(seq string) (valid bool, currentGeneration uint64, err error) {
	s, err := ParseSequencer(seq)
	if err != nil {
		return false, 0, err
	}
	if cellOf(s.Path) != m.cell {
		return false, 0, errorf(ErrInvalidArgument, "sequencer of cell %q, not %q", cellOf(s.Path), m.cell)
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	l := m.st.locks[s.Path]
	if l == nil {
		if n := m.st.nodes[s.Path]; n != nil {
			return false, n.lockGen, nil
		}
		return false, 0, nil
	}
	h := l.holderOf(s.Session)
	return h != nil && h.mode == s.Mode && h.generation == s.Generation, l.gen, nil
}
