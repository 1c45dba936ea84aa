package snapshot

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/rig"
	"github.com/flockerha/flocker/internal/vmtest"
)

// updateCaptures rewrites testdata/stderr/DIALECT from a fresh capture.sh run
// (TestCaptureZFSFuse for zfs-fuse, TestOpenZFSInGuest for OpenZFS).
var updateCaptures = flag.Bool("update-captures", false, "rewrite testdata/stderr from fresh capture.sh runs")

// guestTests are the tests the guest runs, each of which must pass there,
// subtests included: the dialect-dependent subtests of TestZFSAdapter take
// their OpenZFS branch in the guest.
var guestTests = []string{
	"TestZFSAdapter", "TestZFSPoolFull", "TestDetect", "TestDetectAgreesWithTheTool",
}

// guestSubtests must show up as passed: they are where bookmarks, resumable
// receives, send -nP, written and list -p are proven on OpenZFS, and where
// gozfs_routing checks that every go-zfs-backed operation ran through go-zfs.
var guestSubtests = []string{
	"datasets", "snapshots", "holds", "rollback", "send_receive", "bad_streams", "cancel",
	"backpressure", "pools", "written", "estimate", "bookmarks", "resumable", "gozfs_routing",
}

// TestOpenZFSInGuest runs this package's ZFS tests against real OpenZFS 2.3
// in a qemu guest (see internal/vmtest): the test binary is built here with
// `go test -c` and run in the guest as root with CI=true, so nothing skips.
// The guest also runs capture.sh, and its fresh messages are checked
// against the parser's expectations, as the committed ones are.
func TestOpenZFSInGuest(t *testing.T) {
	img := vmtest.RequireImages(t)
	dir := t.TempDir()
	bin := filepath.Join(dir, "snapshot.test")
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = "/usr/local/go/bin/go" // where this machine's Go lives (COMMON.md)
	}
	build := exec.Command(goTool, "test", "-c", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0") // static: the guest has only what the image holds
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the test binary: %v\n%s", err, out)
	}
	testBin, err := os.ReadFile(bin)
	if err != nil {
		t.Fatal(err)
	}
	capture, err := os.ReadFile(filepath.Join("testdata", "stderr", "capture.sh"))
	if err != nil {
		t.Fatal(err)
	}
	script := fmt.Sprintf(`set -u
modprobe zfs
# capture.sh's permission case runs zfs as nobody.
echo 'nobody:x:65534:65534:nobody:/:/bin/sh' >>/etc/passwd
echo 'nogroup:x:65534:' >>/etc/group
# Test pools are sparse files: keep them on a disk, not in RAM.
mke2fs -q /dev/disk/by-id/virtio-scratch
mkdir -p /scratch && mount /dev/disk/by-id/virtio-scratch /scratch
zpool create -f -o cachefile=none cap1 /dev/disk/by-id/virtio-cap1
zpool create -f -o cachefile=none cap2 /dev/disk/by-id/virtio-cap2
zpool create -f -o cachefile=none capsmall /dev/disk/by-id/virtio-capsmall
sh /share/capture.sh cap1 cap2 capsmall /out/stderr
echo "capture.sh exit $?"
cd /tmp
rc=0
TMPDIR=/scratch CI=true %s=1 /share/snapshot.test -test.run '^(%s)$' -test.count=1 -test.v -test.timeout=15m >/out/test.log 2>&1 || rc=$?
echo "$rc" >/out/test.rc
tail -n 30 /out/test.log
exit "$rc"
`, kernelZFSEnv, strings.Join(guestTests, "|"))
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := vmtest.Run(ctx, vmtest.Spec{
		Images: img,
		Guests: []vmtest.Guest{{
			Name: "zfs", Out: true, MemoryMiB: 2048, CPUs: 2,
			Disks: []vmtest.Disk{
				{Serial: "scratch", Size: 4 << 30},
				{Serial: "cap1", Size: 1 << 30}, {Serial: "cap2", Size: 1 << 30}, {Serial: "capsmall", Size: 128 << 20},
			},
		}},
		Script:  script,
		Files:   map[string][]byte{"snapshot.test": testBin, "capture.sh": capture},
		Timeout: 20 * time.Minute,
		Log:     testLog(t),
	})
	if err != nil {
		if res != nil {
			for _, g := range res.Guests {
				t.Logf("console of %s:\n%s", g.Name, g.Console)
			}
		}
		t.Fatalf("vm run: %v", err)
	}
	g := res.Guests[0]
	log := string(g.Out["test.log"])
	t.Logf("guest run: %v (%d attempt(s)), zfs %s; test output:\n%s", time.Since(start).Round(time.Second), res.Attempts, img.ZFSVersion, log)
	if err := res.Err(); err != nil {
		t.Fatalf("guest tests failed: %v", err)
	}
	for _, name := range guestTests {
		if !strings.Contains(log, "--- PASS: "+name+" ") {
			t.Errorf("%s did not pass in the guest", name)
		}
	}
	for _, sub := range guestSubtests {
		if !strings.Contains(log, "--- PASS: TestZFSAdapter/"+sub+" ") {
			t.Errorf("TestZFSAdapter/%s did not pass in the guest", sub)
		}
	}
	if regexp.MustCompile(`--- (SKIP|FAIL)`).MatchString(log) {
		t.Errorf("a test skipped or failed in the guest")
	}
	// The OpenZFS branches ran: the guest's dialect has what they need.
	if !strings.Contains(log, "Name:openzfs") || !strings.Contains(log, "Bookmarks:true") || !strings.Contains(log, "ResumableReceive:true") {
		t.Errorf("the guest's dialect is not a full OpenZFS")
	}

	fresh := map[string][]byte{}
	for name, data := range g.Out {
		if rest, ok := strings.CutPrefix(name, "stderr/"); ok {
			fresh[rest] = data
		}
	}
	checkFreshCaptures(t, DialectOpenZFS, fresh)
}

