package rig_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/flockerha/flocker/internal/rig"
	"github.com/flockerha/flocker/internal/rig/rigtest"
	"github.com/flockerha/flocker/internal/testutil"
)

// buildForChild builds what the child tests leave behind on purpose: a pool
// with a dataset, a network, and a process in host A that keeps a file in
// the dataset open. It prints the names for the parent on a "RIG" line.
func buildForChild(t *testing.T) {
	runDir := os.Getenv(childRunDirEnv)
	p := rigtest.Pool(t, rig.PoolOptions{Size: 128 << 20, RunDir: runDir})
	ds := rigtest.Dataset(t, p, "app", nil)
	n := rigtest.Network(t, rig.NetworkOptions{RunDir: runDir})
	// The process keeps a file in the dataset open until it is killed: the
	// network's teardown must kill it before the pool can go.
	cmd := n.A.Command(context.Background(), "sh", "-c", `exec 3>"$1"; exec sleep 1000`, "sh", filepath.Join(ds.Mountpoint, "held"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range n.Hosts() {
		names = append(names, h.NS.Name)
	}
	names = append(names, n.Switch.Name)
	fmt.Printf("RIG pool=%s dir=%s namespaces=%s pid=%d\n", p.Name, p.Dir, strings.Join(names, ","), cmd.Process.Pid)
}

func TestChildFailingTest(t *testing.T) {
	if os.Getenv(childEnv) != "fail" {
		t.Fatal("runs only as the child of TestCleanupAfterFailedTest")
	}
	buildForChild(t)
	t.Fatal("deliberate failure with a rig built")
}

func TestChildCrash(t *testing.T) {
	if os.Getenv(childEnv) != "crash" {
		t.Fatal("runs only as the child of TestSweepAfterCrash")
	}
	buildForChild(t)
	// A crash: no cleanup, no deferred calls.
	syscall.Kill(os.Getpid(), syscall.SIGKILL)
	select {}
}

// leftovers reports which of the things a child built still exist.
func leftovers(t *testing.T, vals map[string]string) []string {
	t.Helper()
	var left []string
	if hasPool(t, vals["pool"]) {
		left = append(left, "pool "+vals["pool"])
	}
	if exists(vals["dir"]) {
		left = append(left, "directory "+vals["dir"])
	}
	for _, ns := range strings.Split(vals["namespaces"], ",") {
		if exists(filepath.Join(rig.NetnsDir, ns)) {
			left = append(left, "namespace "+ns)
		}
	}
	if pid, _ := strconv.Atoi(vals["pid"]); pid > 0 && liveComm(pid) == "sleep" {
		left = append(left, fmt.Sprintf("process %d", pid))
	}
	return left
}

func childNames(t *testing.T, out string) map[string]string {
	t.Helper()
	vals := childValues(out)
	for _, k := range []string{"pool", "dir", "namespaces", "pid"} {
		if vals[k] == "" {
			t.Fatalf("child did not report %s; output:\n%s", k, out)
		}
	}
	return vals
}

// A test that fails with a pool and a network built still removes them
// (t.Cleanup runs on failure), including the process holding the pool busy.
func TestCleanupAfterFailedTest(t *testing.T) {
	testutil.RequireRoot(t)
	runDir := t.TempDir()
	out, err := runChild(t, []string{childEnv + "=fail", childRunDirEnv + "=" + runDir, "CI=true"}, false,
		"-test.run=^TestChildFailingTest$", "-test.skip=", "-test.v")
	t.Logf("child output:\n%s", out)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(out, "deliberate failure") {
		t.Fatalf("child: %v, want it to fail deliberately", err)
	}
	if left := leftovers(t, childNames(t, out)); len(left) > 0 {
		t.Errorf("left behind by a failed test: %v", left)
	}
	if entries, _ := os.ReadDir(filepath.Join(runDir, "owners")); len(entries) != 0 {
		t.Errorf("owner records left: %v", entries)
	}
}

// What a crashed run left (no cleanup at all) neither breaks a new run nor
// stays: the next NewNetwork sweeps it, process, pool and all.
func TestSweepAfterCrash(t *testing.T) {
	testutil.RequireRoot(t)
	// A private RunDir: only this test's sweep may see the crashed run's
	// records, so checking that they leaked is not racing other packages.
	runDir := t.TempDir()
	out, err := runChild(t, []string{childEnv + "=crash", childRunDirEnv + "=" + runDir, "CI=true"}, false,
		"-test.run=^TestChildCrash$", "-test.skip=", "-test.v")
	t.Logf("child output:\n%s", out)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child: %v, want it killed by SIGKILL", err)
	}
	vals := childNames(t, out)
	t.Cleanup(func() {
		// Should the sweep under test fail, do not leave the crash's
		// remains on the machine.
		rig.Sweep(context.Background(), rig.SweepOptions{RunDir: runDir})
	})
	if left := leftovers(t, vals); len(left) != 7 {
		t.Fatalf("the crash should have left its pool, directory, 4 namespaces and process; found %v", left)
	}
	n := rigtest.Network(t, rig.NetworkOptions{RunDir: runDir})
	ab := startEcho(t, n.B, n.B.IPv4.Addr())
	if err := reaches(n.A, n.A.IPv4.Addr(), ab); err != nil {
		t.Errorf("new network after a crash: a -> b: %v", err)
	}
	if left := leftovers(t, vals); len(left) > 0 {
		t.Errorf("left after the next run's sweep: %v", left)
	}
}
