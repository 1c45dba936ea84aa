//go:build linux

package changes

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// Helpers shared by the operations.

// payload is 16 bytes that differ on every call, so each write really
// changes the file's contents.
func (e *Env) payload() []byte {
	return fmt.Appendf(nil, "flk-%011d\n", e.seq.Add(1))
}

// makeFile creates path holding content.
func makeFile(path string, content []byte) error {
	return os.WriteFile(path, content, 0o644)
}

// openFile creates a file in dir holding content and opens it with flags.
func (e *Env) openFile(dir, prefix string, content []byte, flags int) (string, int, error) {
	path := e.name(dir, prefix)
	if err := makeFile(path, content); err != nil {
		return "", -1, err
	}
	fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", -1, fmt.Errorf("open %s: %w", path, err)
	}
	return path, fd, nil
}

// closeAll returns a Close that closes every descriptor and runs every
// extra release, joining their errors.
func closeAll(fds []int, release ...func() error) func() error {
	return func() error {
		var errs []error
		for _, f := range release {
			errs = append(errs, f())
		}
		for _, fd := range fds {
			if err := unix.Close(fd); err != nil {
				errs = append(errs, fmt.Errorf("close: %w", err))
			}
		}
		return errors.Join(errs...)
	}
}

// full checks that a transfer moved all want bytes.
func full(what string, n int, err error, want int) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n != want {
		return fmt.Errorf("%s: moved %d bytes, want %d", what, n, want)
	}
	return nil
}

// unsupported wraps err in ErrUnsupported when it is one of the errnos that
// mean "this filesystem (or kernel) cannot do that".
func unsupported(err error, errnos ...unix.Errno) error {
	for _, e := range errnos {
		if errors.Is(err, e) {
			return fmt.Errorf("%w: %w", ErrUnsupported, err)
		}
	}
	return err
}

// always is Supported for operations every Linux filesystem must allow.
func always() error { return nil }

// probe builds a Supported that runs one prepared step in e.Dir and reads
// the listed errnos, from preparing or running, as the filesystem's "no".
func probe(prepare func() (*Step, error), errnos ...unix.Errno) func() error {
	return func() error {
		s, err := prepare()
		if err != nil {
			return unsupported(err, errnos...)
		}
		err = s.Run()
		if cerr := s.close(); err == nil {
			err = cerr
		}
		return unsupported(err, errnos...)
	}
}

// anonPage is a page-aligned buffer outside the Go heap: O_DIRECT needs the
// alignment, and AIO and io_uring read it after the submitting call returned.
func anonPage() ([]byte, func() error, error) {
	b, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap anonymous page: %w", err)
	}
	return b, func() error { return unix.Munmap(b) }, nil
}

// Content changes through a system call on an open descriptor.

// fdWrite is an operation that writes through a descriptor opened on a new
// file in e.Dir (without O_TRUNC, so opening changes nothing).
func fdWrite(e *Env, name string, flags int, run func(fd int, data []byte) error) Op {
	prepare := func() (*Step, error) {
		_, fd, err := e.openFile(e.Dir, name, nil, unix.O_WRONLY|flags)
		if err != nil {
			return nil, err
		}
		data := e.payload()
		return &Step{Run: func() error { return run(fd, data) }, Close: closeAll([]int{fd})}, nil
	}
	return Op{Name: name, Kind: KindData, Supported: always, Prepare: prepare}
}

func write(e *Env) Op {
	return fdWrite(e, "write", 0, func(fd int, data []byte) error {
		n, err := unix.Write(fd, data)
		return full("write", n, err, len(data))
	})
}

func pwrite(e *Env) Op {
	return fdWrite(e, "pwrite", 0, func(fd int, data []byte) error {
		n, err := unix.Pwrite(fd, data, 4096)
		return full("pwrite", n, err, len(data))
	})
}

func writev(e *Env) Op {
	return fdWrite(e, "writev", 0, func(fd int, data []byte) error {
		n, err := unix.Writev(fd, [][]byte{data[:8], data[8:]})
		return full("writev", n, err, len(data))
	})
}

