package lockd

import (
	"reflect"
	"strings"
	"testing"

	"github.com/lockd/lockd/api/wire"
)

// TestWireMatchesServer checks the SDK's own wire structs against the
// server's api/wire (which only this test may import): every field the SDK
// sends or reads exists there under the same JSON name, with the same kind
// of JSON value. Requests matter most: the cell rejects unknown fields.
func TestWireMatchesServer(t *testing.T) {
	pairs := []struct {
		sdk, server any
	}{
		{wireCreateSession{}, wire.CreateSessionRequest{}},
		{wireSession{}, wire.Session{}},
		{wirePut{}, wire.PutNodeRequest{}},
		{wireNode{}, wire.Node{}},
		{wireNodeResp{}, wire.NodeResponse{}},
		{wireAcquire{}, wire.AcquireRequest{}},
		{wireGrant{}, wire.Grant{}},
		{wireGrantResp{}, wire.LockResponse{}},
		{wireRelease{}, wire.ReleaseRequest{}},
		{wireReleaseResp{}, wire.ReleaseResponse{}},
		{wireLockState{}, wire.LockState{}},
		{wireLockStateResp{}, wire.LockStateResponse{}},
		{wireLockStatesResp{}, wire.LocksResponse{}},
		{wireCheckOne{}, wire.CheckSequencerRequest{}},
		{wireCheckMany{}, wire.CheckSequencerRequest{}},
		{wireCheckResult{}, wire.SequencerResult{}},
		{wireCheckManyResp{}, wire.CheckSequencersResponse{}},
		{wireEvent{}, wire.Event{}},
		{wirePoll{}, wire.WatchResponse{}},
		{wireElectionResp{}, wire.ElectionResponse{}},
		{wireCluster{}, wire.Cluster{}},
		{wireError{}, wire.ErrorResponse{}},
		{wireSessionResp{}, wire.SessionResponse{}},
		{wireSessionsResp{}, wire.SessionsResponse{}},
	}
	for _, p := range pairs {
		compareJSON(t, reflect.TypeOf(p.sdk).Name(), reflect.TypeOf(p.sdk), reflect.TypeOf(p.server))
	}
}

// allowedExtra lists fields the SDK reads that the server does not send
// (alternatives it accepts leniently).
var allowedExtra = map[string]bool{"wireNodeResp.children": true}

func compareJSON(t *testing.T, where string, sdk, server reflect.Type) {
	t.Helper()
	sdk, server = deref(sdk), deref(server)
	if sdk.Kind() != server.Kind() && !(isNumber(sdk) && isNumber(server)) {
		t.Errorf("%s: SDK has %s, server %s", where, sdk.Kind(), server.Kind())
		return
	}
	switch sdk.Kind() {
	case reflect.Slice:
		compareJSON(t, where+"[]", sdk.Elem(), server.Elem())
	case reflect.Struct:
		theirs := jsonFields(server)
		for name, f := range jsonFields(sdk) {
			g, ok := theirs[name]
			if !ok {
				if !allowedExtra[where+"."+name] {
					t.Errorf("%s: field %q is not in the server's wire struct %s", where, name, server.Name())
				}
				continue
			}
			compareJSON(t, where+"."+name, f.Type, g.Type)
		}
	}
}

func deref(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Name() == "looseString" {
		return reflect.TypeOf("")
	}
	return t
}

func isNumber(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Int, reflect.Int32, reflect.Int64, reflect.Uint, reflect.Uint32, reflect.Uint64, reflect.Float64:
		return true
	}
	return false
}

func jsonFields(t reflect.Type) map[string]reflect.StructField {
	out := map[string]reflect.StructField{}
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() && name == "" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		out[name] = f
	}
	return out
}
