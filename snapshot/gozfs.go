package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	gozfs "github.com/mistifyio/go-zfs/v4"
)

// backend is the code that runs an operation's zfs commands.
type backend string

const (
	backendExec  backend = "exec"   // CLI: our own context-aware exec
	backendGoZFS backend = "go-zfs" // github.com/mistifyio/go-zfs/v4
)

// The operations go-zfs runs where it fits (see goZFSFits), named by the
// shape of the call: the same method with another shape (a batch, -p on
// create, a bookmark) stays on our exec.
const (
	goOpCreate          = "create"           // CreateDataset without Parents: CreateFilesystem
	goOpExists          = "exists"           // a dataset or snapshot (not a bookmark): GetDataset
	goOpMountpoint      = "mountpoint"       // GetDataset, then Dataset.GetProperty("mounted")
	goOpSpace           = "space"            // GetDataset: used, available
	goOpWritten         = "written"          // GetDataset: written
	goOpSetProperty     = "set property"     // one property: Dataset.SetProperty
	goOpSnapshot        = "snapshot"         // one snapshot: Dataset.Snapshot
	goOpDestroySnapshot = "destroy snapshot" // one snapshot: Dataset.Destroy
	goOpDestroyDataset  = "destroy"          // a file system, -r or not: Dataset.Destroy
	goOpRollback        = "rollback"         // -r or not: Dataset.Rollback
	goOpClone           = "clone"            // GetDataset of the parent, then Dataset.Clone
	goOpRename          = "rename"           // Dataset.Rename
	goOpMount           = "mount"            // Dataset.Mount
	goOpUnmount         = "unmount"          // Dataset.Unmount, never forced
	goOpPools           = "list pools"       // ListZpools
)

// goZFSOps lists every operation go-zfs may run.
var goZFSOps = []string{
	goOpCreate, goOpExists, goOpMountpoint, goOpSpace, goOpWritten, goOpSetProperty,
	goOpSnapshot, goOpDestroySnapshot, goOpDestroyDataset, goOpRollback, goOpClone,
	goOpRename, goOpMount, goOpUnmount, goOpPools,
}

// goZFSFits says whether go-zfs's command lines and parsing hold for a
// dialect: every dataset call of go-zfs ends in `zfs list -Hp -o
// name,origin,...,written,logicalused,usedbydataset` and GetZpool runs
// `zpool get -Hp`, so it needs OpenZFS with `list -p` and the written
// property, both detected. zfs-fuse has neither (no -p on list or get).
func goZFSFits(d Dialect) bool {
	return d.Name == DialectOpenZFS && d.Features.ListParsable && d.Features.WrittenProperty
}

// routeOf is the backend that runs op: go-zfs when it has op, fits the
// dialect, and would run the binaries the adapter was given (go-zfs runs
// "zfs" and "zpool" from PATH, with no way to name others).
func routeOf(op string, fits, pathBinaries bool) backend {
	if fits && pathBinaries && isGoZFSOp(op) {
		return backendGoZFS
	}
	return backendExec
}

func isGoZFSOp(op string) bool {
	for _, o := range goZFSOps {
		if o == op {
			return true
		}
	}
	return false
}

// runsPathBinaries reports whether the CLI's zfs and zpool are the files
// PATH gives for "zfs" and "zpool", the ones go-zfs runs.
func runsPathBinaries(c *CLI) bool {
	return samePathBinary(c.zfs, "zfs") && samePathBinary(c.zpool, "zpool")
}

func samePathBinary(given, name string) bool {
	a, err1 := exec.LookPath(given)
	b, err2 := exec.LookPath(name)
	if err1 != nil || err2 != nil {
		return false
	}
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// Bounds of the commands go-zfs runs. go-zfs takes no context: when the
// caller's context ends, the adapter returns the context's error at once
// and leaves the go-zfs call running (see goZFS). What ends that call's
// command is go-zfs v4's package-level Runner: SIGTERM after
// goZFSChildLimit, SIGKILL goZFSGrace later. The limit is far above the
// agent's --zfs-timeout (default 2 min) and what any of these commands takes
// on a loaded host, so it cuts no call a caller still waits for; it only
// reaps commands whose callers gave up (a hung pool). A command stuck in
// the kernel dies only when its ioctl returns, as with our own exec.
const (
	goZFSChildLimit = 10 * time.Minute
	goZFSGrace      = 10 * time.Second
)

// setGoZFSRunner installs the bounds, once per process, when the first
// adapter that routes to go-zfs is made. Nothing else in flocker uses
// go-zfs, so nothing else sets its Runner.
var setGoZFSRunner = sync.OnceFunc(func() {
	gozfs.SetRunner(&gozfs.Runner{Timeout: goZFSChildLimit, Grace: goZFSGrace})
})

// goZFSStats counts the calls an adapter made through go-zfs, per
// operation, and the calls left running after their caller's context ended.
type goZFSStats struct {
	mu        sync.Mutex
	calls     map[string]int
	abandoned atomic.Int64 // still running
}

func (s *goZFSStats) add(op string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.calls == nil {
		s.calls = map[string]int{}
	}
	s.calls[op]++
}

func (s *goZFSStats) snapshot() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.calls)
}