// directWrite writes one aligned page with O_DIRECT, bypassing the page
// cache. Filesystems that refuse O_DIRECT say EINVAL at open or write.
func directWrite(e *Env) Op {
	prepare := func() (*Step, error) {
		_, fd, err := e.openFile(e.Dir, "odirect", nil, unix.O_WRONLY|unix.O_DIRECT)
		if err != nil {
			return nil, err
		}
		buf, unmap, err := anonPage()
		if err != nil {
			unix.Close(fd)
			return nil, err
		}
		copy(buf, e.payload())
		run := func() error {
			n, err := unix.Pwrite(fd, buf, 0)
			return full("pwrite O_DIRECT", n, err, len(buf))
		}
		return &Step{Run: run, Close: closeAll([]int{fd}, unmap)}, nil
	}
	return Op{Name: "odirect-write", Kind: KindData, Prepare: prepare,
		Supported: probe(prepare, unix.EINVAL, unix.EOPNOTSUPP)}
}

// aioWrite submits one IOCB_CMD_PWRITE with io_submit and waits for it.
func aioWrite(e *Env) Op {
	prepare := func() (*Step, error) {
		ctx, err := aioSetup(1)
		if err != nil {
			return nil, err
		}
		_, fd, err := e.openFile(e.Dir, "aio", nil, unix.O_WRONLY)
		if err != nil {
			ctx.destroy()
			return nil, err
		}
		buf, unmap, err := anonPage()
		if err != nil {
			ctx.destroy()
			unix.Close(fd)
			return nil, err
		}
		data := buf[:copy(buf, e.payload())]
		run := func() error { return ctx.pwrite(fd, data, 0) }
		return &Step{Run: run, Close: closeAll([]int{fd}, unmap, ctx.destroy)}, nil
	}
	return Op{Name: "aio-write", Kind: KindData, Prepare: prepare,
		Supported: probe(prepare, unix.ENOSYS, unix.EINVAL, unix.EOPNOTSUPP)}
}

// uringWrite submits one IORING_OP_WRITE through a ring of our own and
// waits for its completion.
func uringWrite(e *Env, mode ringMode) Op {
	name := map[ringMode]string{ringPlain: "io_uring-write", ringFixed: "io_uring-write-fixed", ringSQPoll: "io_uring-write-sqpoll"}[mode]
	prepare := func() (*Step, error) {
		_, fd, err := e.openFile(e.Dir, "uring", nil, unix.O_WRONLY)
		if err != nil {
			return nil, err
		}
		r, err := newRing(4, mode, fd)
		if err != nil {
			unix.Close(fd)
			return nil, err
		}
		buf, unmap, err := anonPage()
		if err != nil {
			r.close()
			unix.Close(fd)
			return nil, err
		}
		data := buf[:copy(buf, e.payload())]
		run := func() error { return r.write(fd, data, 0) }
		return &Step{Run: run, Close: closeAll([]int{fd}, unmap, r.close)}, nil
	}
	// EPERM: io_uring disabled by sysctl (kernel.io_uring_disabled).
	return Op{Name: name, Kind: KindData, Prepare: prepare,
		Supported: probe(prepare, unix.ENOSYS, unix.EPERM, unix.EINVAL, unix.EOPNOTSUPP)}
}

// mmapStore stores one byte into a shared writable mapping whose page was
// flushed first (as a notifier's syncfs leaves it), with or without msync.
// Without msync no system call touches the file at all.
func mmapStore(e *Env, msync bool) Op {
	name := "mmap-store"
	if msync {
		name = "mmap-store-msync"
	}
	prepare := func() (*Step, error) {
		_, fd, err := e.openFile(e.Dir, name, make([]byte, 4096), unix.O_RDWR)
		if err != nil {
			return nil, err
		}
		m, err := unix.Mmap(fd, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("mmap shared writable: %w", err)
		}
		unmap := func() error { return unix.Munmap(m) }
		if err := unix.Syncfs(fd); err != nil {
			closeAll([]int{fd}, unmap)()
			return nil, fmt.Errorf("syncfs: %w", err)
		}
		b := e.payload()[12]
		run := func() error {
			m[100] = b
			if msync {
				if err := unix.Msync(m, unix.MS_SYNC); err != nil {
					return fmt.Errorf("msync: %w", err)
				}
			}
			return nil
		}
		return &Step{Run: run, Close: closeAll([]int{fd}, unmap)}, nil
	}
	return Op{Name: name, Kind: KindMmap, Prepare: prepare,
		Supported: probe(prepare, unix.ENODEV, unix.EINVAL, unix.EOPNOTSUPP)}
}

