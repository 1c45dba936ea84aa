package rig

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// zfs-fuse deadlocks now and then under parallel load (seen four times on
// these machines, once in CI): first every FUSE request waits forever, later
// the CLI socket too; only a restart cures it. The rig checks the daemon's
// health when a user arrives and, with ZFSOptions.Watchdog, every
// wedgeCheckEvery while the process holds the daemon, and restarts a wedged
// daemon that flocker's setup or the rig started. Each restart is appended to
// RunDir/WedgeLogName so a test runner can tell an upstream deadlock from a
// failure of ours.

// WedgeLogName is the file in RunDir that lists the restarts of a wedged
// daemon, one line each.
const WedgeLogName = "zfs-fuse.wedges"

// setupPIDFile is where scripts/setup-host.sh keeps the daemon's pid.
const setupPIDFile = "/run/zfs-fuse.pid"

// kstatMount is where zfs-fuse serves its statistics (not always mounted).
const kstatMount = "/zfs-kstat"

// Variables only so that tests can shorten them.
var (
	// wedgeProbeTimeout is how long one request may wait before the daemon
	// counts as wedged: milliseconds normally, seconds on a loaded 2-core
	// machine; a false restart fails every test on the daemon, so be patient.
	wedgeProbeTimeout = 90 * time.Second
	wedgeCheckEvery   = 15 * time.Second
)

// statfsProbe is one statfs in flight. A statfs stuck in the kernel cannot
// be cancelled: later checks of the same path wait on the same probe.
type statfsProbe struct {
	done  chan struct{}
	since time.Time
	err   error // set before done closes
}

var fuseProbes = struct {
	sync.Mutex
	m map[string]*statfsProbe
}{m: map[string]*statfsProbe{}}

// probeStatfs returns the probe in flight for path, starting one if none is.
func probeStatfs(path string) *statfsProbe {
	fuseProbes.Lock()
	defer fuseProbes.Unlock()
	if p := fuseProbes.m[path]; p != nil {
		return p
	}
	p := &statfsProbe{done: make(chan struct{}), since: time.Now()}
	fuseProbes.m[path] = p
	go func() {
		// Abandoned while it blocks; a restart of the daemon ends it.
		var st unix.Statfs_t
		p.err = unix.Statfs(path, &st)
		fuseProbes.Lock()
		delete(fuseProbes.m, path)
		fuseProbes.Unlock()
		close(p.done)
	}()
	return p
}

// FUSEServes checks that the daemon answers FUSE requests: a statfs on its
// kstat mount or on one of its pools' root mounts succeeds before every one
// of them has waited for timeout. The CLI socket may answer while the FUSE
// side hangs, and then every access to a dataset blocks. One answer is
// enough: a single file system may hang alone (a stash's mount did, under
// load) while the daemon serves the others, and that is one test's failure,
// not a reason to restart the daemon under everyone. A statfs that fails
// (a stale mount of a dead daemon) is no evidence either way.
func FUSEServes(timeout time.Duration) error {
	paths, err := probeMounts()
	if err != nil {
		return err
	}
	probes := make([]*statfsProbe, len(paths))
	for i, p := range paths {
		probes[i] = probeStatfs(p)
	}
	for {
		stuck, least := 0, timeout
		for _, p := range probes {
			select {
			case <-p.done:
				if p.err == nil {
					return nil
				}
				continue
			default:
			}
			stuck++
			least = min(least, time.Since(p.since))
		}
		if stuck == 0 {
			return nil // nothing live to ask
		}
		if least >= timeout {
			return fmt.Errorf("statfs on %s waiting for %v or more: the daemon does not serve its mounts", strings.Join(paths, ", "), least.Round(time.Second))
		}
		time.Sleep(min(timeout-least, 100*time.Millisecond))
	}
}

// daemonHealth returns why a running daemon counts as wedged, or nil.
func daemonHealth(ctx context.Context) error {
	if !answersWithin(ctx, wedgeProbeTimeout) {
		return fmt.Errorf("its CLI socket did not answer `zpool list` within %v", wedgeProbeTimeout)
	}
	return FUSEServes(wedgeProbeTimeout)
}

func answersWithin(ctx context.Context, d time.Duration) bool {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	return zfsAnswers(ctx)
}

