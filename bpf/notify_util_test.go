//go:build linux

package bpf

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/testutil"
	"golang.org/x/sys/unix"
)

// kernelDev is path's filesystem device in the kernel's encoding.
func kernelDev(t testing.TB, path string) uint32 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return unix.Major(st.Dev)<<20 | unix.Minor(st.Dev)
}

// tmpfs mounts a fresh tmpfs under the test's temporary directory and
// unmounts it when the test ends.
func tmpfs(t testing.TB) string {
	t.Helper()
	testutil.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("flocker-test", dir, "tmpfs", 0, "size=64m"); err != nil {
		testutil.RequireNoError(t, "mounting a tmpfs", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	return dir
}

func mustLoadTier(t testing.TB, opts TierOptions) *Tier {
	t.Helper()
	testutil.RequireRoot(t)
	if opts.Log == nil {
		opts.Log = testLog(t)
	}
	tier, err := LoadTier(opts)
	if err != nil {
		t.Fatalf("loading %s tier: %v", opts.Tier, err)
	}
	t.Cleanup(func() {
		if err := tier.Close(); err != nil {
			t.Errorf("closing tier: %v", err)
		}
	})
	return tier
}

// nextEvent waits up to d for an event; ok is false when none came.
func nextEvent(t testing.TB, tier *Tier, d time.Duration) (Event, bool) {
	t.Helper()
	tier.SetDeadline(time.Now().Add(d))
	defer tier.SetDeadline(time.Time{})
	ev, err := tier.ReadEvent()
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return Event{}, false
	}
	if err != nil {
		t.Fatalf("reading event: %v", err)
	}
	return ev, true
}