// TestCaptureZFSFuse runs capture.sh against zfs-fuse on three fresh pools
// and checks what the tool prints today against the parser's expectations.
func TestCaptureZFSFuse(t *testing.T) {
	p1 := testPool(t, 256<<20)
	p2 := testPool(t, 256<<20)
	small := testPool(t, rig.MinPoolSize)
	out := t.TempDir()
	cmd := exec.Command("sh", filepath.Join("testdata", "stderr", "capture.sh"), p1.Name, p2.Name, small.Name, out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("capture.sh: %v\n%s", err, b)
	}
	files, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	// The committed files name the pools cap1, cap2 and capsmall, mounted at
	// /cap1, /cap2 and /capsmall, as in the guest.
	repl := strings.NewReplacer(
		p1.Mountpoint, "/cap1", p2.Mountpoint, "/cap2", small.Mountpoint, "/capsmall",
		p1.Name, "cap1", p2.Name, "cap2", small.Name, "capsmall")
	fresh := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(filepath.Join(out, f.Name()))
		if err != nil {
			t.Fatal(err)
		}
		fresh[f.Name()] = []byte(repl.Replace(string(b)))
	}
	checkFreshCaptures(t, DialectZFSFuse, fresh)
}

// checkFreshCaptures judges a fresh capture.sh output like the committed
// one, checks that the same cases failed, and with -update-captures
// replaces the committed files.
func checkFreshCaptures(t *testing.T, dialect string, fresh map[string][]byte) {
	t.Helper()
	var names []string
	for name := range fresh {
		if c, ok := strings.CutSuffix(name, ".txt"); ok {
			names = append(names, c)
		}
	}
	slices.Sort(names)
	if len(names) < 40 {
		t.Fatalf("capture.sh left only %d cases", len(names))
	}
	for _, name := range names {
		c := capturedCase{dialect, name, string(fresh[name+".txt"]), strings.TrimSpace(string(fresh[name+".rc"]))}
		t.Run(name, func(t *testing.T) {
			checkCaptured(t, c, func(name string) ([]byte, error) {
				if b, ok := fresh[name]; ok {
					return b, nil
				}
				return nil, fmt.Errorf("capture.sh left no %s", name)
			})
		})
	}
	committed, _ := filepath.Glob(filepath.Join("testdata", "stderr", dialect, "*.txt"))
	if len(committed) != len(names) {
		t.Errorf("%d cases now, %d committed: update with -update-captures", len(names), len(committed))
	}
	if !*updateCaptures {
		return
	}
	dir := filepath.Join("testdata", "stderr", dialect)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range fresh {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("rewrote %s", dir)
}
