package dockerdrill

import (
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anishathalye/porcupine"

	"github.com/lockd/lockd/internal/config"
)

// These tests check the drill's own checkers (no Docker needed): each must
// accept a correct history and catch the violation it exists for.

func op(client int, in regInput, out regOutput, call, ret int64) porcupine.Operation {
	return porcupine.Operation{ClientId: client, Input: in, Output: out, Call: call, Return: ret}
}

func TestRegisterModel(t *testing.T) {
	const k = "/ls/drill/drill/reg/k0"
	read := func(val string, gen uint64) (regInput, regOutput) {
		return regInput{Op: opRead, Key: k}, regOutput{OK: true, Val: val, Gen: gen}
	}
	write := func(val string, gen uint64) (regInput, regOutput) {
		return regInput{Op: opWrite, Key: k, Val: val}, regOutput{OK: true, Val: val, Gen: gen}
	}
	cases := []struct {
		name string
		hist []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"sequential", []porcupine.Operation{
			op(0, regInput{Op: opWrite, Key: k, Val: "a"}, regOutput{OK: true, Val: "a", Gen: 2}, 0, 10),
			op(1, regInput{Op: opRead, Key: k}, regOutput{OK: true, Val: "a", Gen: 2}, 20, 30),
			op(0, regInput{Op: opCAS, Key: k, Val: "b", Expect: 2}, regOutput{OK: true, Val: "b", Gen: 3}, 40, 50),
			op(1, regInput{Op: opCAS, Key: k, Val: "c", Expect: 2}, regOutput{}, 60, 70),
		}, porcupine.Ok},
		{"stale read after an acknowledged write", func() []porcupine.Operation {
			wi, wo := write("a", 2)
			ri, ro := read(initValue, 1)
			return []porcupine.Operation{op(0, wi, wo, 0, 10), op(1, ri, ro, 20, 30)}
		}(), porcupine.Illegal},
		{"a write counted twice", func() []porcupine.Operation {
			wi, wo := write("a", 3)
			return []porcupine.Operation{op(0, wi, wo, 0, 10)}
		}(), porcupine.Illegal},
		{"an unanswered write may land late", []porcupine.Operation{
			op(0, regInput{Op: opWrite, Key: k, Val: "x"}, regOutput{Unknown: true}, 0, math.MaxInt64),
			op(1, regInput{Op: opRead, Key: k}, regOutput{OK: true, Val: initValue, Gen: 1}, 10, 20),
			op(1, regInput{Op: opRead, Key: k}, regOutput{OK: true, Val: "x", Gen: 2}, 30, 40),
		}, porcupine.Ok},
		{"an unanswered write seen by a read took effect before it", []porcupine.Operation{
			op(0, regInput{Op: opWrite, Key: k, Val: "x"}, regOutput{Unknown: true}, 0, math.MaxInt64),
			op(1, regInput{Op: opRead, Key: k}, regOutput{OK: true, Val: "x", Gen: 2}, 10, 20),
			op(1, regInput{Op: opRead, Key: k}, regOutput{OK: true, Val: initValue, Gen: 1}, 30, 40),
		}, porcupine.Illegal},
		{"a failed CAS that should have applied", []porcupine.Operation{
			op(0, regInput{Op: opCAS, Key: k, Val: "x", Expect: 1}, regOutput{}, 0, 10),
		}, porcupine.Illegal},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := porcupine.CheckOperationsTimeout(registerModel, tightenUnknown(tc.hist), 0); got != tc.want {
				t.Fatalf("check = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestCheckLocks(t *testing.T) {
	const p = "/ls/drill/drill/locks/l0"
	clean := []grant{
		{Session: "a", Path: p, ReqID: "1", Gen: 1, AcqCall: 0, AcqRet: 10, Proven: 40},
		{Session: "b", Path: p, ReqID: "2", Gen: 2, AcqCall: 5, AcqRet: 50, Proven: 70},
		{Session: "a", Path: p, ReqID: "3", Gen: 3, AcqCall: 60, AcqRet: 80},
	}
	// The same session granted the same generation twice (a re-acquire of
	// what it holds) is one hold, not two holders.
	clean = append(clean, grant{Session: "a", Path: p, ReqID: "4", Gen: 3, AcqCall: 90, AcqRet: 95})
	cleanFences := []fence{{Path: p, Gen: 2, Prev: 1, Valid: true, Current: 2, Call: 60, Ret: 65}}
	if bad := checkLocks(clean, cleanFences); len(bad) != 0 {
		t.Fatalf("clean history flagged: %v", bad)
	}
	cases := []struct {
		name   string
		grants []grant
		fences []fence
		want   string
	}{
		{"overlapping holds", []grant{
			{Session: "a", Path: p, Gen: 1, AcqRet: 10, Proven: 60},
			{Session: "b", Path: p, Gen: 2, AcqCall: 5, AcqRet: 50},
		}, nil, "double holders"},
		{"generation granted twice", []grant{
			{Session: "a", Path: p, ReqID: "1", Gen: 4, AcqRet: 10},
			{Session: "b", Path: p, ReqID: "2", Gen: 4, AcqRet: 20},
		}, nil, "granted twice"},
		{"generations against real time", []grant{
			{Session: "a", Path: p, Gen: 1, AcqCall: 100, AcqRet: 110},
			{Session: "b", Path: p, Gen: 2, AcqCall: 0, AcqRet: 50},
		}, nil, "before generation 1"},
		{"two valid sequencers in one answer", nil, []fence{
			{Path: p, Gen: 2, Prev: 1, Valid: true, PrevValid: true, Current: 2, PrevCurrent: 2},
		}, "both valid"},
		{"valid but not current", nil, []fence{{Path: p, Gen: 2, Valid: true, Current: 3}}, "current_generation is 3"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad := checkLocks(tc.grants, tc.fences)
			if len(bad) == 0 || !strings.Contains(strings.Join(bad, "\n"), tc.want) {
				t.Fatalf("problems = %q, want one mentioning %q", bad, tc.want)
			}
		})
	}
}

// TestExampleConfigs: the replica configuration the README shows for five
// hosts loads and validates (its TLS files stand in for real ones).
func TestExampleConfigs(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(moduleRoot(), "configs", "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no example configuration in configs/")
	}
	env := map[string]string{}
	for _, name := range []string{"LOCKD_TLS_CERT_FILE", "LOCKD_TLS_KEY_FILE", "LOCKD_TLS_CA_FILE"} {
		f := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
		env[name] = f
	}
	for _, f := range files {
		cfg, err := config.Load(f, func(k string) string { return env[k] })
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(cfg.Replicas) != 5 {
			t.Fatalf("%s: %d replicas, want 5", f, len(cfg.Replicas))
		}
	}
	if _, err := os.Stat(filepath.Join(moduleRoot(), "configs", "cell-docker.sh")); err != nil {
		t.Fatal(err)
	}
}

// TestComposeFile: docker-compose (when installed; no engine needed) accepts
// configs/docker-compose.yml.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("docker-compose"); err != nil {
		t.Skip("no docker-compose on PATH")
	}
	cmd := exec.Command("docker-compose", "-p", "lockd-check", "-f", filepath.Join(moduleRoot(), "configs", "docker-compose.yml"), "config", "-q")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
}
