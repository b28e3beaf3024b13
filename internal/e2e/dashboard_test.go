package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/lockd/lockd/internal/testcell"
)

// chromiumPath finds Debian's chromium. In CI (CI=true) its absence fails
// the test; a local run without it skips loudly.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" {
		t.Fatal("chromium is not installed; .ci/run must install it (apt-get install -y chromium)")
	}
	t.Skip("SKIPPING THE BROWSER TEST: chromium is not installed (apt-get install -y chromium)")
	return ""
}

// artifactDir is where screenshots go: $LOCKD_ARTIFACTS or a temp dir.
func artifactDir(t *testing.T) string {
	dir := os.Getenv("LOCKD_ARTIFACTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "lockd-artifacts")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestDashboardShowsLeaderChange loads the dashboard of a running cell in
// headless Chromium, sees five replicas and the leader, kills the leader,
// and sees the new leader and the old one marked down.
func TestDashboardShowsLeaderChange(t *testing.T) {
	chrome := chromiumPath(t)
	cell := testcell.Start(t, testcell.Options{})
	leader := cell.WaitLeader(20 * time.Second)
	// Load the page from a replica that will survive the kill.
	page := cell.Replica(leader%5 + 1)
	// Some activity for the tables.
	sess := createSession(t, page.URL(), 30000, 0, "dashboard-demo")
	call(t, "POST", page.URL()+"/v1/locks/acquire", acquireBody(sess, "/ls/local/demo/lock", 0, "d"))

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.Headless, chromedp.WindowSize(1400, 1000),
		chromedp.Flag("disable-gpu", true), chromedp.Flag("disable-dev-shm-usage", true))
	actx, acancel := chromedp.NewExecAllocator(context.Background(), opts...)
	defer acancel()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The first call starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx, chromedp.Navigate(page.URL()+"/ui/")); err != nil {
		t.Fatalf("loading the dashboard: %v", err)
	}
	within := func(d time.Duration, steps ...chromedp.Action[chromedp.Void]) error {
		wctx, wcancel := context.WithTimeout(ctx, d)
		defer wcancel()
		return chromedp.Do(wctx, steps...)
	}
	leaderSel := fmt.Sprintf(`.replica[data-replica="%d"][data-role="leader"]`, leader)
	if err := within(20*time.Second, chromedp.WaitVisible(leaderSel), chromedp.WaitVisible(`tr[data-session]`)); err != nil {
		t.Fatalf("dashboard did not show leader %d and the session: %v", leader, err)
	}
	cards, err := chromedp.Run(ctx, chromedp.Evaluate[int](`document.querySelectorAll(".replica[data-replica]").length`))
	if err != nil || cards != 5 {
		t.Fatalf("dashboard shows %d replicas (%v), want 5", cards, err)
	}
	before, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	writeArtifact(t, "dashboard-before-kill.png", before)

	killed := time.Now()
	cell.Kill(leader)
	downSel := fmt.Sprintf(`.replica[data-replica="%d"][data-up="false"]`, leader)
	newLeaderSel := fmt.Sprintf(`.replica[data-role="leader"]:not([data-replica="%d"])`, leader)
	if err := within(10*time.Second, chromedp.WaitVisible(downSel), chromedp.WaitVisible(newLeaderSel)); err != nil {
		t.Fatalf("dashboard did not show the leader change within 10s: %v", err)
	}
	t.Logf("dashboard showed the new leader %v after the kill", time.Since(killed).Round(time.Millisecond))
	shown, err := chromedp.Run(ctx, chromedp.Text(`#leader-id`))
	if err != nil {
		t.Fatal(err)
	}
	if strings.TrimSpace(shown) == fmt.Sprint(leader) {
		t.Fatalf("leader shown as %q after replica %d was killed", shown, leader)
	}
	// Let the flow view draw the new leader's Phase 1 and Phase 2.
	if err := within(10*time.Second, chromedp.WaitVisible(`#flow-svg g.msg[data-type="accept"]`)); err != nil {
		t.Fatalf("the flow view shows no accepts after the leader change: %v", err)
	}
	after, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	writeArtifact(t, "dashboard-after-kill.png", after)
}

func writeArtifact(t *testing.T, name string, data []byte) {
	t.Helper()
	path := filepath.Join(artifactDir(t), name)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("artifact: %s", path)
}

// TestClusterStatusDuringLeaderKill: GET /v1/cluster, asked of a survivor
// while the leader is killed, names the new leader and marks the old one
// down, on every surviving replica.
func TestClusterStatusDuringLeaderKill(t *testing.T) {
	cell := testcell.Start(t, testcell.Options{})
	leader := cell.WaitLeader(20 * time.Second)
	v, err := cell.Cluster(context.Background(), leader%5+1)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Replicas) != 5 || v.Leader != fmt.Sprint(leader) {
		t.Fatalf("before the kill: %+v", v)
	}
	for _, r := range v.Replicas {
		if !r.Up {
			t.Fatalf("replica %s down before the kill: %+v", r.ID, v)
		}
	}
	cell.Kill(leader)
	for _, r := range cell.Replicas {
		if r.ID == leader {
			continue
		}
		eventually(t, 10*time.Second, fmt.Sprintf("replica %d to name a new leader and mark %d down", r.ID, leader), func() bool {
			v, err := cell.Cluster(context.Background(), r.ID)
			if err != nil || v.Leader == "" || v.Leader == fmt.Sprint(leader) {
				return false
			}
			for _, rep := range v.Replicas {
				if rep.ID == fmt.Sprint(leader) && (rep.Up || rep.Role != "down") {
					return false
				}
				if rep.ID == v.Leader && rep.Role != "leader" {
					return false
				}
			}
			return true
		})
	}
}
