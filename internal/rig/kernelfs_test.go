package rig_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/flockerha/flocker/internal/rig"
	"github.com/flockerha/flocker/internal/rig/rigtest"
	"github.com/flockerha/flocker/internal/testutil"
	"golang.org/x/sys/unix"
)

const (
	tracefsMagic = 0x74726163
	bpffsMagic   = 0xcafe4a11
)

func fsMagic(path string) int64 {
	var st unix.Statfs_t
	if unix.Statfs(path, &st) != nil {
		return 0
	}
	return int64(st.Type)
}

func TestEnsureKernelFSIsIdempotent(t *testing.T) {
	rigtest.KernelFS(t)
	if err := rig.EnsureKernelFS(); err != nil {
		t.Fatalf("second call: %v", err)
	}
	if fsMagic(rig.TracefsPath) != tracefsMagic || fsMagic(rig.BPFFSPath) != bpffsMagic {
		t.Fatalf("tracefs or bpffs not mounted after EnsureKernelFS")
	}
}

// Mounting what is missing is tested where it can be missing without harm:
// a child in a private mount namespace unmounts both first.
func TestEnsureKernelFSMountsMissing(t *testing.T) {
	testutil.RequireRoot(t)
	selfMnt, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	out, err := runChild(t, []string{childEnv + "=kernelfs-private", "FLOCKER_RIG_TEST_PARENT_MNTNS=" + selfMnt}, true)
	t.Logf("child output:\n%s", out)
	if err != nil || !strings.Contains(out, "CHILD OK") {
		t.Fatalf("private-namespace kernelfs scenario failed: %v", err)
	}
	if fsMagic(rig.TracefsPath) != tracefsMagic || fsMagic(rig.BPFFSPath) != bpffsMagic {
		t.Fatalf("the child's unmounts leaked into this mount namespace")
	}
}

func mountCount(path string) int {
	data, _ := os.ReadFile("/proc/self/mountinfo")
	n := 0
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == path {
			n++
		}
	}
	return n
}

func childKernelFSPrivate(_ context.Context, logf func(string, ...any)) error {
	if err := enterPrivateMounts(); err != nil {
		return err
	}
	paths := map[string]int64{rig.TracefsPath: tracefsMagic, rig.BPFFSPath: bpffsMagic}
	for path, magic := range paths {
		for i := 0; fsMagic(path) == magic; i++ {
			if i > 10 {
				return fmt.Errorf("cannot unmount %s", path)
			}
			if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
				return fmt.Errorf("unmounting %s: %w", path, err)
			}
		}
		logf("unmounted %s", path)
	}
	for i := 0; i < 2; i++ {
		if err := rig.EnsureKernelFS(); err != nil {
			return fmt.Errorf("EnsureKernelFS call %d: %w", i+1, err)
		}
	}
	for path, magic := range paths {
		if fsMagic(path) != magic {
			return fmt.Errorf("%s not mounted by EnsureKernelFS", path)
		}
		if n := mountCount(path); n != 1 {
			return fmt.Errorf("%s mounted %d times after two calls, want once", path, n)
		}
	}
	return nil
}
