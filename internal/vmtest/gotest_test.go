package vmtest

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func TestRunPattern(t *testing.T) {
	for name, want := range map[string]string{
		"TestA":            "^TestA$",
		"TestA/sub_case":   "^TestA$/^sub_case$",
		"TestA/x.y+(1)":    `^TestA$/^x\.y\+\(1\)$`,
		"TestMatrix/a/b c": "^TestMatrix$/^a$/^b c$",
	} {
		if got := runPattern(name); got != want {
			t.Errorf("runPattern(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestGoTestScript(t *testing.T) {
	s := goTestScript(GoTest{Run: "^TestX$", Setup: "modprobe zfs", Env: map[string]string{"B": "it's", "A": "1"},
		Args: []string{"-test.short"}, Timeout: 5 * time.Minute})
	for _, want := range []string{
		"(\nset -e\nmodprobe zfs\n) || { rc=$?; echo \"gotest: setup failed: $rc\"; exit 100; }\n",
		"export CI=true FLOCKER_VM_GUEST=1\nexport A='1'\nexport B='it'\\''s'\n",
		"{ '/share/pkg.test' '-test.v' '-test.count=1' '-test.timeout=4m30s' '-test.run=^TestX$' '-test.short' 2>&1; echo $? >/out/test.rc; } | tee /out/test.out\n",
		"rc=$(cat /out/test.rc)\n",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("script lacks %q:\n%s", want, s)
		}
	}
}

// One guest runs the fixture package: a passing test that checks the
// promised environment, and one that fails on purpose.
func TestRunGoTestInGuest(t *testing.T) {
	img := RequireImages(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	res, err := RunGoTest(ctx, GoTest{
		Images:  img,
		Dir:     "testdata/gotest",
		Setup:   "echo yes >/tmp/setup-ran",
		Files:   map[string][]byte{"extra/file": []byte("shipped")},
		Env:     map[string]string{"EXTRA": "it's here"},
		Timeout: 4 * time.Minute,
		Log:     testLogger(t),
	})
	if err != nil {
		t.Fatalf("RunGoTest: %v", err)
	}
	t.Logf("guest run took %v; output:\n%s", res.Elapsed.Round(time.Millisecond), res.Output)
	if res.Passed || res.ExitCode != 1 {
		t.Errorf("passed=%v exit=%d, want a failure with exit 1", res.Passed, res.ExitCode)
	}
	for _, want := range []string{"--- PASS: TestInGuest", "guest checks done", "--- FAIL: TestFailsOnPurpose", "failing on purpose"} {
		if !strings.Contains(res.Output, want) {
			t.Errorf("output lacks %q", want)
		}
	}

	res, err = RunGoTest(ctx, GoTest{Images: img, Dir: "testdata/gotest", Setup: "exit 3", Timeout: 2 * time.Minute, Log: testLogger(t)})
	if err == nil || res == nil || res.Passed || !strings.Contains(res.Console, "gotest: setup failed: 3") {
		t.Errorf("a failing setup: err=%v res=%+v", err, res)
	}
}

func testLogger(t *testing.T) *slog.Logger { return slog.New(slog.NewTextHandler(tLogWriter{t}, nil)) }
