// Package atomicfile replaces files so that a reader (or a crash) sees either
// the old content or the new, never a mix: write a temporary file beside the
// target, fsync it, rename it over the target, fsync the directory.
package atomicfile

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Pending is a file written in full beside its destination but not yet in
// place. Staging several files before committing any lets a caller check that
// every write succeeds before it changes anything.
type Pending struct {
	tmp, path string
	done      bool
}

// Stage writes data to a temporary file in the directory of path, with mode
// perm (not subject to the umask) and, when path already exists, its owner
// and group; the data is on disk when Stage returns. A symlink at path is
// followed, so the file it points to is the one replaced.
func Stage(path string, data []byte, perm fs.FileMode) (_ *Pending, err error) {
	target, err := resolve(path)
	if err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(filepath.Dir(target), "."+filepath.Base(target)+".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("staging %s: %w", path, err)
	}
	p := &Pending{tmp: f.Name(), path: target}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(p.tmp)
		}
	}()
	if err := f.Chmod(perm); err != nil {
		return nil, fmt.Errorf("staging %s: %w", path, err)
	}
	if err := keepOwner(f, target); err != nil {
		return nil, fmt.Errorf("staging %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		return nil, fmt.Errorf("staging %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return nil, fmt.Errorf("staging %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("staging %s: %w", path, err)
	}
	return p, nil
}

// Commit moves the staged file into place and makes the rename durable.
func (p *Pending) Commit() error {
	if p.done {
		return fmt.Errorf("committing %s: already committed or discarded", p.path)
	}
	p.done = true
	if err := os.Rename(p.tmp, p.path); err != nil {
		os.Remove(p.tmp)
		return fmt.Errorf("replacing %s: %w", p.path, err)
	}
	if err := syncDir(filepath.Dir(p.path)); err != nil {
		return fmt.Errorf("replacing %s: %w", p.path, err)
	}
	return nil
}

// Discard removes the staged file; after Commit it does nothing.
func (p *Pending) Discard() {
	if !p.done {
		p.done = true
		os.Remove(p.tmp)
	}
}

// Write replaces path with data atomically (Stage, then Commit).
func Write(path string, data []byte, perm fs.FileMode) error {
	p, err := Stage(path, data, perm)
	if err != nil {
		return err
	}
	return p.Commit()
}

// resolve follows a symlink at path; a path that does not exist yet is used
// as it is.
func resolve(path string) (string, error) {
	target, err := filepath.EvalSymlinks(path)
	if errors.Is(err, fs.ErrNotExist) {
		return path, nil
	}
	if err != nil {
		return "", fmt.Errorf("resolving %s: %w", path, err)
	}
	return target, nil
}

// keepOwner gives the temporary file f the owner and group of the file it
// will replace, so that rewriting a config as root does not take it away from
// the account that owned it.
func keepOwner(f *os.File, target string) error {
	old, err := os.Stat(target)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	want, ok := old.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	cur, err := f.Stat()
	if err != nil {
		return err
	}
	if have, ok := cur.Sys().(*syscall.Stat_t); ok && have.Uid == want.Uid && have.Gid == want.Gid {
		return nil
	}
	return f.Chown(int(want.Uid), int(want.Gid))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	return errors.Join(err, d.Close())
}

// RemoveStale removes the temporaries a writer of path killed between Stage
// and Commit left beside it (".NAME.tmp-*"), when they were last modified
// before cutoff: a younger one may belong to a writer still running. It
// returns the names it removed.
func RemoveStale(path string, cutoff time.Time) ([]string, error) {
	target, err := resolve(path)
	if err != nil {
		return nil, err
	}
	found, err := filepath.Glob(filepath.Join(filepath.Dir(target), "."+escapeGlob(filepath.Base(target))+".tmp-*"))
	if err != nil {
		return nil, fmt.Errorf("looking for stale temporaries of %s: %w", path, err)
	}
	var removed []string
	var errs []error
	for _, name := range found {
		info, err := os.Lstat(name)
		if err != nil || !info.Mode().IsRegular() || !info.ModTime().Before(cutoff) {
			continue
		}
		if err := os.Remove(name); err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, name)
	}
	return removed, errors.Join(errs...)
}

// escapeGlob quotes the characters filepath.Match treats specially.
func escapeGlob(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