// Size changes.

func truncatePath(e *Env) Op {
	return Op{Name: "truncate", Kind: KindSize, Supported: always, Prepare: func() (*Step, error) {
		path := e.name(e.Dir, "truncate")
		if err := makeFile(path, make([]byte, 4096)); err != nil {
			return nil, err
		}
		return &Step{Run: func() error { return wrap("truncate", unix.Truncate(path, 1024)) }}, nil
	}}
}

func ftruncate(e *Env) Op {
	return Op{Name: "ftruncate", Kind: KindSize, Supported: always, Prepare: func() (*Step, error) {
		_, fd, err := e.openFile(e.Dir, "ftruncate", make([]byte, 4096), unix.O_WRONLY)
		if err != nil {
			return nil, err
		}
		return &Step{Run: func() error { return wrap("ftruncate", unix.Ftruncate(fd, 1024)) }, Close: closeAll([]int{fd})}, nil
	}}
}

// fallocate allocates a block past the end, growing the file.
func fallocate(e *Env) Op {
	prepare := func() (*Step, error) {
		_, fd, err := e.openFile(e.Dir, "fallocate", nil, unix.O_WRONLY)
		if err != nil {
			return nil, err
		}
		return &Step{Run: func() error { return wrap("fallocate", unix.Fallocate(fd, 0, 0, 4096)) }, Close: closeAll([]int{fd})}, nil
	}
	return Op{Name: "fallocate", Kind: KindSize, Prepare: prepare,
		Supported: probe(prepare, unix.EOPNOTSUPP, unix.ENOSYS)}
}

// openTrunc empties a file by opening it with O_TRUNC.
func openTrunc(e *Env) Op {
	return Op{Name: "open-trunc", Kind: KindSize, Supported: always, Prepare: func() (*Step, error) {
		path := e.name(e.Dir, "otrunc")
		if err := makeFile(path, e.payload()); err != nil {
			return nil, err
		}
		var fds []int
		run := func() error {
			fd, err := unix.Open(path, unix.O_WRONLY|unix.O_TRUNC|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open O_TRUNC: %w", err)
			}
			fds = append(fds, fd)
			return nil
		}
		return &Step{Run: run, Close: func() error { return closeAll(fds)() }}, nil
	}}
}

// Namespace changes.

func creat(e *Env) Op {
	return Op{Name: "creat", Kind: KindNamespace, Supported: always, Prepare: func() (*Step, error) {
		path := e.name(e.Dir, "creat")
		var fds []int
		run := func() error {
			fd, err := unix.Creat(path, 0o644)
			if err != nil {
				return fmt.Errorf("creat: %w", err)
			}
			fds = append(fds, fd)
			return nil
		}
		return &Step{Run: run, Close: func() error { return closeAll(fds)() }}, nil
	}}
}

func unlink(e *Env) Op {
	return Op{Name: "unlink", Kind: KindNamespace, Supported: always, Prepare: func() (*Step, error) {
		path := e.name(e.Dir, "unlink")
		if err := makeFile(path, e.payload()); err != nil {
			return nil, err
		}
		return &Step{Run: func() error { return wrap("unlink", unix.Unlink(path)) }}, nil
	}}
}

func renameInside(e *Env) Op {
	return Op{Name: "rename-inside", Kind: KindNamespace, Supported: always, Prepare: func() (*Step, error) {
		from, to := e.name(e.Dir, "rename"), e.name(e.Dir, "renamed")
		if err := makeFile(from, e.payload()); err != nil {
			return nil, err
		}
		return &Step{Run: func() error { return wrap("rename", unix.Rename(from, to)) }}, nil
	}}
}

// renameAcross moves a file between two directories of the filesystem.
func renameAcross(e *Env) Op {
	return Op{Name: "rename-across-dirs", Kind: KindNamespace, Supported: always, Prepare: func() (*Step, error) {
		d1, d2 := e.name(e.Dir, "rdir"), e.name(e.Dir, "rdir")
		for _, d := range []string{d1, d2} {
			if err := os.Mkdir(d, 0o755); err != nil {
				return nil, err
			}
		}
		from := filepath.Join(d1, "f")
		if err := makeFile(from, e.payload()); err != nil {
			return nil, err
		}
		return &Step{Run: func() error { return wrap("rename", unix.Rename(from, filepath.Join(d2, "f"))) }}, nil
	}}
}

