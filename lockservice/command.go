package lockservice

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"unicode"
	"unicode/utf8"
)

// Bounds of command fields (API.md, "Bounds"). The API layer can check them
// before proposing with Command.Validate; Apply checks them again.
const (
	MinTTLMs             = 1_000
	MaxTTLMs             = 300_000
	DefaultTTLMs         = 10_000
	MinLockDelayMs       = 0
	MaxLockDelayMs       = 60_000
	DefaultLockDelayMs   = 15_000
	MaxWaitMs            = 300_000
	MaxContentsBytes     = 256 << 10
	MaxSessionIDBytes    = 64
	MaxRequestIDBytes    = 128
	MaxLabelBytes        = 256
	MaxHostBytes         = 256
	MaxLeaderBytes       = 256
	MaxPID               = 1<<31 - 1
	MaxSequencerBytes    = 2048
	MaxCommandBytes      = 1 << 20 // an encoded command; contents travel as base64
	RequestIDsPerSession = 1_000   // request ids remembered per session, newest kept
	MaxEndedSessions     = 16_384  // ended/expired session ids remembered
	DefaultEventHistory  = 10_000
)

// Kind names what a Command does.
type Kind uint8

// Command kinds. The zero Kind is invalid.
const (
	KindInvalid Kind = iota
	// KindCreateSession opens a session: TTLMs, LockDelayMs, Label, Host, PID.
	KindCreateSession
	// KindEndSession ends Session: its locks are released without
	// lock-delay, its waits fail, its ephemeral nodes are deleted.
	KindEndSession
	// KindExpireSession expires Session: like KindEndSession, but the locks
	// it held enter lock-delay, and a session_expired event is emitted.
	KindExpireSession
	// KindPutNode creates or writes the node at Path: Contents, Dir,
	// Ephemeral with Session, CreateOnly, IfContentGeneration.
	KindPutNode
	// KindDeleteNode deletes the node at Path, optionally IfInstance.
	KindDeleteNode
	// KindAcquire takes the lock at Path for Session in Mode, waiting up to
	// WaitMs; RequestID makes it idempotent; Contents, when set, is written
	// to the node with the grant.
	KindAcquire
	// KindRelease releases Session's hold of the lock at Path at Generation.
	KindRelease
	// KindTick only carries time: waits whose deadline passed fail,
	// lock-delays that ended let queued waiters in.
	KindTick
	// KindLeaderChanged records that Leader now leads the cell.
	KindLeaderChanged
	// KindSetACL sets the rule for Principal at the prefix Path to Perms
	// (replacing any rule for it there; no Perms is a rule that denies).
	KindSetACL
	// KindDeleteACL deletes the rule for Principal at the prefix Path.
	KindDeleteACL
	numKinds
)

var kindNames = [numKinds]string{
	KindInvalid:       "invalid",
	KindCreateSession: "create_session",
	KindEndSession:    "end_session",
	KindExpireSession: "expire_session",
	KindPutNode:       "put_node",
	KindDeleteNode:    "delete_node",
	KindAcquire:       "acquire",
	KindRelease:       "release",
	KindTick:          "tick",
	KindLeaderChanged: "leader_changed",
	KindSetACL:        "set_acl",
	KindDeleteACL:     "delete_acl",
}

// String returns the wire name of k ("acquire", "put_node", ...).
func (k Kind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "Kind(" + strconv.Itoa(int(k)) + ")"
}

// MarshalText encodes k by name; the invalid kind does not encode.
func (k Kind) MarshalText() ([]byte, error) {
	if k == KindInvalid || k >= numKinds {
		return nil, errorf(ErrInvalidArgument, "unknown command kind %d", int(k))
	}
	return []byte(kindNames[k]), nil
}

// UnmarshalText decodes a kind name; unknown names are rejected.
func (k *Kind) UnmarshalText(b []byte) error {
	for i := KindInvalid + 1; i < numKinds; i++ {
		if string(b) == kindNames[i] {
			*k = i
			return nil
		}
	}
	return errorf(ErrInvalidArgument, "unknown command kind %q", truncate(string(b), 64))
}

// Mode is a lock mode.
type Mode string

