package vmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// GuestEnv is set to "1" in the environment of a test binary that
// RunGoTest runs inside a guest.
const GuestEnv = "FLOCKER_VM_GUEST"

// InGuest reports whether this process is a test binary run by RunGoTest.
func InGuest() bool { return os.Getenv(GuestEnv) == "1" }

// GuestDisk is the path of the disk with the given serial inside a guest.
func GuestDisk(serial string) string { return "/dev/disk/by-id/virtio-" + serial }

// GoTest is a Go test package compiled on the host and run in one guest, as
// root, with CI=true (so nothing skips) and GuestEnv set.
type GoTest struct {
	Images *Images
	// Dir is the package's directory; empty means the working directory,
	// which `go test` sets to the package of the running test.
	Dir string
	// Run selects the tests (-test.run); empty runs all.
	Run string
	// Args are more flags for the test binary (-test.v is always given).
	Args []string
	// Setup is shell run in the guest before the tests (e.g. "modprobe zfs").
	Setup string
	// Files are shipped with the binary under /share/files, keyed by
	// relative path; the package's testdata directory is shipped too, and
	// the tests run in a directory that has it.
	Files map[string][]byte
	Env   map[string]string // more environment for the test binary
	Disks []Disk
	// MemoryMiB and CPUs of the guest (Guest's defaults when zero).
	MemoryMiB, CPUs int
	// Timeout bounds the guest's run (DefaultTimeout when zero); the test
	// binary gets -test.timeout a little below it, so a hang ends with Go's
	// goroutine dump rather than a killed guest.
	Timeout time.Duration
	Log     *slog.Logger
}

// GoTestResult is how the tests went in the guest.
type GoTestResult struct {
	Passed   bool
	ExitCode int    // of the test binary; -1 when it gave none
	Output   string // the test binary's stdout and stderr
	Console  string // the guest's console (kernel messages, setup output)
	Elapsed  time.Duration
}

// guestPkgDir holds the package's testdata in the guest; the tests run there.
const guestPkgDir = "/share/pkg"

// RunGoTest compiles the package (`go test -c`, CGO_ENABLED=0, so static),
// boots one guest with it and runs the selected tests there. An error means
// the run could not happen (compile failure, qemu trouble); failing tests
// are a result (Passed false) with their output.
func RunGoTest(ctx context.Context, g GoTest) (*GoTestResult, error) {
	if g.Images == nil {
		return nil, errors.New("go test in guest: no images")
	}
	if g.Timeout == 0 {
		g.Timeout = DefaultTimeout
	}
	if g.Timeout < time.Minute {
		return nil, fmt.Errorf("go test in guest: timeout %v: want at least a minute (booting takes seconds under TCG)", g.Timeout)
	}
	if g.Log == nil {
		g.Log = slog.New(slog.DiscardHandler)
	}
	for k := range g.Env {
		if !envNameRE.MatchString(k) {
			return nil, fmt.Errorf("go test in guest: environment name %q", k)
		}
	}
	dir := g.Dir
	if dir == "" {
		var err error
		if dir, err = os.Getwd(); err != nil {
			return nil, fmt.Errorf("go test in guest: %w", err)
		}
	}
	work, err := os.MkdirTemp("", "flocker-vm-gotest-")
	if err != nil {
		return nil, fmt.Errorf("go test in guest: %w", err)
	}
	defer os.RemoveAll(work)

	bin := filepath.Join(work, "pkg.test")
	start := time.Now()
	if err := compileTest(ctx, dir, bin); err != nil {
		return nil, err
	}
	g.Log.Info("compiled test binary for the guest", "dir", dir, "took", time.Since(start).Round(time.Millisecond))
	binData, err := os.ReadFile(bin)
	if err != nil {
		return nil, fmt.Errorf("go test in guest: %w", err)
	}
	files := map[string][]byte{"pkg.test": binData}
	for name, data := range g.Files {
		files["files/"+name] = data
	}
	if err := addTestdata(files, dir); err != nil {
		return nil, err
	}

	res, err := Run(ctx, Spec{
		Images: g.Images,
		Guests: []Guest{{Name: "gotest", Disks: g.Disks, Out: true, MemoryMiB: g.MemoryMiB, CPUs: g.CPUs}},
		Script: goTestScript(g),
		Files:  files,
		// The test binary's own timeout ends a hang before this one, so a
		// guest reports, and Run's retry is left for a guest that crashed.
		Timeout: g.Timeout,
		WorkDir: filepath.Join(work, "vm"),
		Log:     g.Log,
	})
	if res == nil {
		return nil, err
	}
	gr := res.Guests[0]
	out := &GoTestResult{ExitCode: -1, Output: string(gr.Out["test.out"]), Console: gr.Console, Elapsed: gr.Elapsed}
	if rc, cerr := strconv.Atoi(strings.TrimSpace(string(gr.Out["test.rc"]))); cerr == nil {
		out.ExitCode = rc
	}
	out.Passed = out.ExitCode == 0 && gr.ExitCode == 0
	if err != nil {
		return out, err
	}
	if out.ExitCode < 0 {
		return out, fmt.Errorf("go test in guest: the test binary left no exit code (guest exit %d, %s)", gr.ExitCode, gr.Note)
	}
	return out, nil
}

var envNameRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func compileTest(ctx context.Context, dir, bin string) error {
	cmd := exec.CommandContext(ctx, "go", "test", "-c", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("go test in guest: compiling %s: %w: %s", dir, err, bytes.TrimSpace(out))
	}
	return nil
}

// addTestdata ships dir/testdata as pkg/testdata.
func addTestdata(files map[string][]byte, dir string) error {
	root := filepath.Join(dir, "testdata")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		files["pkg/"+filepath.ToSlash(rel)] = data
		return nil
	})
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("go test in guest: shipping testdata: %w", err)
	}
	return nil
}

// goTestScript is the guest's scenario: setup, then the test binary with
// its output and exit code on the out disk. The scenario's exit code is
// the setup's failure or the binary's.
func goTestScript(g GoTest) string {
	var b strings.Builder
	b.WriteString("set -u\n")
	if g.Setup != "" {
		b.WriteString("(\nset -e\n" + g.Setup + "\n) || { rc=$?; echo \"gotest: setup failed: $rc\"; exit 100; }\n")
	}
	b.WriteString("export CI=true " + GuestEnv + "=1\n")
	for _, k := range slices.Sorted(maps.Keys(g.Env)) {
		b.WriteString("export " + k + "=" + shellQuote(g.Env[k]) + "\n")
	}
	args := []string{"/share/pkg.test", "-test.v", "-test.count=1",
		"-test.timeout=" + (g.Timeout - 30*time.Second).String()}
	if g.Run != "" {
		args = append(args, "-test.run="+g.Run)
	}
	args = append(args, g.Args...)
	for i := range args {
		args[i] = shellQuote(args[i])
	}
	// /share/pkg exists only when testdata was shipped; /tmp otherwise.
	b.WriteString("cd " + guestPkgDir + " 2>/dev/null || cd /tmp\n")
	// The output goes to the console too, to follow a long run in
	// console.log; the exit code travels through a file past the pipe.
	b.WriteString("{ " + strings.Join(args, " ") + " 2>&1; echo $? >/out/test.rc; } | tee /out/test.out\n")
	b.WriteString("rc=$(cat /out/test.rc)\necho \"gotest: test binary exit $rc\"\nexit $rc\n")
	return b.String()
}

// shellQuote quotes s for sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// RunInGuest runs the calling test inside a guest, for tests that need what
// only the guests have (kernel OpenZFS, fentry, kprobes). Use it first thing:
//
//	if !vmtest.RunInGuest(t, vmtest.GoTest{Setup: "modprobe zfs", Disks: ...}) {
//		return
//	}
//	// the test's body, which runs in the guest
//
// On the host it compiles the test's package, runs just this test in a
// guest (the images are required: a skip outside CI, a failure in CI),
// logs the guest's output and fails when the test failed there; it returns
// false. In the guest it returns true at once.
func RunInGuest(t *testing.T, g GoTest) bool {
	t.Helper()
	if InGuest() {
		return true
	}
	g.Images = RequireImages(t)
	g.Run = runPattern(t.Name())
	if g.Log == nil {
		g.Log = slog.New(slog.NewTextHandler(tLogWriter{t}, nil))
	}
	res, err := RunGoTest(context.Background(), g)
	if res != nil {
		t.Logf("in the guest (%v, test binary exit %d):\n%s", res.Elapsed.Round(time.Second), res.ExitCode, res.Output)
	}
	if err != nil {
		if res != nil {
			t.Logf("guest console:\n%s", tail(res.Console, 60))
		}
		t.Fatalf("running %s in a guest: %v", t.Name(), err)
	}
	if !res.Passed {
		t.Logf("guest console:\n%s", tail(res.Console, 30))
		t.Fatalf("%s failed in the guest", t.Name())
	}
	if !strings.Contains(res.Output, "--- PASS: "+strings.SplitN(t.Name(), "/", 2)[0]) {
		t.Fatalf("the guest's output does not show %s passing: did -test.run select it?", t.Name())
	}
	return false
}

// runPattern is the -test.run pattern selecting exactly the named test
// (subtest levels are separated by '/').
func runPattern(name string) string {
	parts := strings.Split(name, "/")
	for i, p := range parts {
		parts[i] = "^" + regexp.QuoteMeta(p) + "$"
	}
	return strings.Join(parts, "/")
}

type tLogWriter struct{ t *testing.T }

func (w tLogWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