// ownedDaemon returns the pid of the running zfs-fuse and the pid file that
// names it, when flocker's setup script or the rig started it.
func ownedDaemon(runDir string) (int, string, error) {
	pids := sameMountNS(processesNamed("zfs-fuse"))
	if len(pids) == 0 {
		return 0, "", nil
	}
	for _, file := range []string{filepath.Join(runDir, "zfs-fuse.pid"), setupPIDFile} {
		data, err := os.ReadFile(file)
		if err != nil {
			continue
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		for _, p := range pids {
			if p == pid {
				return pid, file, nil
			}
		}
	}
	return 0, "", fmt.Errorf("zfs-fuse (pids %v) was not started by flocker's setup or rig (no pid file names it): restart it by hand", pids)
}

// restartWedged kills the wedged daemon, detaches its dead mounts, records
// the restart and starts a fresh daemon. The caller holds the start lock.
func (z *ZFS) restartWedged(ctx context.Context, reason error, timeout time.Duration) error {
	pid, pidFile, err := ownedDaemon(z.runDir)
	if err != nil {
		return fmt.Errorf("zfs-fuse is wedged (%v); %w", reason, err)
	}
	z.log.Error("zfs-fuse is wedged (an upstream deadlock); restarting it", "pid", pid, "reason", reason)
	if pid > 0 {
		// A wedged daemon ignores SIGTERM; nothing it holds can be saved.
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return fmt.Errorf("killing wedged zfs-fuse (pid %d): %w", pid, err)
		}
		if !waitGone(pid, "zfs-fuse", 30*time.Second) {
			return fmt.Errorf("wedged zfs-fuse (pid %d) survives SIGKILL", pid)
		}
	}
	detached, err := detachDaemonMounts()
	if err != nil {
		return fmt.Errorf("after killing wedged zfs-fuse: %w", err)
	}
	if pidFile != "" {
		if err := os.Remove(pidFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("after killing wedged zfs-fuse: %w", err)
		}
	}
	// Recorded once the new daemon answers (or could not be started): the
	// kill is what a test runner must know about, either way.
	startErr := z.start(ctx, timeout)
	outcome := fmt.Sprintf("restarted as pid %d", z.pid)
	if startErr != nil {
		outcome = "restart failed: " + startErr.Error()
	}
	return errors.Join(startErr, z.recordWedge(pid, reason, detached, outcome))
}

func (z *ZFS) recordWedge(pid int, reason error, detached int, outcome string) error {
	f, err := os.OpenFile(filepath.Join(z.runDir, WedgeLogName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("recording zfs-fuse restart: %w", err)
	}
	defer f.Close()
	_, err = fmt.Fprintf(f, "%s pid=%d detached=%d reason=%q %s\n", time.Now().UTC().Format(time.RFC3339), pid, detached, reason.Error(), outcome)
	if err != nil {
		return fmt.Errorf("recording zfs-fuse restart: %w", err)
	}
	return nil
}

// daemonMounts lists the mounts a zfs-fuse daemon serves in this mount
// namespace, deepest first, with each one's source (the dataset, or kstat).
func daemonMounts() (paths, sources []string, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, nil, fmt.Errorf("reading mounts: %w", err)
	}
	defer f.Close()
	return parseDaemonMounts(f)
}

// parseDaemonMounts reads mountinfo for daemonMounts.
func parseDaemonMounts(r io.Reader) (paths, sources []string, err error) {
	type mount struct{ path, source string }
	var mounts []mount
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		// mountinfo: id parent maj:min root mountpoint opts [optional...] - fstype source superopts
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, s := range fields {
			if s == "-" {
				sep = i
				break
			}
		}
		if sep < 5 || sep+2 >= len(fields) {
			continue
		}
		mp, fstype, source := unescapeMount(fields[4]), fields[sep+1], unescapeMount(fields[sep+2])
		if fstype == "fuse.zfs" || (fstype == "fuse" && mp == kstatMount) {
			mounts = append(mounts, mount{mp, source})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, nil, fmt.Errorf("reading mounts: %w", err)
	}
	sort.SliceStable(mounts, func(i, j int) bool { return len(mounts[i].path) > len(mounts[j].path) })
	for _, m := range mounts {
		paths, sources = append(paths, m.path), append(sources, m.source)
	}
	return paths, sources, nil
}

// probeMounts is what FUSEServes asks: the kstat mount and the pools' root
// mounts (source without a '/'), never the datasets below them.
func probeMounts() ([]string, error) {
	paths, sources, err := daemonMounts()
	if err != nil {
		return nil, err
	}
	return pickProbes(paths, sources), nil
}

func pickProbes(paths, sources []string) []string {
	var probes []string
	for i, p := range paths {
		if p == kstatMount || !strings.Contains(sources[i], "/") {
			probes = append(probes, p)
		}
	}
	return probes
}

// detachDaemonMounts lazily unmounts every mount a dead daemon served
// (deepest first); their users get errors instead of waiting forever.
func detachDaemonMounts() (int, error) {
	paths, _, err := daemonMounts()
	if err != nil {
		return 0, err
	}
	var errs []error
	n := 0
	for _, p := range paths {
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("detaching %s: %w", p, err))
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// watchdogs: one per process, running while the process holds the daemon.
var watchdog struct {
	sync.Mutex
	users  int
	cancel context.CancelFunc
}

// watch starts the process's watchdog with the first watching user.
func (z *ZFS) watch(opts ZFSOptions) {
	watchdog.Lock()
	defer watchdog.Unlock()
	watchdog.users++
	if watchdog.users > 1 {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	watchdog.cancel = cancel
	runDir, log := z.runDir, z.log
	go func() {
		t := time.NewTicker(wedgeCheckEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			if err := daemonHealth(ctx); err == nil || ctx.Err() != nil {
				continue
			}
			// EnsureZFS re-checks under the start lock and restarts; not
			// under ctx: the last user leaving must not cut a restart short.
			h, err := EnsureZFS(context.Background(), ZFSOptions{RunDir: runDir, Logger: log, StartTimeout: opts.StartTimeout})
			if err != nil {
				log.Error("zfs-fuse watchdog", "err", err)
				continue
			}
			h.Close()
		}
	}()
}

func unwatch() {
	watchdog.Lock()
	defer watchdog.Unlock()
	watchdog.users--
	if watchdog.users == 0 && watchdog.cancel != nil {
		watchdog.cancel()
		watchdog.cancel = nil
	}
}