// backendOf is the backend this adapter uses for op.
func (z *ZFS) backendOf(op string) backend {
	return routeOf(op, goZFSFits(z.dialect), z.pathBinaries)
}

// useGoZFS reports whether op runs through go-zfs on this adapter.
func (z *ZFS) useGoZFS(op string) bool { return z.backendOf(op) == backendGoZFS }

// goZFS runs call, one go-zfs call of goOp for the adapter's op on target, bounded by ctx: when
// ctx ends first, goZFS returns its error at once and the call is left to
// end on its own or by go-zfs's child bound (goZFSChildLimit); its outcome
// is then logged and otherwise lost, so the caller cannot tell whether it
// took effect (as with a killed command of our own exec). cmd is what
// go-zfs runs, for the log: go-zfs's own logger is a package global and
// stays unset. A panic in go-zfs (it indexes its output unchecked) becomes
// an error. A failure becomes our typed errors, parsed from the stderr
// go-zfs keeps.
func (z *ZFS) goZFS(ctx context.Context, goOp, op, target string, cmd []string, call func() error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s %s: %w", op, target, err)
	}
	z.goStats.add(goOp)
	const running, finished, abandoned = 0, 1, 2
	var state atomic.Int32
	done := make(chan error, 1)
	start := time.Now()
	go func() {
		var err error
		defer func() {
			if r := recover(); r != nil {
				err = fmt.Errorf("go-zfs panicked: %v", r)
			}
			if !state.CompareAndSwap(running, finished) {
				z.goStats.abandoned.Add(-1)
				// Abandoned only once ctx ended: its Err says why.
				z.cli.log.Log(context.Background(), abandonedCallLevel(ctx.Err()), "abandoned go-zfs call ended", "args", cmd, "took", time.Since(start), "err", err)
			}
			done <- err
		}()
		err = call()
	}()
	var err error
	select {
	case err = <-done:
	case <-ctx.Done():
		z.goStats.abandoned.Add(1)
		if !state.CompareAndSwap(running, abandoned) {
			// It finished as the context ended: take its outcome.
			z.goStats.abandoned.Add(-1)
			err = <-done
			break
		}
		z.cli.log.Log(ctx, abandonedCallLevel(ctx.Err()), "go-zfs call abandoned: its command is killed after the child limit", "args", cmd, "after", time.Since(start), "limit", goZFSChildLimit, "why", ctx.Err())
		return fmt.Errorf("%s %s: %w (go-zfs runs %s on, until it ends or %v have passed)", op, target, ctx.Err(), strings.Join(cmd, " "), goZFSChildLimit)
	}
	z.cli.log.Debug("zfs command", "via", backendGoZFS, "args", cmd, "exit", goZFSExitCode(err), "took", time.Since(start))
	if err != nil {
		return goZFSError(op, target, err)
	}
	return nil
}

// abandonedCallLevel is how loudly a call left running is logged: a
// deadline means the command outlasted its bound (a hung pool, perhaps);
// a cancel means the caller stopped waiting (the agent stopping, a role
// change), which is routine.
func abandonedCallLevel(why error) slog.Level {
	if errors.Is(why, context.DeadlineExceeded) {
		return slog.LevelWarn
	}
	return slog.LevelInfo
}

// goZFSError turns a failed go-zfs call into the error an operation
// returns: its *gozfs.Error becomes a *CmdError (go-zfs's Debug is the
// binary and arguments joined with spaces; validated names hold none) and
// goes through the same stderr parser as our own exec's failures.
func goZFSError(op, target string, err error) error {
	var ge *gozfs.Error
	if !errors.As(err, &ge) {
		return fmt.Errorf("%s %s: go-zfs: %w", op, target, err)
	}
	f := strings.Fields(ge.Debug)
	ce := &CmdError{ExitCode: goZFSExitCode(err), Stderr: ge.Stderr, Err: ge.Err}
	if len(f) > 0 {
		ce.Path, ce.Args = f[0], f[1:]
	}
	return zfsError(op, target, ce)
}

// goZFSExitCode is the exit code of a go-zfs call's failed command: 0 on
// success, -1 when it did not exit on its own or did not run.
func goZFSExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ge *gozfs.Error
	if errors.As(err, &ge) {
		err = ge.Err // go-zfs's Error has no Unwrap
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// goDataset is a go-zfs handle on a name validated by the caller. go-zfs
// checks Type before snapshot-only and file-system-only calls; the adapter
// knows the type from the validated name, so no GetDataset is run to learn it.
func goDataset(name string) *gozfs.Dataset {
	typ := gozfs.DatasetFilesystem
	if strings.Contains(name, "@") {
		typ = gozfs.DatasetSnapshot
	}
	return &gozfs.Dataset{Name: name, Type: typ}
}

// goZFSListArgs is the `zfs list` go-zfs's GetDataset runs, for the log.
func goZFSListArgs(name string) []string {
	return []string{"list", "-Hp", "-o", "name,origin,used,available,mountpoint,compression,type,volsize,quota,referenced,written,logicalused,usedbydataset", name}
}
