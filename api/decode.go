package api

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/lockd/lockd/api/wire"
	"github.com/lockd/lockd/lockservice"
)

// Request decoding: every body is one JSON object with no unknown fields
// and nothing after it; every value is then checked against the bounds of
// API.md with lockservice.Command.Validate, so that what reaches the
// service is a command Apply would accept on its shape alone. The decoders
// are pure functions of (cell, bytes) so FuzzDecodeRequests can drive them.

// decodeJSON decodes body into v. An empty body is "{}" when allowEmpty.
func decodeJSON(body []byte, v any, allowEmpty bool) error {
	if len(bytes.TrimSpace(body)) == 0 {
		if allowEmpty {
			return nil
		}
		return invalid("the request body is empty; a JSON object is expected")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return invalid("%s", jsonProblem(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return invalid("malformed JSON: data after the JSON object")
	}
	return nil
}

// jsonProblem phrases a decoding error for a client.
func jsonProblem(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d: %v", syn.Offset, syn)
	case errors.As(err, &typ):
		if typ.Field == "" {
			return fmt.Sprintf("the request body must be a JSON object, not %s", typ.Value)
		}
		return fmt.Sprintf("field %s: %s is not %s", typ.Field, typ.Value, jsonKind(typ.Type.Kind().String()))
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end of input"
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if strings.HasPrefix(msg, "unknown field") {
		return msg + " (unknown fields are rejected)"
	}
	return "malformed JSON: " + msg
}

func jsonKind(goKind string) string {
	switch {
	case strings.HasPrefix(goKind, "int"):
		return "an integer in range"
	case strings.HasPrefix(goKind, "uint"):
		return "a non-negative integer in range"
	case goKind == "bool":
		return "a boolean"
	case goKind == "string", goKind == "ptr":
		return "of the expected type"
	case goKind == "slice":
		return "an array"
	}
	return "of the expected type"
}

// contentsOf turns the text or base64 form into bytes (nil when neither).
func contentsOf(text, b64 *string) (*[]byte, error) {
	switch {
	case text != nil && b64 != nil:
		return nil, invalid("give contents or contents_b64, not both")
	case text != nil:
		b := []byte(*text)
		return &b, nil
	case b64 != nil:
		if base64.StdEncoding.DecodedLen(len(*b64)) > lockservice.MaxContentsBytes+3 {
			return nil, tooLarge("contents are over the limit of %d bytes", lockservice.MaxContentsBytes)
		}
		b, err := base64.StdEncoding.DecodeString(*b64)
		if err != nil {
			return nil, invalid("contents_b64 is not standard base64: %v", err)
		}
		return &b, nil
	}
	return nil, nil
}

// validated runs Command.Validate and returns cmd.
func validated(cell string, cmd lockservice.Command) (lockservice.Command, error) {
	if err := cmd.Validate(cell); err != nil {
		return lockservice.Command{}, err
	}
	return cmd, nil
}

// decodeCreateSession decodes POST /v1/sessions.
func decodeCreateSession(cell string, body []byte) (lockservice.Command, error) {
	var req wire.CreateSessionRequest
	if err := decodeJSON(body, &req, true); err != nil {
		return lockservice.Command{}, err
	}
	cmd := lockservice.Command{Kind: lockservice.KindCreateSession, Label: req.Label, Host: req.Host, PID: req.PID}
	if req.TTLMs != nil {
		// Explicit 0 is out of range, not "default" (the command's zero).
		if t := *req.TTLMs; t < lockservice.MinTTLMs || t > lockservice.MaxTTLMs {
			return lockservice.Command{}, invalid("ttl_ms %d outside %d..%d", t, lockservice.MinTTLMs, lockservice.MaxTTLMs)
		}
		cmd.TTLMs = *req.TTLMs
	}
	cmd.LockDelayMs = req.LockDelayMs
	return validated(cell, cmd)
}

// decodeEmpty accepts an empty body or "{}" (keepalive).
func decodeEmpty(body []byte) error {
	var req struct{}
	return decodeJSON(body, &req, true)
}

// decodePutNode decodes PUT /v1/nodes/{path}; an empty body writes an empty
// file.
func decodePutNode(cell, path string, body []byte) (lockservice.Command, error) {
	var req wire.PutNodeRequest
	if err := decodeJSON(body, &req, true); err != nil {
		return lockservice.Command{}, err
	}
	contents, err := contentsOf(req.Contents, req.ContentsB64)
	if err != nil {
		return lockservice.Command{}, err
	}
	return validated(cell, lockservice.Command{
		Kind: lockservice.KindPutNode, Path: path, Contents: contents, Dir: req.Dir,
		Ephemeral: req.Ephemeral, Session: req.Session, CreateOnly: req.CreateOnly,
		IfContentGeneration: req.IfContentGeneration,
	})
}

// decodeAcquire decodes POST /v1/locks/acquire.
func decodeAcquire(cell string, body []byte) (lockservice.Command, error) {
	var req wire.AcquireRequest
	if err := decodeJSON(body, &req, false); err != nil {
		return lockservice.Command{}, err
	}
	if req.Path == "" {
		return lockservice.Command{}, invalid("path is required")
	}
	contents, err := contentsOf(req.Contents, req.ContentsB64)
	if err != nil {
		return lockservice.Command{}, err
	}
	return validated(cell, lockservice.Command{
		Kind: lockservice.KindAcquire, Path: req.Path, Session: req.Session,
		Mode: lockservice.Mode(req.Mode), WaitMs: req.WaitMs, RequestID: req.RequestID, Contents: contents,
	})
}

// decodeRelease decodes POST /v1/locks/release.
func decodeRelease(cell string, body []byte) (lockservice.Command, error) {
	var req wire.ReleaseRequest
	if err := decodeJSON(body, &req, false); err != nil {
		return lockservice.Command{}, err
	}
	if req.Path == "" {
		return lockservice.Command{}, invalid("path is required")
	}
	return validated(cell, lockservice.Command{
		Kind: lockservice.KindRelease, Path: req.Path, Session: req.Session,
		Generation: req.Generation, RequestID: req.RequestID,
	})
}

// decodeCheckSequencers decodes POST /v1/sequencers/check: the sequencers
// to check and whether it is a batch.
func decodeCheckSequencers(body []byte) ([]string, bool, error) {
	var req wire.CheckSequencerRequest
	if err := decodeJSON(body, &req, false); err != nil {
		return nil, false, err
	}
	switch {
	case req.Sequencer != "" && req.Sequencers != nil:
		return nil, false, invalid("give sequencer or sequencers, not both")
	case req.Sequencers != nil:
		if len(req.Sequencers) > wire.MaxSequencersPerCheck {
			return nil, false, invalid("%d sequencers, over the limit of %d per check", len(req.Sequencers), wire.MaxSequencersPerCheck)
		}
		for i, sq := range req.Sequencers {
			if err := checkSequencerShape(sq); err != nil {
				return nil, false, invalid("sequencers[%d]: %s", i, err.Message)
			}
		}
		return req.Sequencers, true, nil
	case req.Sequencer != "":
		if err := checkSequencerShape(req.Sequencer); err != nil {
			return nil, false, err
		}
		return []string{req.Sequencer}, false, nil
	}
	return nil, false, invalid("sequencer (or sequencers) is required")
}

func checkSequencerShape(sq string) *Error {
	if sq == "" {
		return invalid("empty sequencer")
	}
	if len(sq) > lockservice.MaxSequencerBytes {
		return invalid("sequencer of %d bytes, over %d", len(sq), lockservice.MaxSequencerBytes)
	}
	return nil
}

// checkSessionID checks the shape of a session id from a URL: the rule
// Apply uses for every command that names a session.
func checkSessionID(cell, id string) error {
	_, err := validated(cell, lockservice.Command{Kind: lockservice.KindEndSession, Session: id})
	return err
}

// nodePath returns the node path that follows a route prefix
// (/v1/nodes/ls/local/a -> /ls/local/a), validated.
func nodePath(c echo.Context, cell string) (string, error) {
	p := "/" + c.Param("*")
	if err := lockservice.ValidatePath(cell, p); err != nil {
		return "", err
	}
	return p, nil
}

// boolParam parses an optional boolean query parameter.
func boolParam(c echo.Context, name string) (bool, error) {
	v := c.QueryParam(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, invalid("query parameter %s=%q is not a boolean", name, truncate(v, 32))
	}
	return b, nil
}

// uintParam parses an optional non-negative integer query parameter.
func uintParam(c echo.Context, name string) (uint64, bool, error) {
	v := c.QueryParam(name)
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		return 0, false, invalid("query parameter %s=%q is not a non-negative integer", name, truncate(v, 32))
	}
	return n, true, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
