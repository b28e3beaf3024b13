package ui_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lockd/lockd/internal/config"
	"github.com/lockd/lockd/internal/testcell"
)

const adminToken = "dashboard-admin-token-0123456789"

func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed")
	}
	t.Skip("SKIPPING THE BROWSER TEST: chromium is not installed (apt-get install -y chromium)")
	return ""
}

// TestDashboardAsksForAToken: on a cell with auth, the dashboard's data
// routes answer 401; the page asks for a token, and once an
// administrator's token is entered it shows the cell, the sessions and the
// live event stream (fetch with Authorization, not EventSource).
func TestDashboardAsksForAToken(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real cell and a browser")
	}
	chrome := chromium(t)
	cell := testcell.Start(t, testcell.Options{
		Auth: &config.Auth{Tokens: []config.Token{
			{Name: "ops", SHA256: config.HashToken(adminToken), Admin: true},
			{Name: "dev", SHA256: config.HashToken("dev-token-0123456789")},
		}, ReplicaToken: "replica-secret-0123456789"},
		AdminToken: adminToken, LogLevel: "info",
	})
	leader := cell.WaitLeader(30 * time.Second)
	page := cell.Replica(leader)
	req, _ := http.NewRequest("POST", page.URL()+"/v1/sessions", strings.NewReader(`{"ttl_ms": 60000, "label": "dash"}`))
	req.Header.Set("Authorization", "Bearer "+adminToken)
	res, err := http.DefaultClient.Do(req)
	if err != nil || res.StatusCode != http.StatusCreated {
		t.Fatalf("creating a session: %v %v", err, res)
	}
	res.Body.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.Headless, chromedp.WindowSize(1400, 1000),
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-dev-shm-usage", true))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.Navigate(page.URL()+"/ui/")); err != nil {
		t.Fatalf("loading the dashboard: %v", err)
	}
	within := func(d time.Duration, steps ...chromedp.Action[chromedp.Void]) error {
		wctx, wcancel := context.WithTimeout(ctx, d)
		defer wcancel()
		return chromedp.Do(wctx, steps...)
	}
	poll := func(d time.Duration, expr string) error {
		wctx, wcancel := context.WithTimeout(ctx, d)
		defer wcancel()
		_, err := chromedp.Run(wctx, chromedp.Poll[bool](expr))
		return err
	}
	if err := within(15*time.Second, chromedp.WaitVisible(`#auth-banner`), chromedp.WaitVisible(`#token-input`)); err != nil {
		t.Fatalf("the dashboard did not ask for a token: %v", err)
	}
	// A token that is not an administrator's: 403, still asking.
	if err := within(10*time.Second, chromedp.SendKeys(`#token-input`, "dev-token-0123456789"), chromedp.Click(`#token-save`),
		chromedp.WaitVisible(`#auth-banner`)); err != nil {
		t.Fatal(err)
	}
	if err := poll(10*time.Second, `document.getElementById("auth-detail").textContent.includes("403")`); err != nil {
		t.Fatalf("a non-admin token was not refused with 403: %v", err)
	}
	if err := within(10*time.Second, chromedp.SetValue(`#token-input`, adminToken), chromedp.Click(`#token-save`)); err != nil {
		t.Fatal(err)
	}
	leaderSel := fmt.Sprintf(`.replica[data-replica="%d"][data-role="leader"]`, leader)
	if err := within(20*time.Second, chromedp.WaitVisible(leaderSel), chromedp.WaitVisible(`tr[data-session]`)); err != nil {
		t.Fatalf("with the admin token the dashboard did not show the cell: %v", err)
	}
	if err := poll(20*time.Second, `document.getElementById("events-status").getAttribute("data-state") === "live"`); err != nil {
		t.Fatalf("with the admin token the dashboard did not show the cell: %v", err)
	}
	hidden, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.getElementById("auth-banner").hidden`))
	if err != nil || !hidden {
		t.Fatalf("token banner still shown (%v)", err)
	}
	stored, err := chromedp.Run(ctx, chromedp.Evaluate[string](`sessionStorage.getItem("lockd.token")`))
	if err != nil || stored != adminToken {
		t.Fatalf("token kept as %q (%v)", stored, err)
	}
}
