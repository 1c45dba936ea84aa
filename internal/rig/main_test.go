package rig_test

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Some tests re-run this test binary as a child process: to fail or crash
// with a rig built (TestChild* tests, run only there), or to work in a private
// mount namespace (modes handled before the tests start).
const (
	childEnv       = "FLOCKER_RIG_TEST_CHILD"
	childRunDirEnv = "FLOCKER_RIG_TEST_RUNDIR"
)

func TestMain(m *testing.M) {
	switch mode := os.Getenv(childEnv); mode {
	case "":
		// TestChild* exist to fail or die on purpose: they never run on
		// their own, only in the child processes the real tests start.
		flag.Parse()
		skip := "^TestChild"
		if prev := flag.Lookup("test.skip").Value.String(); prev != "" {
			skip = prev + "|" + skip
		}
		if err := flag.Set("test.skip", skip); err != nil {
			fmt.Fprintln(os.Stderr, "rig tests:", err)
			os.Exit(2)
		}
	case "zfs-private":
		os.Exit(childMain(childZFSPrivate))
	case "zfs-wedge":
		os.Exit(childMain(childZFSWedge))
	case "kernelfs-private":
		os.Exit(childMain(childKernelFSPrivate))
	}
	os.Exit(m.Run())
}

// childMain runs a private-mount-namespace scenario: it prints progress and
// returns the exit code (0 when every check held).
func childMain(fn func(ctx context.Context, logf func(string, ...any)) error) int {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	logf := func(format string, args ...any) { fmt.Printf(format+"\n", args...) }
	if err := fn(ctx, logf); err != nil {
		fmt.Printf("FAIL: %v\n", err)
		return 1
	}
	fmt.Println("CHILD OK")
	return 0
}

// runChild re-runs this test binary with env set and returns its combined
// output and exit error. newMountNS puts it in a new mount namespace, whose
// mounts Go makes private (so nothing it mounts or unmounts reaches ours).
func runChild(t *testing.T, env []string, newMountNS bool, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = append(os.Environ(), env...)
	if newMountNS {
		cmd.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

// childValues collects the KEY=VALUE words of lines starting with "RIG "
// that a child printed.
func childValues(out string) map[string]string {
	vals := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if !strings.HasPrefix(line, "RIG ") {
			continue
		}
		for _, kv := range strings.Fields(line)[1:] {
			if k, v, ok := strings.Cut(kv, "="); ok {
				vals[k] = v
			}
		}
	}
	return vals
}