// move is what mv does across filesystems: rename(2) refuses with EXDEV (a
// rename cannot cross filesystems), so the file is copied and the source
// unlinked.
func move(from, to string) error {
	err := unix.Rename(from, to)
	if err == nil {
		return fmt.Errorf("rename %s -> %s: succeeded, so the two are on one filesystem", from, to)
	}
	if !errors.Is(err, unix.EXDEV) {
		return fmt.Errorf("rename across filesystems: want EXDEV, got %w", err)
	}
	data, err := os.ReadFile(from)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Remove(from)
}

// renameInto moves a file from another filesystem into this one: the new
// file is created, written and closed here, so it is compound.
func renameInto(e *Env) Op {
	return Op{Name: "rename-into", Kind: KindNamespace, Compound: true, Supported: always, Prepare: func() (*Step, error) {
		from, to := e.name(e.Other, "into"), e.name(e.Dir, "into")
		if err := makeFile(from, e.payload()); err != nil {
			return nil, err
		}
		return &Step{Run: func() error { return move(from, to) }}, nil
	}}
}

// renameOutOf moves a file out to another filesystem: here it is read and
// then unlinked.
func renameOutOf(e *Env) Op {
	return Op{Name: "rename-out-of", Kind: KindNamespace, Supported: always, Prepare: func() (*Step, error) {
		from, to := e.name(e.Dir, "outof"), e.name(e.Other, "outof")
		if err := makeFile(from, e.payload()); err != nil {
			return nil, err
		}
		return &Step{Run: func() error { return move(from, to) }}, nil
	}}
}

func mkdir(e *Env) Op {
	return Op{Name: "mkdir", Kind: KindNamespace, Supported: always, Prepare: func() (*Step, error) {
		path := e.name(e.Dir, "mkdir")
		return &Step{Run: func() error { return wrap("mkdir", unix.Mkdir(path, 0o755)) }}, nil
	}}
}

func rmdir(e *Env) Op {
	return Op{Name: "rmdir", Kind: KindNamespace, Supported: always, Prepare: func() (*Step, error) {
		path := e.name(e.Dir, "rmdir")
		if err := os.Mkdir(path, 0o755); err != nil {
			return nil, err
		}
		return &Step{Run: func() error { return wrap("rmdir", unix.Rmdir(path)) }}, nil
	}}
}

func link(e *Env) Op {
	return Op{Name: "link", Kind: KindNamespace, Supported: always, Prepare: func() (*Step, error) {
		from, to := e.name(e.Dir, "link"), e.name(e.Dir, "linked")
		if err := makeFile(from, e.payload()); err != nil {
			return nil, err
		}
		return &Step{Run: func() error { return wrap("link", unix.Link(from, to)) }}, nil
	}}
}

func symlink(e *Env) Op {
	return Op{Name: "symlink", Kind: KindNamespace, Supported: always, Prepare: func() (*Step, error) {
		path := e.name(e.Dir, "symlink")
		return &Step{Run: func() error { return wrap("symlink", unix.Symlink("flocker-target", path)) }}, nil
	}}
}

// mknod makes a FIFO, the node type that needs no privilege.
func mknod(e *Env) Op {
	prepare := func() (*Step, error) {
		path := e.name(e.Dir, "mknod")
		return &Step{Run: func() error { return wrap("mknod", unix.Mknod(path, unix.S_IFIFO|0o644, 0)) }}, nil
	}
	return Op{Name: "mknod", Kind: KindNamespace, Prepare: prepare,
		Supported: probe(prepare, unix.EPERM, unix.EOPNOTSUPP)}
}

// Attribute changes.

// onFile is an operation that changes an existing file in e.Dir by path.
func onFile(e *Env, name string, setup func(path string) error, run func(path string) error) func() (*Step, error) {
	return func() (*Step, error) {
		path := e.name(e.Dir, name)
		if err := makeFile(path, e.payload()); err != nil {
			return nil, err
		}
		if setup != nil {
			if err := setup(path); err != nil {
				return nil, err
			}
		}
		return &Step{Run: func() error { return run(path) }}, nil
	}
}

