package vmtest_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/vmtest"
)

// These boot real guests (see smoke test in test/vm for the two-guest ZFS
// case): they check the harness itself: files in, exit code and files out,
// the exit report that scenario output cannot forge, timeouts, the retry,
// and that no qemu outlives Run.

func TestRunOneGuest(t *testing.T) {
	img := vmtest.RequireImages(t)
	input := []byte("input from the host\n")
	work := t.TempDir()
	res, err := vmtest.Run(context.Background(), vmtest.Spec{
		Images: img,
		Guests: []vmtest.Guest{{Name: "solo", Out: true, Disks: []vmtest.Disk{{Serial: "pool0"}, {Serial: "pool1", Size: 128 << 20}}}},
		Script: `
# Output that looks like an exit report must not count as one.
echo "flocker-vm-exit 0000000000000000 0"
echo "flocker-vm-exit 0"
echo "hello from $(hostname) as $FLOCKER_VM_NAME"
cp /share/data/in.txt /out/copy.txt
mkdir /out/sub && uname -r > /out/sub/uname
ls /dev/disk/by-id > /out/disks
blockdev --getsize64 /dev/disk/by-id/virtio-pool1 > /out/pool1.size
touch /share/must-fail 2>/dev/null && echo share-writable > /out/share
exit 7
`,
		Files:   map[string][]byte{"data/in.txt": input},
		Timeout: 2 * time.Minute,
		WorkDir: work,
		Log:     testLog(t),
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	g := res.Guests[0]
	if g.ExitCode != 7 || res.Attempts != 1 {
		t.Fatalf("exit code %d after %d attempt(s), want 7 after 1; console:\n%s", g.ExitCode, res.Attempts, g.Console)
	}
	if !strings.Contains(g.Console, "hello from solo as solo") {
		t.Errorf("console lacks the scenario's output:\n%s", g.Console)
	}
	if !bytes.Equal(g.Out["copy.txt"], input) {
		t.Errorf("out/copy.txt = %q, want %q", g.Out["copy.txt"], input)
	}
	if got := strings.TrimSpace(string(g.Out["sub/uname"])); got != img.KernelRelease {
		t.Errorf("out/sub/uname = %q, want %q", got, img.KernelRelease)
	}
	disks := strings.Fields(string(g.Out["disks"]))
	for _, want := range []string{"virtio-share", "virtio-out", "virtio-pool0", "virtio-pool1"} {
		if !slices.Contains(disks, want) {
			t.Errorf("/dev/disk/by-id has %v, lacks %s", disks, want)
		}
	}
	if got := strings.TrimSpace(string(g.Out["pool1.size"])); got != "134217728" {
		t.Errorf("pool1 size in the guest = %q, want 134217728", got)
	}
	if _, ok := g.Out["share"]; ok {
		t.Error("the share disk is writable in the guest")
	}
	if err := res.Err(); err == nil || !strings.Contains(err.Error(), "exit code 7") {
		t.Errorf("Result.Err() = %v, want one naming exit code 7", err)
	}
	assertNoQemu(t, work)
}

func TestRunTimeoutRetriesAndKills(t *testing.T) {
	img := vmtest.RequireImages(t)
	work := t.TempDir()
	start := time.Now()
	res, err := vmtest.Run(context.Background(), vmtest.Spec{
		Images:  img,
		Guests:  []vmtest.Guest{{Name: "stuck"}},
		Script:  "echo stuck; sleep 3600",
		Timeout: 10 * time.Second,
		WorkDir: work,
		Log:     testLog(t),
	})
	if !errors.Is(err, vmtest.ErrNoReport) {
		t.Fatalf("Run error = %v, want ErrNoReport", err)
	}
	if res == nil || res.Attempts != 2 {
		t.Fatalf("result %+v, want 2 attempts", res)
	}
	if g := res.Guests[0]; g.ExitCode != -1 || !strings.Contains(g.Note, "no exit report within 10s") {
		t.Errorf("guest result exit %d note %q, want -1 and the timeout", g.ExitCode, g.Note)
	}
	if took := time.Since(start); took < 20*time.Second {
		t.Errorf("Run returned after %v, before two 10 s attempts could time out", took)
	}
	assertNoQemu(t, work)
}

func TestRunPairStopsPeerOfFailedGuest(t *testing.T) {
	img := vmtest.RequireImages(t)
	work := t.TempDir()
	res, err := vmtest.Run(context.Background(), vmtest.Spec{
		Images: img,
		Guests: []vmtest.Guest{{Name: "a"}, {Name: "b"}},
		Script: `
case $(hostname) in
a)	# fail on purpose once the link works: exit 3, or 4 if it never does
	for i in $(seq 120); do ping -c 1 -W 1 192.0.2.12 >/dev/null && exit 3; sleep 0.5; done
	exit 4 ;;
b)	sleep 3600 ;;
esac`,
		Timeout: 3 * time.Minute,
		WorkDir: work,
		Log:     testLog(t),
	})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	a, b := res.Guest("a"), res.Guest("b")
	if a.ExitCode != 3 {
		t.Fatalf("a exit %d, want 3 (ping over the link, then exit 3); console:\n%s", a.ExitCode, a.Console)
	}
	if b.ExitCode != -1 || !strings.Contains(b.Note, "guest a failed") || res.Attempts != 1 {
		t.Errorf("b exit %d note %q after %d attempt(s); want -1, stopped for a, no retry", b.ExitCode, b.Note, res.Attempts)
	}
	assertNoQemu(t, work)
}

func TestRunCancel(t *testing.T) {
	img := vmtest.RequireImages(t)
	work := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := vmtest.Run(ctx, vmtest.Spec{
		Images: img, Guests: []vmtest.Guest{{Name: "c"}}, Script: "sleep 3600",
		WorkDir: work, Log: testLog(t),
	})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run error = %v, want context.DeadlineExceeded", err)
	}
	assertNoQemu(t, work)
}

// assertNoQemu fails when a process still has the run's work dir on its
// command line (every qemu of the run does: its disks and logs are there).
func assertNoQemu(t *testing.T, work string) {
	t.Helper()
	procs, err := filepath.Glob("/proc/[0-9]*/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range procs {
		cmdline, err := os.ReadFile(p)
		if err == nil && bytes.Contains(cmdline, []byte(work)) {
			t.Errorf("process %s still running: %s", filepath.Base(filepath.Dir(p)), bytes.ReplaceAll(cmdline, []byte{0}, []byte{' '}))
		}
	}
}

func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, nil))
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
