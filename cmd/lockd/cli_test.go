package main

import (
	"bytes"
	"errors"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/lockd/lockd/internal/testcell"
)

// lockdRun runs the real lockd binary against the cell and returns its exit
// status and output.
func lockdRun(t *testing.T, cell *testcell.Cell, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(testcell.Binary(t), args...)
	cmd.Env = append(cmd.Environ(), "LOCKD_ENDPOINTS="+strings.Join(cell.URLs(), ","))
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String()
	}
	t.Fatalf("running lockd %v: %v", args, err)
	return -1, ""
}

func TestCLIExitStatuses(t *testing.T) {
	cell := testcell.Start(t, testcell.Options{})
	cell.WaitLeader(20 * time.Second)

	if code, out := lockdRun(t, cell, "put", "cli/key", "v1"); code != 0 || !strings.Contains(out, "content_generation 1") {
		t.Fatalf("put: %d %s", code, out)
	}
	if code, out := lockdRun(t, cell, "get", "cli/key"); code != 0 || out != "v1" {
		t.Fatalf("get: %d %q", code, out)
	}
	if code, out := lockdRun(t, cell, "put", "--if-generation", "5", "cli/key", "v2"); code != 1 || !strings.Contains(out, "precondition") {
		t.Fatalf("failed compare-and-set: %d %s", code, out)
	}
	if code, out := lockdRun(t, cell, "get", "cli/missing"); code != 1 || !strings.Contains(out, "not") {
		t.Fatalf("get of a missing node: %d %s", code, out)
	}
	// The command's status passes through; it sees its sequencer.
	code, out := lockdRun(t, cell, "lock", "cli/job", "--", "sh", "-c", `test -n "$LOCKD_SEQUENCER" && exit 7`)
	if code != 7 {
		t.Fatalf("lock -- exit 7: got %d %s", code, out)
	}
	// While another lockd lock holds it, a try (--wait 0) is refused with 3.
	holder := exec.Command(testcell.Binary(t), "lock", "cli/job", "--", "sleep", "30")
	holder.Env = append(holder.Environ(), "LOCKD_ENDPOINTS="+strings.Join(cell.URLs(), ","))
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = holder.Process.Kill(); _ = holder.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out = lockdRun(t, cell, "lock", "--wait", "0", "cli/job", "--", "true")
		if code == exitNotAcquired {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("try while held: got %d %s, want %d", code, out, exitNotAcquired)
		}
		time.Sleep(50 * time.Millisecond) // the holder may not hold it yet
	}
	if code, out := lockdRun(t, cell, "lock", "cli/job"); code != exitUsage {
		t.Fatalf("lock without a command: %d %s, want %d", code, out, exitUsage)
	}
	if code, out := lockdRun(t, cell, "status"); code != 0 || !strings.Contains(out, "leader") || strings.Count(out, "http://") != 5 {
		t.Fatalf("status: %d %s", code, out)
	}
}