func chmod(e *Env) Op {
	return Op{Name: "chmod", Kind: KindAttr, Supported: always,
		Prepare: onFile(e, "chmod", nil, func(p string) error { return wrap("chmod", unix.Chmod(p, 0o600)) })}
}

// chown gives the file an owner nobody has (root only).
func chown(e *Env) Op {
	prepare := onFile(e, "chown", nil, func(p string) error { return wrap("chown", unix.Chown(p, 4242, 4242)) })
	return Op{Name: "chown", Kind: KindAttr, Prepare: prepare, Supported: probe(prepare, unix.EPERM, unix.EINVAL)}
}

func utimensat(e *Env) Op {
	return Op{Name: "utimensat", Kind: KindAttr, Supported: always,
		Prepare: onFile(e, "utimes", nil, func(p string) error {
			t := unix.NsecToTimespec(time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC).UnixNano())
			return wrap("utimensat", unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{t, t}, 0))
		})}
}

const xattrName = "user.flocker"

func setxattr(e *Env) Op {
	prepare := onFile(e, "setxattr", nil, func(p string) error {
		return wrap("setxattr", unix.Setxattr(p, xattrName, []byte("one"), 0))
	})
	return Op{Name: "setxattr", Kind: KindAttr, Prepare: prepare, Supported: probe(prepare, unix.EOPNOTSUPP)}
}

func removexattr(e *Env) Op {
	set := func(p string) error { return wrap("setxattr", unix.Setxattr(p, xattrName, []byte("one"), 0)) }
	prepare := onFile(e, "rmxattr", set, func(p string) error {
		return wrap("removexattr", unix.Removexattr(p, xattrName))
	})
	return Op{Name: "removexattr", Kind: KindAttr, Prepare: prepare, Supported: probe(prepare, unix.EOPNOTSUPP)}
}

// Content copied in by the kernel.

// copyFileRange copies between two files of the filesystem (across
// filesystems the kernel refuses it for most pairs: EXDEV).
func copyFileRange(e *Env) Op {
	prepare := func() (*Step, error) {
		_, src, err := e.openFile(e.Dir, "cfr-src", e.payload(), unix.O_RDONLY)
		if err != nil {
			return nil, err
		}
		_, dst, err := e.openFile(e.Dir, "cfr-dst", nil, unix.O_WRONLY)
		if err != nil {
			unix.Close(src)
			return nil, err
		}
		run := func() error {
			var in, out int64
			n, err := unix.CopyFileRange(src, &in, dst, &out, 16, 0)
			return full("copy_file_range", n, err, 16)
		}
		return &Step{Run: run, Close: closeAll([]int{src, dst})}, nil
	}
	return Op{Name: "copy_file_range", Kind: KindData, Prepare: prepare,
		Supported: probe(prepare, unix.EXDEV, unix.EOPNOTSUPP, unix.ENOSYS, unix.EINVAL)}
}

// splice moves bytes from a pipe into a file.
func splice(e *Env) Op {
	prepare := func() (*Step, error) {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
			return nil, fmt.Errorf("pipe: %w", err)
		}
		data := e.payload()
		if n, err := unix.Write(p[1], data); err != nil || n != len(data) {
			closeAll(p[:])()
			return nil, full("filling the pipe", n, err, len(data))
		}
		_, dst, err := e.openFile(e.Dir, "splice", nil, unix.O_WRONLY)
		if err != nil {
			closeAll(p[:])()
			return nil, err
		}
		run := func() error {
			var off int64
			n, err := unix.Splice(p[0], nil, dst, &off, len(data), 0)
			return full("splice", int(n), err, len(data))
		}
		return &Step{Run: run, Close: closeAll([]int{p[0], p[1], dst})}, nil
	}
	return Op{Name: "splice", Kind: KindData, Prepare: prepare, Supported: probe(prepare, unix.EINVAL, unix.EOPNOTSUPP)}
}

