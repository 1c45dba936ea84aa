//go:build linux

package agent

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/flockerha/flocker/snapshot"
)

// BadTargetError is a watch target that is not usable: not a mounted
// filesystem, not an existing mounted dataset. It is the argument's fault,
// not the host's.
type BadTargetError struct {
	Msg string
	Err error // the underlying cause, if any
}

func (e *BadTargetError) Error() string { return e.Msg }
func (e *BadTargetError) Unwrap() error { return e.Err }

func badTarget(cause error, format string, args ...any) error {
	return &BadTargetError{Msg: fmt.Sprintf(format, args...), Err: cause}
}

// ResolveMountpoint turns a path into a Target: it must be the root of a
// mounted filesystem. When that is a ZFS dataset the target is named after
// it, otherwise after the path (any filesystem can be watched, as a
// diagnostic). The returned Mount is what is mounted there. Errors about
// the argument are a *BadTargetError.
func ResolveMountpoint(arg string) (Target, Mount, error) {
	path, err := filepath.Abs(arg)
	if err == nil {
		path, err = filepath.EvalSymlinks(path)
	}
	if err != nil {
		return Target{}, Mount{}, badTarget(err, "%s: %v", arg, err)
	}
	mounts, err := ReadMounts()
	if err != nil {
		return Target{}, Mount{}, err
	}
	m, ok := mounts[path]
	if !ok {
		return Target{}, Mount{}, badTarget(nil, "%s is not a mounted filesystem (it is a directory inside the one mounted at %s)",
			arg, containingMount(mounts, path))
	}
	name := path
	if m.IsZFS() {
		name = m.Source
	}
	return Target{Name: name, Mountpoint: path}, m, nil
}

// containingMount is the longest mountpoint that is path or above it.
func containingMount(mounts MountTable, path string) string {
	for p := path; ; p = filepath.Dir(p) {
		if _, ok := mounts[p]; ok || p == "/" {
			return p
		}
	}
}

// ResolveDataset turns a dataset name into a Target through ZFS: the
// dataset must exist and be mounted, and its mountpoint must hold that very
// dataset. Errors about the argument are a *BadTargetError.
func ResolveDataset(ctx context.Context, z *snapshot.ZFS, ds string) (Target, Mount, error) {
	if err := snapshot.ValidateDataset(ds); err != nil {
		return Target{}, Mount{}, badTarget(err, "%v (a mountpoint must be a path)", err)
	}
	mp, mounted, err := z.Mountpoint(ctx, ds)
	if errors.Is(err, snapshot.ErrNotFound) {
		return Target{}, Mount{}, badTarget(err, "dataset %s does not exist", ds)
	}
	if err != nil {
		return Target{}, Mount{}, fmt.Errorf("dataset %s: %w", ds, err)
	}
	if !mounted {
		return Target{}, Mount{}, badTarget(nil, "dataset %s is not mounted (mountpoint %s)", ds, mp)
	}
	mounts, err := ReadMounts()
	if err != nil {
		return Target{}, Mount{}, err
	}
	m, ok := mounts[mp]
	if !ok || !m.IsZFS() || m.Source != ds {
		// mountpoint=legacy (or a mount table that disagrees): find the
		// dataset's mount by its source.
		ok = false
		for _, cand := range mounts {
			if cand.IsZFS() && cand.Source == ds {
				m, ok = cand, true
				break
			}
		}
	}
	if !ok {
		return Target{}, Mount{}, badTarget(nil, "dataset %s: ZFS says it is mounted at %q, but no ZFS mount of it is in the mount table", ds, mp)
	}
	return Target{Name: ds, Mountpoint: m.Mountpoint}, m, nil
}

// IsPath says whether a watch argument names a mountpoint (a path) rather
// than a dataset.
func IsPath(arg string) bool { return strings.HasPrefix(arg, "/") || strings.HasPrefix(arg, ".") }
