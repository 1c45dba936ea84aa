package scripts

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// A stand-in for the go command: go-test.sh's logic is in parsing go test's
// output and deciding on a rerun, which a real failing run cannot produce on
// demand. The first call prints a failed run; later calls (the reruns) are
// recorded and exit with $FAKE_RERUN_RC.
const fakeGo = `#!/bin/bash
echo "$@" >> "$FAKE_DIR/calls"
if [ ! -f "$FAKE_DIR/first" ]; then
  touch "$FAKE_DIR/first"
  [ -n "$FAKE_WEDGE" ] && echo "2026-11-21T21:20:00Z pid=1 detached=3 reason=x" >> "$WEDGES"
  cat "$FAKE_DIR/output"
  exit 1
fi
exit ${FAKE_RERUN_RC:-0}
`

const failedRun = `--- FAIL: TestProbe (2.01s)
    probe_test.go:109: unavailable
    --- FAIL: TestProbe/sub (0.00s)
panic: test timed out after 1h0m0s
	running tests:
		TestReplicate (58m11s)

goroutine 203 [running]:
FAIL	example/agent	3600.014s
ok  	example/api	0.044s
--- FAIL: TestX (1s)
FAIL
FAIL	example/bench	61s
?   	example/doc	[no test files]
panic: boom
FAIL	example/snapshot	1s
FAIL
`

func runGoTest(t *testing.T, wedge bool, rerunRC string) (string, []string, error) {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{"go": fakeGo, "output": failedRun} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("./go-test.sh")
	cmd.Env = append(os.Environ(), "GO="+filepath.Join(dir, "go"), "FAKE_DIR="+dir,
		"WEDGES="+filepath.Join(dir, "wedges"), "FAKE_RERUN_RC="+rerunRC)
	if wedge {
		cmd.Env = append(cmd.Env, "FAKE_WEDGE=1")
	}
	out, err := cmd.CombinedOutput()
	calls, _ := os.ReadFile(filepath.Join(dir, "calls"))
	return string(out), strings.Split(strings.TrimSpace(string(calls)), "\n"), err
}

func TestGoTestFailsWithoutWedge(t *testing.T) {
	out, calls, err := runGoTest(t, false, "0")
	if err == nil {
		t.Fatalf("failed run without a zfs-fuse restart passed:\n%s", out)
	}
	if len(calls) != 1 {
		t.Errorf("calls %q: want the one run, no rerun", calls)
	}
}

func TestGoTestRerunsFailedTestsAfterWedge(t *testing.T) {
	out, calls, err := runGoTest(t, true, "0")
	if err != nil {
		t.Fatalf("rerun passed but the script failed: %v\n%s", err, out)
	}
	want := []string{
		"test -count=1 -timeout 45m ./...",
		"test -count=1 -timeout 45m -run ^(TestProbe|TestReplicate)$ example/agent",
		"test -count=1 -timeout 45m -run ^(TestX)$ example/bench",
		"test -count=1 -timeout 45m example/snapshot",
	}
	if strings.Join(calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("go calls:\n%s\nwant:\n%s", strings.Join(calls, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(out, "zfs-fuse was restarted 1 time(s)") || !strings.Contains(out, "pid=1 detached=3") {
		t.Errorf("output does not report the restart:\n%s", out)
	}
}

func TestGoTestFailsWhenRerunFails(t *testing.T) {
	out, calls, err := runGoTest(t, true, "1")
	if err == nil {
		t.Fatalf("failing rerun passed:\n%s", out)
	}
	if len(calls) != 4 {
		t.Errorf("calls %q: want the run and three reruns", calls)
	}
}
