//go:build linux

package changes

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Tmpfs mounts a fresh tmpfs under the test's temporary directory (the
// caller must be root) and unmounts it at cleanup.
func Tmpfs(t testing.TB) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("flocker-test", dir, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatalf("mounting tmpfs at %s: %v", dir, err)
	}
	t.Cleanup(func() { Unmount(t, dir) })
	return dir
}

// Unmount unmounts dir, retrying while it is busy (a descriptor closed just
// now may still be released); it never forces, since forcing is what wedges
// zfs-fuse.
func Unmount(t testing.TB, dir string) {
	t.Helper()
	var err error
	for range 50 {
		if err = unix.Unmount(dir, 0); err == nil || errors.Is(err, unix.EINVAL) {
			return // EINVAL: not mounted (any more)
		}
		if !errors.Is(err, unix.EBUSY) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Errorf("unmounting %s: %v", dir, err)
}
