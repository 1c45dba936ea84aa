package rig

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// zfsCmdTimeout bounds one zpool/zfs call: they take milliseconds on a
// healthy daemon, and a hung daemon must not hang a test run.
const zfsCmdTimeout = 60 * time.Second

// run executes a zfs-fuse CLI (zpool, zfs) and returns its stdout; the error
// carries the command line and stderr.
func run(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, zfsCmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	// zpool destroy forks umount, which inherits the pipes; stuck on a wedged
	// daemon it kept Wait waiting for EOF for an hour after the kill (CI).
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// zfsAnswers reports whether a zfs-fuse daemon serves the CLI socket.
func zfsAnswers(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "zpool", "list", "-H", "-o", "name")
	cmd.WaitDelay = time.Second
	return cmd.Run() == nil
}

// listPools returns the names of the pools the daemon knows.
func listPools(ctx context.Context) ([]string, error) {
	out, err := run(ctx, "zpool", "list", "-H", "-o", "name")
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

func poolExists(ctx context.Context, name string) (bool, error) {
	pools, err := listPools(ctx)
	if err != nil {
		return false, err
	}
	for _, p := range pools {
		if p == name {
			return true, nil
		}
	}
	return false, nil
}

// How long teardown retries a busy pool by default. A file closed (or its
// process killed) just before keeps the pool busy until zfs-fuse has handled
// the release, which took several seconds on a loaded 2-core machine. Sweep,
// which runs inside every constructor, waits less: a pool something else
// keeps busy for good would otherwise slow every rig start.
const (
	closeDestroyWait = 30 * time.Second
	sweepDestroyWait = 10 * time.Second
)

// destroyPool runs `zpool destroy` until it succeeds, the pool is gone, or
// wait passes. It never forces (-f): on zfs-fuse a forced unmount of a file
// system with an open file wedges the pool (busy forever, the daemon deaf to
// SIGTERM) once the file is closed. A plain destroy refuses a busy file
// system and changes nothing, so retrying it is safe.
func destroyPool(ctx context.Context, name string, wait time.Duration, log *slog.Logger) error {
	deadline := time.Now().Add(wait)
	for attempt := 1; ; attempt++ {
		_, err := run(ctx, "zpool", "destroy", name)
		if err == nil {
			return nil
		}
		if exists, lerr := poolExists(ctx, name); lerr == nil && !exists {
			return nil
		}
		if !strings.Contains(err.Error(), "busy") || time.Now().After(deadline) {
			return fmt.Errorf("destroying pool %s (%d attempts): %w", name, attempt, err)
		}
		if attempt == 1 {
			log.Info("pool busy, retrying destroy", "pool", name, "for", wait)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("destroying pool %s: %w (last error: %v)", name, ctx.Err(), err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// ZFSOptions configures EnsureZFS.
type ZFSOptions struct {
	// RunDir holds the daemon's lock files and, when the rig starts the
	// daemon, its pid file and log. Default DefaultRunDir.
	RunDir string
	// StartTimeout bounds waiting for a daemon to answer. Default 60 s: a
	// start takes about a second, but the machine may be busy with builds.
	StartTimeout time.Duration
	Logger       *slog.Logger
	// Watchdog checks the daemon every 15 s while this handle is open and
	// restarts it when wedged (tests: a wedge must cost one test, not a run).
	Watchdog bool
}

// ZFS is one user's hold on the zfs-fuse daemon. Every holder keeps a shared
// lock on RunDir/zfs-fuse.users; the holder that started the daemon stops it
// on Close only when it can take that lock exclusively (no other rig user) and
// the daemon has no pools left (none of anyone else's either).
type ZFS struct {
	runDir   string
	log      *slog.Logger
	users    *os.File
	started  bool
	pid      int
	watching bool

	closeOnce sync.Once
	closeErr  error
}

// Started reports whether this handle started the daemon (and so may stop it).
func (z *ZFS) Started() bool { return z.started }

// PID is the daemon's pid when this handle started it, else 0.
func (z *ZFS) PID() int { return z.pid }

// EnsureZFS returns once the zfs-fuse daemon answers, starting it when no
// daemon runs. Starting is serialised across processes by a flock on
// RunDir/zfs-fuse.lock, so two test packages racing here start one daemon.
func EnsureZFS(ctx context.Context, opts ZFSOptions) (_ *ZFS, err error) {
	z := &ZFS{runDir: runDirOr(opts.RunDir), log: loggerOr(opts.Logger)}
	timeout := opts.StartTimeout
	if timeout == 0 {
		timeout = 60 * time.Second
	}
	if err := os.MkdirAll(z.runDir, 0o700); err != nil {
		return nil, fmt.Errorf("zfs-fuse: creating %s: %w", z.runDir, err)
	}
	startLock, err := openLocked(ctx, filepath.Join(z.runDir, "zfs-fuse.lock"), unix.LOCK_EX)
	if err != nil {
		return nil, fmt.Errorf("zfs-fuse: %w", err)
	}
	defer startLock.Close()
	// Exclusive holders of the users lock only exist inside the start lock,
	// which we hold, so this never waits.
	z.users, err = openLocked(ctx, filepath.Join(z.runDir, "zfs-fuse.users"), unix.LOCK_SH)
	if err != nil {
		return nil, fmt.Errorf("zfs-fuse: %w", err)
	}
	defer func() {
		if err != nil {
			z.users.Close()
		}
	}()
	if err := z.ensure(ctx, timeout); err != nil {
		return nil, err
	}
	if opts.Watchdog {
		z.watching = true
		z.watch(opts)
	}
	return z, nil
}

// ensure makes the daemon answer on both sides (CLI socket and FUSE),
// starting it or restarting a wedged one. The caller holds the start lock.
func (z *ZFS) ensure(ctx context.Context, timeout time.Duration) error {
	if zfsAnswers(ctx) {
		if err := FUSEServes(wedgeProbeTimeout); err != nil {
			return z.restartWedged(ctx, err, timeout)
		}
		return nil
	}
	if pids := sameMountNS(processesNamed("zfs-fuse")); len(pids) > 0 {
		// Someone else is starting it (setup-host.sh, an operator): wait for
		// that daemon rather than start a second one.
		z.log.Info("zfs-fuse runs but does not answer yet; waiting", "pids", pids)
		if err := waitAnswers(ctx, timeout); err != nil {
			return z.restartWedged(ctx, fmt.Errorf("zfs-fuse (pids %v) does not answer: %w", pids, err), timeout)
		}
		return nil
	}
	return z.start(ctx, timeout)
}

func (z *ZFS) start(ctx context.Context, timeout time.Duration) error {
	bin, err := exec.LookPath("zfs-fuse")
	if err != nil {
		return fmt.Errorf("zfs-fuse not installed (run make setup): %w", err)
	}
	pidFile := filepath.Join(z.runDir, "zfs-fuse.pid")
	// zfs-fuse refuses to start while its pid file exists; ours can only be
	// stale here, since no zfs-fuse process runs.
	if err := os.Remove(pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("zfs-fuse: removing stale pid file: %w", err)
	}
	logFile, err := os.OpenFile(filepath.Join(z.runDir, "zfs-fuse.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("zfs-fuse: %w", err)
	}
	defer logFile.Close()
	// The command daemonizes and exits; its output goes to a file, not a
	// pipe, so Run does not wait for the daemon to close inherited pipes.
	cmd := exec.CommandContext(ctx, bin, "--pidfile", pidFile)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("starting zfs-fuse (log %s): %w", logFile.Name(), err)
	}
	// The pid file is written right after the fork; give it the same time.
	var pid int
	deadline := time.Now().Add(timeout)
	for {
		data, _ := os.ReadFile(pidFile)
		if pid, _ = strconv.Atoi(strings.TrimSpace(string(data))); pid > 0 && processName(pid) == "zfs-fuse" {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("zfs-fuse started but %s names no zfs-fuse process (log %s)", pidFile, logFile.Name())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := waitAnswers(ctx, timeout); err != nil {
		// Ours, and useless: stop it rather than leave it to the next user.
		return errors.Join(fmt.Errorf("started zfs-fuse does not answer (log %s): %w", logFile.Name(), err),
			stopProcess(pid, "zfs-fuse", 15*time.Second))
	}
	z.started, z.pid = true, pid
	z.log.Info("started zfs-fuse", "pid", pid)
	return nil
}

func waitAnswers(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !zfsAnswers(ctx) {
		if time.Now().After(deadline) {
			return fmt.Errorf("no answer within %v", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return nil
}

// Close releases this hold; when this handle started the daemon and nothing
// else uses it, it stops the daemon by pid. A daemon still in use is left
// running and logged: it outlives its starter, never its users.
func (z *ZFS) Close() error {
	z.closeOnce.Do(func() { z.closeErr = z.close() })
	return z.closeErr
}

func (z *ZFS) close() error {
	if z.watching {
		unwatch()
	}
	if !z.started {
		return z.users.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	startLock, err := openLocked(ctx, filepath.Join(z.runDir, "zfs-fuse.lock"), unix.LOCK_EX)
	if err != nil {
		return errors.Join(fmt.Errorf("zfs-fuse: %w", err), z.users.Close())
	}
	defer startLock.Close()
	// Converting our shared lock fails while any other holder has one. (A
	// failed conversion may drop our lock; we are leaving anyway.)
	if err := unix.Flock(int(z.users.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		z.log.Info("leaving zfs-fuse running: other rig users hold it", "pid", z.pid)
		return z.users.Close()
	}
	if pools, err := listPools(ctx); err != nil || len(pools) > 0 {
		z.log.Info("leaving zfs-fuse running: it still has pools", "pid", z.pid, "pools", pools, "err", err)
		return z.users.Close()
	}
	err = stopProcess(z.pid, "zfs-fuse", 15*time.Second)
	if err == nil {
		z.log.Info("stopped zfs-fuse", "pid", z.pid)
	}
	return errors.Join(err, z.users.Close())
}

// stopProcess sends SIGTERM to pid if it still is the named process, waits,
// and sends SIGKILL when it has not exited in time. The name check guards
// against a reused pid.
func stopProcess(pid int, name string, wait time.Duration) error {
	if processName(pid) != name {
		return nil // already gone
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stopping %s (pid %d): %w", name, pid, err)
	}
	if waitGone(pid, name, wait) {
		return nil
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing %s (pid %d): %w", name, pid, err)
	}
	if waitGone(pid, name, 5*time.Second) {
		return fmt.Errorf("%s (pid %d) ignored SIGTERM for %v and was killed", name, pid, wait)
	}
	return fmt.Errorf("%s (pid %d) survives SIGKILL", name, pid)
}

func waitGone(pid int, name string, wait time.Duration) bool {
	deadline := time.Now().Add(wait)
	for processName(pid) == name {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// processName is the comm of a live process, or "" when pid is no process or
// an exited one: a zombie whose threads have all ended holds nothing any more.
// (A leader that ended while other threads run also shows as a zombie, but
// the process is alive: zfs-fuse does that while it shuts down.)
func processName(pid int) string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// stat is "pid (comm) state ...": comm may hold spaces and parentheses.
	s := string(stat)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open || len(s) < end+3 {
		return ""
	}
	if s[end+2] == 'Z' {
		if tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid)); err != nil || len(tasks) <= 1 {
			return ""
		}
	}
	return s[open+1 : end]
}

// processesNamed lists live processes whose comm is name.
func processesNamed(name string) []int {
	var pids []int
	for _, pid := range allPIDs() {
		if processName(pid) == name {
			pids = append(pids, pid)
		}
	}
	return pids
}

// sameMountNS keeps the pids that share this process's mount namespace: a
// zfs-fuse elsewhere serves a socket and mounts this process does not see.
func sameMountNS(pids []int) []int {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return pids
	}
	var out []int
	for _, pid := range pids {
		if ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); err == nil && ns == self {
			out = append(out, pid)
		}
	}
	return out
}

func allPIDs() []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	pids := make([]int, 0, len(entries))
	for _, e := range entries {
		if pid, err := strconv.Atoi(e.Name()); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// openLocked opens (creating) a lock file and flocks it with how, polling so
// that ctx can end the wait.
func openLocked(ctx context.Context, path string, how int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening lock: %w", err)
	}
	for {
		err := unix.Flock(int(f.Fd()), how|unix.LOCK_NB)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("locking %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for lock %s: %w", path, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
