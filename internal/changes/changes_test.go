//go:build linux

package changes_test

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flockerha/flocker/internal/changes"
	"github.com/flockerha/flocker/internal/testutil"
	"golang.org/x/sys/unix"
)

// fingerprint describes everything under dir that counts as a change: names,
// types, modes, owners, sizes, contents, link targets, extended attributes,
// mtime and ctime (not atime: reading is not a change).
func fingerprint(t *testing.T, dir string) map[string]string {
	t.Helper()
	fp := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		desc := fmt.Sprintf("mode=%o uid=%d gid=%d size=%d mtime=%d.%d ctime=%d.%d",
			st.Mode, st.Uid, st.Gid, st.Size, st.Mtim.Sec, st.Mtim.Nsec, st.Ctim.Sec, st.Ctim.Nsec)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			desc += fmt.Sprintf(" data=%q", data)
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		}
		if st.Mode&unix.S_IFMT != unix.S_IFLNK {
			buf := make([]byte, 1024)
			if n, err := unix.Listxattr(p, buf); err == nil && n > 0 {
				for _, name := range strings.Split(strings.TrimRight(string(buf[:n]), "\x00"), "\x00") {
					v := make([]byte, 256)
					m, _ := unix.Getxattr(p, name, v)
					desc += fmt.Sprintf(" xattr[%s]=%q", name, v[:max(m, 0)])
				}
			}
		}
		rel, _ := filepath.Rel(dir, p)
		fp[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatalf("fingerprinting %s: %v", dir, err)
	}
	return fp
}

// diff names the entries whose description changed.
func diff(a, b map[string]string) []string {
	var d []string
	for _, k := range slices.Sorted(maps.Keys(a)) {
		if b[k] != a[k] {
			d = append(d, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(b)) {
		if _, ok := a[k]; !ok {
			d = append(d, k)
		}
	}
	return d
}

// Every operation does what its name says, judged by the filesystem itself:
// positive ones change Dir, reads change nothing, Elsewhere ones change
// Other and leave Dir alone. On tmpfs (Linux 6.6 and later) every operation
// is supported, so Supported must say so.
func TestOperationsChangeWhatTheySay(t *testing.T) {
	testutil.RequireRoot(t)
	env := &changes.Env{Dir: changes.Tmpfs(t), Other: changes.Tmpfs(t), Aside: t.TempDir()}
	for _, op := range append(changes.All(env), changes.IOUringVariants(env)...) {
		t.Run(op.Name, func(t *testing.T) {
			if err := op.Supported(); err != nil {
				t.Fatalf("tmpfs refuses %s: %v", op.Name, err)
			}
			step, err := op.Prepare()
			if err != nil {
				t.Fatal(err)
			}
			dir0, other0 := fingerprint(t, env.Dir), fingerprint(t, env.Other)
			if err := step.Run(); err != nil {
				t.Fatal(err)
			}
			dir1, other1 := fingerprint(t, env.Dir), fingerprint(t, env.Other)
			if step.Close != nil {
				if err := step.Close(); err != nil {
					t.Fatal(err)
				}
			}
			dirDiff, otherDiff := diff(dir0, dir1), diff(other0, other1)
			switch {
			case !op.Negative && len(dirDiff) == 0:
				t.Errorf("%s changed nothing in the watched directory", op.Name)
			case op.Negative && len(dirDiff) > 0:
				t.Errorf("%s changed the watched directory: %v", op.Name, dirDiff)
			case strings.HasPrefix(op.Name, "elsewhere/") && len(otherDiff) == 0:
				t.Errorf("%s changed nothing on the other filesystem", op.Name)
			}
			t.Logf("changed here: %v; on the other filesystem: %v", dirDiff, otherDiff)
		})
	}
}

// Supported asks the filesystem: an operation it refuses says so with
// ErrUnsupported and the kernel's errno, not a guess.
func TestSupportedAsksTheFilesystem(t *testing.T) {
	testutil.RequireRoot(t)
	dir := changes.Tmpfs(t)
	// A read-only remount makes every change fail with EROFS, which is not
	// an "unsupported" answer: the library must pass it on as an error.
	env := &changes.Env{Dir: dir, Other: t.TempDir(), Aside: t.TempDir()}
	if err := unix.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatal(err)
	}
	defer unix.Mount("", dir, "", unix.MS_REMOUNT, "")
	for _, op := range changes.Positive(env) {
		err := op.Supported()
		if errors.Is(err, changes.ErrUnsupported) {
			t.Errorf("%s on a read-only filesystem: %v, want an error that is not ErrUnsupported (or nil for ops not probed)", op.Name, err)
		}
		if err != nil && !errors.Is(err, unix.EROFS) {
			t.Errorf("%s on a read-only filesystem: %v, want EROFS", op.Name, err)
		}
	}

	// ramfs has no direct I/O, no fallocate and no user xattrs: exactly
	// those must come back unsupported, with the kernel's errno.
	ramfs := filepath.Join(t.TempDir(), "ramfs")
	if err := os.Mkdir(ramfs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("flocker-test", ramfs, "ramfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	defer changes.Unmount(t, ramfs)
	env = &changes.Env{Dir: ramfs, Other: t.TempDir(), Aside: t.TempDir()}
	var refused []string
	for _, op := range changes.All(env) {
		err := op.Supported()
		if err == nil {
			continue
		}
		if !errors.Is(err, changes.ErrUnsupported) {
			t.Errorf("%s on ramfs: %v, want nil or ErrUnsupported", op.Name, err)
		}
		refused = append(refused, op.Name)
		t.Logf("ramfs refuses %s: %v", op.Name, err)
	}
	want := []string{"odirect-write", "fallocate", "setxattr", "removexattr", "getxattr"}
	if !slices.Equal(refused, want) {
		t.Errorf("ramfs refuses %v, want %v", refused, want)
	}
}