// sendfile copies a file on another filesystem into one here.
func sendfile(e *Env) Op {
	prepare := func() (*Step, error) {
		data := e.payload()
		_, src, err := e.openFile(e.Other, "sendfile-src", data, unix.O_RDONLY)
		if err != nil {
			return nil, err
		}
		_, dst, err := e.openFile(e.Dir, "sendfile", nil, unix.O_WRONLY)
		if err != nil {
			unix.Close(src)
			return nil, err
		}
		run := func() error {
			var off int64
			n, err := unix.Sendfile(dst, src, &off, len(data))
			return full("sendfile", n, err, len(data))
		}
		return &Step{Run: run, Close: closeAll([]int{src, dst})}, nil
	}
	return Op{Name: "sendfile", Kind: KindData, Prepare: prepare, Supported: probe(prepare, unix.EINVAL, unix.EOPNOTSUPP)}
}

// Looks that change nothing.

func read(e *Env) Op {
	return Op{Name: "read", Kind: KindRead, Negative: true, Supported: always, Prepare: func() (*Step, error) {
		_, fd, err := e.openFile(e.Dir, "read", e.payload(), unix.O_RDONLY)
		if err != nil {
			return nil, err
		}
		run := func() error {
			buf := make([]byte, 64)
			n, err := unix.Read(fd, buf)
			return full("read", n, err, 16)
		}
		return &Step{Run: run, Close: closeAll([]int{fd})}, nil
	}}
}

// mmapRead faults a shared mapping's page in for reading.
func mmapRead(e *Env) Op {
	prepare := func() (*Step, error) {
		_, fd, err := e.openFile(e.Dir, "mmap-read", e.payload(), unix.O_RDONLY)
		if err != nil {
			return nil, err
		}
		m, err := unix.Mmap(fd, 0, 16, unix.PROT_READ, unix.MAP_SHARED)
		if err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("mmap: %w", err)
		}
		run := func() error {
			if m[0] != 'f' {
				return fmt.Errorf("mapped page starts %q, want the payload", m[:4])
			}
			return nil
		}
		return &Step{Run: run, Close: closeAll([]int{fd}, func() error { return unix.Munmap(m) })}, nil
	}
	return Op{Name: "mmap-read", Kind: KindRead, Negative: true, Prepare: prepare,
		Supported: probe(prepare, unix.ENODEV, unix.EINVAL)}
}

func stat(e *Env) Op {
	return Op{Name: "stat", Kind: KindRead, Negative: true, Supported: always, Prepare: func() (*Step, error) {
		path := e.name(e.Dir, "stat")
		if err := makeFile(path, e.payload()); err != nil {
			return nil, err
		}
		return &Step{Run: func() error {
			var st unix.Stat_t
			return wrap("stat", unix.Stat(path, &st))
		}}, nil
	}}
}

func readdir(e *Env) Op {
	return Op{Name: "readdir", Kind: KindRead, Negative: true, Supported: always, Prepare: func() (*Step, error) {
		dir := e.name(e.Dir, "readdir")
		if err := os.Mkdir(dir, 0o755); err != nil {
			return nil, err
		}
		if err := makeFile(filepath.Join(dir, "entry"), e.payload()); err != nil {
			return nil, err
		}
		fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("open %s: %w", dir, err)
		}
		run := func() error {
			n, err := unix.Getdents(fd, make([]byte, 4096))
			if err == nil && n == 0 {
				err = errors.New("no entries")
			}
			return wrap("getdents64", err)
		}
		return &Step{Run: run, Close: closeAll([]int{fd})}, nil
	}}
}

func readlink(e *Env) Op {
	return Op{Name: "readlink", Kind: KindRead, Negative: true, Supported: always, Prepare: func() (*Step, error) {
		path := e.name(e.Dir, "readlink")
		if err := unix.Symlink("flocker-target", path); err != nil {
			return nil, fmt.Errorf("symlink: %w", err)
		}
		return &Step{Run: func() error {
			_, err := unix.Readlink(path, make([]byte, 64))
			return wrap("readlink", err)
		}}, nil
	}}
}

func getxattr(e *Env) Op {
	set := func(p string) error { return wrap("setxattr", unix.Setxattr(p, xattrName, []byte("one"), 0)) }
	prepare := onFile(e, "getxattr", set, func(p string) error {
		_, err := unix.Getxattr(p, xattrName, make([]byte, 64))
		return wrap("getxattr", err)
	})
	return Op{Name: "getxattr", Kind: KindRead, Negative: true, Prepare: prepare, Supported: probe(prepare, unix.EOPNOTSUPP)}
}

// wrap adds the system call's name to its error.
func wrap(what string, err error) error {
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	return nil
}
