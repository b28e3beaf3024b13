package api

import (
	"errors"
	"testing"

	"github.com/lockd/lockd/api/wire"
	"github.com/lockd/lockd/lockservice"
)

// FuzzDecodeRequests feeds arbitrary bytes to every request body decoder
// (and its validation): none may panic, every refusal must carry an API
// code other than internal, and every accepted command must encode for the
// log and validate.
func FuzzDecodeRequests(f *testing.F) {
	for _, seed := range []string{
		``, `{}`, `{} {}`, `[]`, `null`, `{"ttl_ms": 10000, "lock_delay_ms": 0, "label": "w", "host": "h", "pid": 42}`,
		`{"ttl_ms": -1}`, `{"ttl_ms": 1e30}`, `{"contents": "v1"}`, `{"contents_b64": "/wD+"}`,
		`{"dir": true}`, `{"ephemeral": true, "session": "0000000000000001"}`, `{"create_only": true, "if_content_generation": 3}`,
		`{"path": "/ls/local/a", "session": "0000000000000001", "mode": "shared", "wait_ms": 5000, "request_id": "r", "contents": "x"}`,
		`{"path": "/ls/local/a", "session": "0000000000000001", "generation": 7, "request_id": "r"}`,
		`{"sequencer": "v1:AAAA"}`, `{"sequencers": ["a", "b"]}`, `{"path": "/ls/local/../x"}`, "{\"label\": \"\xff\"}",
		`{"unknown": 1}`, `{"contents": "a", "contents_b64": "YQ=="}`, `{"path": "/ls/local/a", "session": "x", "wait_ms": 300001}`,
	} {
		f.Add([]byte(seed))
	}
	const cell = "local"
	f.Fuzz(func(t *testing.T, body []byte) {
		check := func(what string, cmd lockservice.Command, err error) {
			if err != nil {
				if code := apiCode(err); code == "" || code == wire.CodeInternal {
					t.Fatalf("%s: error %v has code %q", what, err, code)
				}
				return
			}
			if verr := cmd.Validate(cell); verr != nil {
				t.Fatalf("%s: accepted command does not validate: %v", what, verr)
			}
			if _, eerr := lockservice.Encode(cmd); eerr != nil {
				t.Fatalf("%s: accepted command does not encode: %v", what, eerr)
			}
		}
		cmd, err := decodeCreateSession(cell, body)
		check("create session", cmd, err)
		cmd, err = decodePutNode(cell, "/ls/local/fuzz", body)
		check("put node", cmd, err)
		cmd, err = decodePutNode(cell, "/"+string(body), []byte(`{}`))
		check("put node path", cmd, err)
		cmd, err = decodeAcquire(cell, body)
		check("acquire", cmd, err)
		cmd, err = decodeRelease(cell, body)
		check("release", cmd, err)
		if _, _, err := decodeCheckSequencers(body); err != nil {
			check("sequencers", lockservice.Command{}, err)
		}
		if err := decodeEmpty(body); err != nil {
			check("empty", lockservice.Command{}, err)
		}
		if err := checkSessionID(cell, string(body)); err != nil {
			check("session id", lockservice.Command{}, err)
		}
	})
}

// apiCode is the code the error handler would answer with (without a
// Server: decoding errors are *Error or lockservice errors).
func apiCode(err error) string {
	var ae *Error
	if errors.As(err, &ae) {
		return ae.Code
	}
	return lockservice.Code(err)
}

// TestWireBounds keeps the bounds of api/wire (which cannot import
// lockservice) equal to the machine's.
func TestWireBounds(t *testing.T) {
	pairs := []struct {
		name       string
		wire, real int64
	}{
		{"MinTTLMs", wire.MinTTLMs, lockservice.MinTTLMs},
		{"MaxTTLMs", wire.MaxTTLMs, lockservice.MaxTTLMs},
		{"DefaultTTLMs", wire.DefaultTTLMs, lockservice.DefaultTTLMs},
		{"MinLockDelayMs", wire.MinLockDelayMs, lockservice.MinLockDelayMs},
		{"MaxLockDelayMs", wire.MaxLockDelayMs, lockservice.MaxLockDelayMs},
		{"DefaultLockDelayMs", wire.DefaultLockDelayMs, lockservice.DefaultLockDelayMs},
		{"MaxWaitMs", wire.MaxWaitMs, lockservice.MaxWaitMs},
		{"MaxContentsBytes", wire.MaxContentsBytes, lockservice.MaxContentsBytes},
		{"MaxPathBytes", wire.MaxPathBytes, lockservice.MaxPathBytes},
		{"MaxSegmentBytes", wire.MaxSegmentBytes, lockservice.MaxSegmentBytes},
		{"MaxSessionIDBytes", wire.MaxSessionIDBytes, lockservice.MaxSessionIDBytes},
		{"MaxRequestIDBytes", wire.MaxRequestIDBytes, lockservice.MaxRequestIDBytes},
		{"MaxSequencerBytes", wire.MaxSequencerBytes, lockservice.MaxSequencerBytes},
	}
	for _, p := range pairs {
		if p.wire != p.real {
			t.Errorf("wire.%s = %d, lockservice has %d", p.name, p.wire, p.real)
		}
	}
	if wire.MaxBodyBytes < 2*wire.MaxContentsBytes {
		t.Errorf("a body of %d bytes cannot carry %d bytes of contents in base64", wire.MaxBodyBytes, wire.MaxContentsBytes)
	}
	// Every lockservice code has a status, and event types agree.
	for _, code := range []string{"invalid_argument", "not_found", "already_exists", "lock_held", "lock_delayed", "not_holder",
		"precondition_failed", "session_expired", "too_large", "compacted"} {
		if statusOf[code] == 0 {
			t.Errorf("no status for %s", code)
		}
	}
	for w, l := range map[string]lockservice.EventType{
		wire.EventNodeCreated: lockservice.EventNodeCreated, wire.EventContentsChanged: lockservice.EventContentsChanged,
		wire.EventNodeDeleted: lockservice.EventNodeDeleted, wire.EventChildAdded: lockservice.EventChildAdded,
		wire.EventChildRemoved: lockservice.EventChildRemoved, wire.EventLockAcquired: lockservice.EventLockAcquired,
		wire.EventLockReleased: lockservice.EventLockReleased, wire.EventLockConflict: lockservice.EventLockConflict,
		wire.EventSessionExpired: lockservice.EventSessionExpired, wire.EventLeaderChanged: lockservice.EventLeaderChanged,
	} {
		if w != string(l) {
			t.Errorf("event %s vs %s", w, l)
		}
	}
}
