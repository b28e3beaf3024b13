package lockd_test

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/lockd/lockd/api/apitest"
	lockd "github.com/lockd/lockd/clients/go"
)

func TestNodes(t *testing.T) {
	cell := apitest.NewCell(t, 3)
	ctx := testCtx(t)
	c := newClient(t, cell.URLs())
	dir := cellPath(cell, "app")

	n, err := c.Put(ctx, dir+"/cfg", []byte("v=1"))
	if err != nil {
		t.Fatal(err)
	}
	if n.Kind != lockd.KindFile || n.ContentGeneration != 1 || string(n.Contents) != "v=1" || n.Instance == 0 {
		t.Fatalf("created %+v", n)
	}
	binary := []byte{0xff, 0x00, 0xfe}
	if _, err := c.Put(ctx, dir+"/bin", binary); err != nil {
		t.Fatal(err)
	}
	got, err := c.Get(ctx, dir+"/bin")
	if err != nil || !bytes.Equal(got.Contents, binary) {
		t.Fatalf("binary contents %v, %v", got, err)
	}
	if _, err := c.Put(ctx, dir+"/sub", nil, lockd.AsDir()); err != nil {
		t.Fatal(err)
	}
	d, err := c.Get(ctx, dir, lockd.WithChildren())
	if err != nil || !d.IsDir() || !slices.Equal(d.Children, []string{"bin", "cfg", "sub"}) {
		t.Fatalf("dir %+v, %v", d, err)
	}
	kids, err := c.Children(ctx, dir)
	if err != nil || len(kids) != 3 {
		t.Fatalf("children %v, %v", kids, err)
	}
	stale, err := c.Get(ctx, dir+"/cfg", lockd.Stale())
	if err != nil || stale.Path != dir+"/cfg" {
		t.Fatalf("stale read %+v, %v", stale, err)
	}
	if err := c.Delete(ctx, dir+"/cfg", lockd.IfInstance(n.Instance)); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, dir+"/cfg"); !errors.Is(err, lockd.ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}

	// An ephemeral node dies with its session.
	s := newSession(t, c)
	e, err := c.Put(ctx, dir+"/members/me", []byte("here"), lockd.Ephemeral(s))
	if err != nil || e.EphemeralOwner != s.ID() {
		t.Fatalf("ephemeral %+v, %v", e, err)
	}
	info, err := s.Info(ctx)
	if err != nil || !slices.Contains(info.Ephemerals, dir+"/members/me") {
		t.Fatalf("session ephemerals %+v, %v", info, err)
	}
	if err := s.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(ctx, dir+"/members/me"); !errors.Is(err, lockd.ErrNotFound) {
		t.Fatalf("ephemeral after its session ended: %v", err)
	}
	if _, err := c.Put(ctx, dir+"/members/again", nil, lockd.Ephemeral(s)); !errors.Is(err, lockd.ErrSessionClosed) {
		t.Fatalf("ephemeral of a closed session: %v", err)
	}

	sessions, err := c.Sessions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, si := range sessions {
		if si.ID == s.ID() {
			t.Fatalf("ended session listed: %+v", si)
		}
	}
	locks, err := c.Locks(ctx)
	if err != nil || len(locks) != 0 {
		t.Fatalf("locks %+v, %v", locks, err)
	}
}

// TestClientClosed checks that a closed Client refuses calls.
func TestClientClosed(t *testing.T) {
	cell := apitest.NewCell(t, 1)
	c := newClient(t, []string{cell.URL(0)})
	_ = c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := c.Get(ctx, cellPath(cell, "x")); !errors.Is(err, lockd.ErrClientClosed) {
		t.Fatalf("Get on a closed client: %v", err)
	}
	if _, err := lockd.New(nil); !errors.Is(err, lockd.ErrInvalidArgument) {
		t.Fatalf("New without endpoints: %v", err)
	}
	if _, err := lockd.New([]string{"ftp://x"}); !errors.Is(err, lockd.ErrInvalidArgument) {
		t.Fatalf("New with a bad endpoint: %v", err)
	}
}