// Lock modes. The empty Mode in an Acquire means exclusive; in a LockState it
// means the lock is free.
const (
	ModeExclusive Mode = "exclusive"
	ModeShared    Mode = "shared"
)

// Command is one state-machine command, as it travels through the log. Every
// command carries the leader's clock; the other fields belong to some kinds
// only (see Kind) and must be zero for the others.
type Command struct {
	Kind Kind `json:"kind"`
	// NowMs is the leader's clock (unix ms) when it proposed the command.
	// The machine never lets its clock go back: it uses the highest NowMs
	// seen so far.
	NowMs int64 `json:"now_ms"`

	// Session names the session (end, expire, ephemeral put, acquire,
	// release).
	Session string `json:"session,omitempty"`

	// CreateSession. Zero TTLMs means DefaultTTLMs; nil LockDelayMs means
	// DefaultLockDelayMs (0 is a valid lock-delay).
	TTLMs       int64  `json:"ttl_ms,omitempty"`
	LockDelayMs *int64 `json:"lock_delay_ms,omitempty"`
	Label       string `json:"label,omitempty"`
	Host        string `json:"host,omitempty"`
	PID         int64  `json:"pid,omitempty"`

	// Path names the node (put, delete, acquire, release).
	Path string `json:"path,omitempty"`
	// Contents: for PutNode the new contents (nil means empty); for Acquire,
	// when not nil, contents written to the node with the grant.
	Contents *[]byte `json:"contents,omitempty"`

	// PutNode.
	Dir                 bool    `json:"dir,omitempty"`
	Ephemeral           bool    `json:"ephemeral,omitempty"`
	CreateOnly          bool    `json:"create_only,omitempty"`
	IfContentGeneration *uint64 `json:"if_content_generation,omitempty"`

	// DeleteNode.
	IfInstance *uint64 `json:"if_instance,omitempty"`

	// Acquire and Release.
	Mode       Mode   `json:"mode,omitempty"`
	WaitMs     int64  `json:"wait_ms,omitempty"`
	RequestID  string `json:"request_id,omitempty"`
	Generation uint64 `json:"generation,omitempty"`

	// LeaderChanged.
	Leader string `json:"leader,omitempty"`

	// Principal: for CreateSession, the principal that creates (and so
	// owns) the session, "" when the cell runs without authentication; for
	// SetACL and DeleteACL, whom the rule is for (a name, or Everyone).
	Principal string `json:"principal,omitempty"`
	// Perms of SetACL: permission names (see ParsePerms).
	Perms []string `json:"perms,omitempty"`
}

// Bytes returns a pointer to a copy of b, for Command.Contents.
func Bytes(b []byte) *[]byte {
	c := bytes.Clone(b)
	if c == nil {
		c = []byte{}
	}
	return &c
}

// Encode encodes c for the log. It refuses an invalid kind and an encoding
// over MaxCommandBytes; the fields are checked by Validate and by Apply.
func Encode(c Command) ([]byte, error) {
	b, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encoding %v command: %w", c.Kind, err)
	}
	if len(b) > MaxCommandBytes {
		return nil, errorf(ErrTooLarge, "command is %d bytes, over %d", len(b), MaxCommandBytes)
	}
	return b, nil
}

