// Package treesum checksums a directory tree, so tests can tell that a
// replica holds exactly what the master wrote.
package treesum

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Sum returns one sha256 over every entry under dir: each entry's path
// relative to dir, its type and permission bits, a symlink's target and a
// regular file's content, in path order. Times and owners are left out
// (a replica keeps them, but atime moves on the master when files are read).
func Sum(dir string) (string, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		if rel == "." {
			return nil
		}
		paths = append(paths, rel)
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("walking %s: %w", dir, err)
	}
	sort.Strings(paths)
	h := sha256.New()
	for _, rel := range paths {
		p := filepath.Join(dir, rel)
		fi, err := os.Lstat(p)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(h, "%s\x00%o\x00", rel, fi.Mode()&(fs.ModeType|fs.ModePerm))
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return "", err
			}
			fmt.Fprintf(h, "%s\x00", target)
		case fi.Mode().IsRegular():
			if err := hashFile(h, p); err != nil {
				return "", err
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(w io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	fh := sha256.New()
	if _, err := io.Copy(fh, f); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	_, err = fmt.Fprintf(w, "%x\x00", fh.Sum(nil))
	return err
}
