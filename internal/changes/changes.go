//go:build linux

// Package changes is a library of every way a process can change a
// filesystem, and of operations that must not count as a change, each one
// runnable by a test against a directory on a watched filesystem; RunMatrix
// runs them against a notifier and checks that it reports exactly what its
// tier documents.
//
// An operation is prepared first (the files it needs exist, its descriptors
// are open: that may itself change the filesystem), then run, which makes the
// one change it stands for (usually one system call), then closed. Supported
// asks the filesystem, by trying, whether the operation can run there.
package changes

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync/atomic"
)

// ErrUnsupported wraps the filesystem's refusal of an operation.
var ErrUnsupported = errors.New("not supported by this filesystem")

// Kind groups operations by what they change; tiers' blind spots follow it.
type Kind string

const (
	KindData      Kind = "data"      // file contents through a system call
	KindMmap      Kind = "mmap"      // file contents through a shared mapping
	KindSize      Kind = "size"      // truncate, fallocate, open with O_TRUNC
	KindNamespace Kind = "namespace" // names: create, remove, rename, link
	KindAttr      Kind = "attr"      // mode, owner, times, extended attributes
	KindRead      Kind = "read"      // looks without changing: must not count
)

// Env is where operations run. Each operation makes its own uniquely named
// files, so one Env serves a whole matrix.
type Env struct {
	Dir   string // on the watched filesystem
	Other string // on another filesystem: the far side of moves and sendfile
	Aside string // on a third filesystem: Other's far side for Elsewhere
	seq   atomic.Int64
}

// name returns a fresh path in dir for an operation's file.
func (e *Env) name(dir, prefix string) string {
	return filepath.Join(dir, fmt.Sprintf("%s-%d", prefix, e.seq.Add(1)))
}

// Op is one kind of change, or of non-change when Negative.
type Op struct {
	Name string
	Kind Kind
	// Negative operations must not be reported: reads on the watched
	// filesystem, and every change made to another filesystem.
	Negative bool
	// Compound operations make more than one change to the watched
	// filesystem (a move into it creates, writes and closes a file), so a
	// notifier that re-arms between them may rightly report more than one.
	Compound bool
	// Supported returns nil when the filesystem can run the operation, or an
	// error wrapping ErrUnsupported with its answer. It may leave files.
	Supported func() error
	// Prepare readies one run.
	Prepare func() (*Step, error)
}

// Step is one prepared run of an operation.
type Step struct {
	// Run makes the change (or, for a negative, the non-change).
	Run func() error
	// Close releases what Prepare and Run hold (descriptors, mappings). It
	// may change the filesystem again: closing a written file is an event
	// for some tiers. Nil when there is nothing to release.
	Close func() error
}

// close runs s.Close if there is one.
func (s *Step) close() error {
	if s == nil || s.Close == nil {
		return nil
	}
	return s.Close()
}

// Positive returns every kind of change to e.Dir the issue lists.
func Positive(e *Env) []Op {
	return []Op{
		write(e), pwrite(e), writev(e), directWrite(e), aioWrite(e), uringWrite(e, ringPlain),
		mmapStore(e, false), mmapStore(e, true),
		truncatePath(e), ftruncate(e), fallocate(e),
		creat(e), openTrunc(e), unlink(e),
		renameInside(e), renameAcross(e), renameInto(e), renameOutOf(e),
		mkdir(e), rmdir(e), link(e), symlink(e), mknod(e),
		chmod(e), chown(e), utimensat(e), setxattr(e), removexattr(e),
		copyFileRange(e), splice(e), sendfile(e),
	}
}

// IOUringVariants are io_uring writes through a registered (fixed) file and
// through a kernel SQPOLL thread: other paths into the kernel for the eBPF
// tiers' io_uring hooks. Apart from Positive: in a loaded TCG guest the
// fixed-file write once came back ECANCELED (not explained yet).
func IOUringVariants(e *Env) []Op {
	return []Op{uringWrite(e, ringFixed), uringWrite(e, ringSQPoll)}
}

// Reads returns operations that look at e.Dir without changing it.
func Reads(e *Env) []Op {
	return []Op{read(e), mmapRead(e), stat(e), readdir(e), readlink(e), getxattr(e)}
}

// Elsewhere returns every positive operation made to e.Other instead (with
// e.Aside as its far side), named "elsewhere/NAME": changes to another
// filesystem that the watched one must not report.
func Elsewhere(e *Env) []Op {
	other := &Env{Dir: e.Other, Other: e.Aside}
	ops := Positive(other)
	for i := range ops {
		ops[i].Name = "elsewhere/" + ops[i].Name
		ops[i].Negative = true
		ops[i].Compound = false
	}
	return ops
}

// Negative is Reads followed by Elsewhere.
func Negative(e *Env) []Op {
	return append(Reads(e), Elsewhere(e)...)
}

// All is Positive followed by Negative.
func All(e *Env) []Op {
	return append(Positive(e), Negative(e)...)
}

// Names lists the operations' names, for expectations and messages.
func Names(ops []Op) []string {
	names := make([]string, len(ops))
	for i, op := range ops {
		names[i] = op.Name
	}
	return names
}