// Decode decodes a command encoded by Encode. It rejects input over
// MaxCommandBytes (ErrTooLarge), unknown fields, unknown kinds, trailing data
// and anything else malformed (ErrInvalidArgument). It does not check field
// values: Validate does.
func Decode(data []byte) (Command, error) {
	if len(data) > MaxCommandBytes {
		return Command{}, errorf(ErrTooLarge, "command is %d bytes, over %d", len(data), MaxCommandBytes)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var c Command
	if err := dec.Decode(&c); err != nil {
		return Command{}, errorf(ErrInvalidArgument, "decoding command: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return Command{}, errorf(ErrInvalidArgument, "decoding command: trailing data")
	}
	if c.Kind == KindInvalid {
		return Command{}, errorf(ErrInvalidArgument, "decoding command: no kind")
	}
	return c, nil
}

// Field bits for the per-kind field check.
const (
	fSession = 1 << iota
	fTTL
	fLockDelay
	fLabel
	fHost
	fPID
	fPath
	fContents
	fDir
	fEphemeral
	fCreateOnly
	fIfContentGen
	fIfInstance
	fMode
	fWait
	fRequestID
	fGeneration
	fLeader
	fPrincipal
	fPerms
)

var fieldNames = []string{"session", "ttl_ms", "lock_delay_ms", "label", "host", "pid", "path",
	"contents", "dir", "ephemeral", "create_only", "if_content_generation", "if_instance", "mode",
	"wait_ms", "request_id", "generation", "leader", "principal", "perms"}

// allowed lists the fields each kind may set.
var allowed = [numKinds]int{
	KindCreateSession: fTTL | fLockDelay | fLabel | fHost | fPID | fPrincipal,
	KindEndSession:    fSession,
	KindExpireSession: fSession,
	KindPutNode:       fPath | fContents | fDir | fEphemeral | fSession | fCreateOnly | fIfContentGen,
	KindDeleteNode:    fPath | fIfInstance,
	KindAcquire:       fPath | fSession | fMode | fWait | fRequestID | fContents,
	KindRelease:       fPath | fSession | fGeneration | fRequestID,
	KindTick:          0,
	KindLeaderChanged: fLeader,
	KindSetACL:        fPath | fPrincipal | fPerms,
	KindDeleteACL:     fPath | fPrincipal,
}

func (c *Command) present() int {
	var f int
	set := func(bit int, on bool) {
		if on {
			f |= bit
		}
	}
	set(fSession, c.Session != "")
	set(fTTL, c.TTLMs != 0)
	set(fLockDelay, c.LockDelayMs != nil)
	set(fLabel, c.Label != "")
	set(fHost, c.Host != "")
	set(fPID, c.PID != 0)
	set(fPath, c.Path != "")
	set(fContents, c.Contents != nil)
	set(fDir, c.Dir)
	set(fEphemeral, c.Ephemeral)
	set(fCreateOnly, c.CreateOnly)
	set(fIfContentGen, c.IfContentGeneration != nil)
	set(fIfInstance, c.IfInstance != nil)
	set(fMode, c.Mode != "")
	set(fWait, c.WaitMs != 0)
	set(fRequestID, c.RequestID != "")
	set(fGeneration, c.Generation != 0)
	set(fLeader, c.Leader != "")
	set(fPrincipal, c.Principal != "")
	set(fPerms, len(c.Perms) > 0)
	return f
}

// Validate checks c without looking at any state: the kind, which fields the
// kind may set, every bound, every path (against cell), and that strings are
// valid UTF-8. Errors wrap ErrInvalidArgument, or ErrTooLarge for contents.
// Defaults are not filled in. Apply runs the same checks, so a command that
// fails here would be rejected by Apply, changing nothing.
func (c *Command) Validate(cell string) error {
	if c.Kind == KindInvalid || c.Kind >= numKinds {
		return errorf(ErrInvalidArgument, "unknown command kind %d", int(c.Kind))
	}
	if c.NowMs < 0 {
		return errorf(ErrInvalidArgument, "now_ms %d is negative", c.NowMs)
	}
	if extra := c.present() &^ allowed[c.Kind]; extra != 0 {
		for i, name := range fieldNames {
			if extra&(1<<i) != 0 {
				return errorf(ErrInvalidArgument, "field %s is not allowed in %v", name, c.Kind)
			}
		}
	}
	switch c.Kind {
	case KindCreateSession:
		if c.TTLMs != 0 && (c.TTLMs < MinTTLMs || c.TTLMs > MaxTTLMs) {
			return errorf(ErrInvalidArgument, "ttl_ms %d outside %d..%d", c.TTLMs, MinTTLMs, MaxTTLMs)
		}
		if d := c.LockDelayMs; d != nil && (*d < MinLockDelayMs || *d > MaxLockDelayMs) {
			return errorf(ErrInvalidArgument, "lock_delay_ms %d outside %d..%d", *d, MinLockDelayMs, MaxLockDelayMs)
		}
		if err := validText("label", c.Label, MaxLabelBytes); err != nil {
			return err
		}
		if err := validText("host", c.Host, MaxHostBytes); err != nil {
			return err
		}
		if c.PID < 0 || c.PID > MaxPID {
			return errorf(ErrInvalidArgument, "pid %d outside 0..%d", c.PID, MaxPID)
		}
		if c.Principal != "" {
			return ValidatePrincipal(c.Principal, false)
		}
	case KindEndSession, KindExpireSession:
		return validSessionID(c.Session)
	case KindPutNode:
		if err := validNodePath(cell, c.Path); err != nil {
			return err
		}
		if err := validContents(c.Contents); err != nil {
			return err
		}
		if c.Dir && c.Contents != nil && len(*c.Contents) > 0 {
			return errorf(ErrInvalidArgument, "a directory has no contents")
		}
		if c.Dir && c.IfContentGeneration != nil {
			return errorf(ErrInvalidArgument, "if_content_generation does not apply to a directory")
		}
		if c.Dir && c.Ephemeral {
			return errorf(ErrInvalidArgument, "ephemeral nodes are files")
		}
		if c.Ephemeral != (c.Session != "") {
			return errorf(ErrInvalidArgument, "ephemeral and session go together")
		}
		if c.Ephemeral {
			return validSessionID(c.Session)
		}
	case KindDeleteNode:
		return validNodePath(cell, c.Path)
	case KindAcquire:
		if err := validNodePath(cell, c.Path); err != nil {
			return err
		}
		if err := validSessionID(c.Session); err != nil {
			return err
		}
		if c.Mode != "" && c.Mode != ModeExclusive && c.Mode != ModeShared {
			return errorf(ErrInvalidArgument, "mode %q is not exclusive or shared", truncate(string(c.Mode), 64))
		}
		if c.WaitMs < 0 || c.WaitMs > MaxWaitMs {
			return errorf(ErrInvalidArgument, "wait_ms %d outside 0..%d", c.WaitMs, MaxWaitMs)
		}
		if err := validRequestID(c.RequestID); err != nil {
			return err
		}
		return validContents(c.Contents)
	case KindRelease:
		if err := validNodePath(cell, c.Path); err != nil {
			return err
		}
		if err := validSessionID(c.Session); err != nil {
			return err
		}
		return validRequestID(c.RequestID)
	case KindLeaderChanged:
		return validText("leader", c.Leader, MaxLeaderBytes)
	case KindSetACL, KindDeleteACL:
		if err := ValidatePath(cell, c.Path); err != nil {
			return err
		}
		if err := ValidatePrincipal(c.Principal, true); err != nil {
			return err
		}
		_, err := ParsePerms(c.Perms)
		return err
	}
	return nil
}

// validNodePath accepts a valid path other than the cell root.
func validNodePath(cell, path string) error {
	if err := ValidatePath(cell, path); err != nil {
		return err
	}
	if path == PathPrefix+cell {
		return errorf(ErrInvalidArgument, "path %q is the cell root", path)
	}
	return nil
}

func validContents(c *[]byte) error {
	if c != nil && len(*c) > MaxContentsBytes {
		return errorf(ErrTooLarge, "contents are %d bytes, over %d", len(*c), MaxContentsBytes)
	}
	return nil
}

// validSessionID accepts 1..MaxSessionIDBytes bytes of [A-Za-z0-9._-].
func validSessionID(id string) error {
	if id == "" {
		return errorf(ErrInvalidArgument, "session id missing")
	}
	if len(id) > MaxSessionIDBytes {
		return errorf(ErrInvalidArgument, "session id over %d bytes", MaxSessionIDBytes)
	}
	for i := 0; i < len(id); i++ {
		if !segmentByte(id[i]) {
			return errorf(ErrInvalidArgument, "session id %q has byte %q outside [A-Za-z0-9._-]", truncate(id, 64), id[i])
		}
	}
	return nil
}

func validRequestID(id string) error {
	if id == "" {
		return nil
	}
	return validText("request_id", id, MaxRequestIDBytes)
}

// validText accepts valid UTF-8 without control characters, at most max
// bytes. (Invalid UTF-8 would not survive a JSON snapshot unchanged.)
func validText(field, s string, max int) error {
	if len(s) > max {
		return errorf(ErrInvalidArgument, "%s is %d bytes, over %d", field, len(s), max)
	}
	if !utf8.ValidString(s) {
		return errorf(ErrInvalidArgument, "%s is not valid UTF-8", field)
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return errorf(ErrInvalidArgument, "%s has control character %U", field, r)
		}
	}
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
