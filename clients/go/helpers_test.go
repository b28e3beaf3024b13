package lockd_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/lockd/lockd/api/apitest"
	lockd "github.com/lockd/lockd/clients/go"
)

// exampleCell is the cell the Example functions run against; TestMain starts
// it, because an Example has no *testing.T to give apitest.NewCell.
var exampleCell *apitest.Cell

func TestMain(m *testing.M) {
	tb := &mainTB{}
	exampleCell = apitest.NewCell(tb, 3)
	code := m.Run()
	tb.cleanup()
	os.Exit(code)
}

// mainTB is the testing.TB apitest gets outside of a test: it implements the
// methods apitest calls (Helper, Cleanup, Fatalf, Log and friends); the
// embedded nil TB is never reached.
type mainTB struct {
	testing.TB
	cleanups []func()
}

func (*mainTB) Helper() {}

func (m *mainTB) Cleanup(f func()) { m.cleanups = append(m.cleanups, f) }

func (m *mainTB) cleanup() {
	for i := len(m.cleanups) - 1; i >= 0; i-- {
		m.cleanups[i]()
	}
}

func (*mainTB) Log(args ...any) {
	if os.Getenv("LOCKD_TEST_LOG") != "" {
		fmt.Fprintln(os.Stderr, args...)
	}
}

func (m *mainTB) Logf(format string, args ...any) { m.Log(fmt.Sprintf(format, args...)) }

func (*mainTB) Fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "example cell: "+format+"\n", args...)
	os.Exit(2)
}

func (m *mainTB) Fatal(args ...any) { m.Fatalf("%s", fmt.Sprint(args...)) }

func (m *mainTB) Errorf(format string, args ...any) { m.Fatalf(format, args...) }

func (*mainTB) Name() string { return "TestMain" }

func (*mainTB) Failed() bool { return false }

// newClient returns a Client for urls, closed by t.Cleanup.
func newClient(t *testing.T, urls []string, opts ...lockd.ClientOption) *lockd.Client {
	t.Helper()
	if os.Getenv("LOCKD_TEST_SDKLOG") != "" {
		opts = append([]lockd.ClientOption{lockd.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))}, opts...)
	}
	c, err := lockd.New(urls, opts...)
	if err != nil {
		t.Fatalf("lockd.New: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newSession returns a Session, closed by t.Cleanup.
func newSession(t *testing.T, c *lockd.Client, opts ...lockd.SessionOption) *lockd.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := lockd.NewSession(ctx, c, opts...)
	if err != nil {
		t.Fatalf("NewSession: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Close(ctx)
	})
	return s
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond every few milliseconds until it holds or the
// deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}

// recv waits for a value on ch, or fails the test.
func recv[T any](t *testing.T, ch <-chan T, within time.Duration, what string) T {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatalf("%s: channel closed", what)
		}
		return v
	case <-time.After(within):
		t.Fatalf("%s: nothing within %v", what, within)
	}
	var zero T
	return zero
}

// cutProxy stands between a client and a replica, and can cut the link: a
// network fault, not a fake server. While cut it aborts every connection.
type cutProxy struct {
	srv *httptest.Server
	cut atomic.Bool
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{}
	rp := httputil.NewSingleHostReverseProxy(u)
	rp.FlushInterval = -1
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.cut.Load() {
			panic(http.ErrAbortHandler)
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		p.srv.CloseClientConnections()
		p.srv.Close()
	})
	return p
}

func (p *cutProxy) URL() string { return p.srv.URL }

func (p *cutProxy) Cut() {
	p.cut.Store(true)
	p.srv.CloseClientConnections()
}

// apiErr returns err's *lockd.Error, or fails the test.
func apiErr(t *testing.T, err error) *lockd.Error {
	t.Helper()
	var ae *lockd.Error
	if !errors.As(err, &ae) {
		t.Fatalf("error %v (%T) is not a *lockd.Error", err, err)
	}
	return ae
}

// cellPath returns a node path in the cell for this test.
func cellPath(c *apitest.Cell, rest string) string { return "/ls/" + c.Name() + "/" + rest }
