package atomicfile

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/testutil"
)

func TestWriteCreatesWithExactMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a.ini")
	// A umask must not weaken or widen the requested mode.
	old := syscall.Umask(0o077)
	defer syscall.Umask(old)
	if err := Write(path, []byte("one\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	checkFile(t, path, "one\n", 0o640)
	checkNoLeftovers(t, dir, 1)
}

func TestWriteReplacesAndFollowsSymlink(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "real.ini")
	link := filepath.Join(dir, "link.ini")
	if err := os.WriteFile(real, []byte("old\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("real.ini", link); err != nil {
		t.Fatal(err)
	}
	if err := Write(link, []byte("new\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Fatalf("symlink replaced by a file: %v %v", fi.Mode(), err)
	}
	checkFile(t, real, "new\n", 0o600)
	checkNoLeftovers(t, dir, 2)
}

func TestDiscardLeavesOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "a")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := Stage(path, []byte("new"), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	checkNoLeftovers(t, dir, 2) // the staged file sits beside the old one
	p.Discard()
	checkFile(t, path, "old", 0o600)
	checkNoLeftovers(t, dir, 1)
	if err := p.Commit(); err == nil {
		t.Fatal("Commit after Discard succeeded")
	}
	checkFile(t, path, "old", 0o600)
}

func TestWriteKeepsOwner(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	path := filepath.Join(dir, "a")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 4321, 8765); err != nil {
		t.Fatal(err)
	}
	if err := Write(path, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 4321 || st.Gid != 8765 {
		t.Fatalf("owner %d:%d, want 4321:8765", st.Uid, st.Gid)
	}
	checkFile(t, path, "new", 0o600)
}

// TestFullDiskLeavesOldFile makes the write fail for real: the file lives on a
// 64 KiB tmpfs that is then filled up.
func TestFullDiskLeavesOldFile(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	testutil.RequireNoError(t, "mounting a small tmpfs", syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64k"))
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	path := filepath.Join(dir, "flocker.ini")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fill, err := os.Create(filepath.Join(dir, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = fill.Write(make([]byte, 1<<20))
	fill.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the tmpfs: %v, want ENOSPC", err)
	}
	err = Write(path, bytes.Repeat([]byte("x"), 16<<10), 0o600)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("Write on a full disk: %v, want ENOSPC", err)
	}
	checkFile(t, path, "old\n", 0o600)
	checkNoLeftovers(t, dir, 2)
}

func checkFile(t *testing.T, path, want string, mode os.FileMode) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("%s = %q, want %q", path, got, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != mode {
		t.Fatalf("%s mode %04o, want %04o", path, fi.Mode().Perm(), mode)
	}
}

func checkNoLeftovers(t *testing.T, dir string, n int) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != n {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("%s holds %v, want %d entries", dir, names, n)
	}
}

func TestRemoveStale(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "flocker[1].ini")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(dir, ".flocker[1].ini.tmp-111")
	young := filepath.Join(dir, ".flocker[1].ini.tmp-222")
	other := filepath.Join(dir, ".other.ini.tmp-333")
	for _, f := range []string{old, young, other} {
		if err := os.WriteFile(f, []byte("partial"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	for _, f := range []string{old, other} {
		if err := os.Chtimes(f, now.Add(-time.Hour), now.Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	removed, err := RemoveStale(path, now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if len(removed) != 1 || removed[0] != old {
		t.Fatalf("removed %v, want only %s", removed, old)
	}
	for _, f := range []string{path, young, other} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s should remain: %v", f, err)
		}
	}
	if _, err := os.Stat(old); !os.IsNotExist(err) {
		t.Errorf("%s should be gone: %v", old, err)
	}
}
