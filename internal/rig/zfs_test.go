package rig_test

import (
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
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/rig"
	"github.com/flockerha/flocker/internal/rig/rigtest"
	"github.com/flockerha/flocker/internal/testutil"
	"golang.org/x/sys/unix"
)

func zpoolNames(t testing.TB) []string {
	t.Helper()
	out, err := exec.Command("zpool", "list", "-H", "-o", "name").Output()
	if err != nil {
		t.Fatalf("zpool list: %v", err)
	}
	return strings.Fields(string(out))
}

func hasPool(t testing.TB, name string) bool {
	for _, p := range zpoolNames(t) {
		if p == name {
			return true
		}
	}
	return false
}

func isMountpoint(t testing.TB, dir string) bool {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && f[4] == dir {
			return true
		}
	}
	return false
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

func TestPoolLifecycle(t *testing.T) {
	const size = 256 << 20
	p := rigtest.Pool(t, rig.PoolOptions{Size: size})

	if !strings.HasPrefix(p.Name, "flkrig-"+strconv.Itoa(os.Getpid())+"-") {
		t.Errorf("pool name %q does not carry the flkrig-<pid>- prefix", p.Name)
	}
	if !hasPool(t, p.Name) {
		t.Fatalf("pool %s not in zpool list", p.Name)
	}
	var st unix.Stat_t
	if err := unix.Stat(p.Vdev, &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != size || st.Blocks*512 >= size/2 {
		t.Errorf("vdev %s: size %d (want %d), allocated %d bytes: want a sparse file", p.Vdev, st.Size, size, st.Blocks*512)
	}
	if filepath.Dir(p.Mountpoint) != p.Dir || !isMountpoint(t, p.Mountpoint) {
		t.Errorf("root dataset mountpoint %s: want a mount inside %s", p.Mountpoint, p.Dir)
	}

	ds := rigtest.Dataset(t, p, "app", map[string]string{"compression": "on"})
	if ds.Name != p.Name+"/app" || ds.Mountpoint != filepath.Join(p.Mountpoint, "app") {
		t.Errorf("dataset = %+v, want %s/app mounted at %s/app", ds, p.Name, p.Mountpoint)
	}
	out, err := exec.Command("zfs", "get", "-H", "-o", "value", "compression", ds.Name).Output()
	if err != nil || strings.TrimSpace(string(out)) != "on" {
		t.Errorf("compression of %s = %q (%v), want on", ds.Name, out, err)
	}
	file := filepath.Join(ds.Mountpoint, "data")
	want := []byte("written through zfs-fuse\n")
	if err := os.WriteFile(file, want, 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(file); err != nil || string(got) != string(want) {
		t.Fatalf("read back %q (%v), want %q", got, err, want)
	}
	for _, bad := range []string{"", "../x", "/abs", "app/", "snap@x"} {
		if _, err := p.CreateDataset(context.Background(), bad, nil); err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) {
			t.Errorf("CreateDataset(%q) = %v, want an error naming it", bad, err)
		}
	}

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if hasPool(t, p.Name) {
		t.Errorf("pool %s still exists after Close", p.Name)
	}
	if exists(p.Dir) {
		t.Errorf("pool directory %s still exists after Close", p.Dir)
	}
	if err := p.Close(); err != nil {
		t.Errorf("second Close = %v, want nil (idempotent)", err)
	}
}

func TestPoolSizeTooSmall(t *testing.T) {
	_, err := rig.CreatePool(context.Background(), rig.PoolOptions{Size: 1 << 20})
	if err == nil || !strings.Contains(err.Error(), "pool size 1048576") {
		t.Fatalf("CreatePool(1 MiB) = %v, want an error naming the size", err)
	}
}

// A busy pool is retried until its files are closed; one that stays busy is
// reported with its holders and left for Sweep.
func TestPoolCloseWhileBusy(t *testing.T) {
	rigtest.ZFS(t)
	runDir := t.TempDir()
	ctx := context.Background()

	t.Run("released while retrying", func(t *testing.T) {
		p, err := rig.CreatePool(ctx, rig.PoolOptions{Size: 128 << 20, RunDir: runDir, Logger: rigtest.Logger(t), BusyWait: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(p.Mountpoint, "held"))
		if err != nil {
			p.Close()
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- p.Close() }()
		time.Sleep(time.Second)
		if !hasPool(t, p.Name) {
			t.Errorf("pool %s destroyed while a file in it was open", p.Name)
		}
		f.Close()
		if err := <-done; err != nil {
			t.Fatalf("Close after the file was closed: %v", err)
		}
		if hasPool(t, p.Name) || exists(p.Dir) {
			t.Errorf("pool %s or its directory left after Close", p.Name)
		}
	})

	t.Run("stays busy", func(t *testing.T) {
		p, err := rig.CreatePool(ctx, rig.PoolOptions{Size: 128 << 20, RunDir: runDir, Logger: rigtest.Logger(t), BusyWait: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		f, err := os.Create(filepath.Join(p.Mountpoint, "held"))
		if err != nil {
			p.Close()
			t.Fatal(err)
		}
		err = p.Close()
		self := fmt.Sprintf("pid %d", os.Getpid())
		if err == nil || !strings.Contains(err.Error(), "busy") || !strings.Contains(err.Error(), self) {
			t.Errorf("Close of a busy pool = %v, want a busy error naming %s", err, self)
		}
		if !hasPool(t, p.Name) || !exists(p.Vdev) {
			t.Fatalf("busy pool %s or its vdev gone although Close failed", p.Name)
		}
		f.Close()
		// The record stayed and nobody holds it any more: Sweep finishes.
		if err := rig.Sweep(ctx, rig.SweepOptions{RunDir: runDir, BusyWait: time.Minute, Logger: rigtest.Logger(t)}); err != nil {
			t.Fatalf("Sweep: %v", err)
		}
		if hasPool(t, p.Name) || exists(p.Dir) {
			t.Errorf("Sweep left pool %s or %s", p.Name, p.Dir)
		}
	})
	if entries, _ := os.ReadDir(filepath.Join(runDir, "owners")); len(entries) != 0 {
		t.Errorf("owner records left: %v", entries)
	}
}

// On a machine where the daemon already runs (setup-host.sh started it),
// rig users never stop it.
func TestZFSUserDoesNotStopDaemonItDidNotStart(t *testing.T) {
	first := rigtest.ZFS(t)
	ctx := context.Background()
	second, err := rig.EnsureZFS(ctx, rig.ZFSOptions{Logger: rigtest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if second.Started() {
		t.Fatal("second user claims to have started a daemon the first one holds")
	}
	before := zfsFusePIDs(t)
	if len(before) == 0 {
		t.Fatal("no zfs-fuse process although the daemon answers")
	}
	if err := second.Close(); err != nil {
		t.Fatal(err)
	}
	if !first.Started() {
		// The common case: nobody of ours started it, so it must outlive
		// every one of us.
		if err := first.Close(); err != nil {
			t.Fatal(err)
		}
	}
	after := zfsFusePIDs(t)
	if fmt.Sprint(after) != fmt.Sprint(before) {
		t.Errorf("zfs-fuse pids went from %v to %v", before, after)
	}
	if err := exec.Command("zpool", "list").Run(); err != nil {
		t.Errorf("daemon stopped answering after a non-starter closed: %v", err)
	}
}

// liveComm is the comm of pid unless it has exited (a zombie with no thread
// left counts as exited: the daemon's reaper may not have collected it yet).
func liveComm(pid int) string {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	s := string(stat)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end+2 >= len(s) {
		return ""
	}
	if tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid)); s[end+2] == 'Z' && len(tasks) <= 1 {
		return ""
	}
	return s[open+1 : end]
}

func zfsFusePIDs(t testing.TB) []int {
	self, _ := os.Readlink("/proc/self/ns/mnt")
	var pids []int
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		mnt, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
		if liveComm(pid) == "zfs-fuse" && mnt == self {
			pids = append(pids, pid)
		}
	}
	return pids
}

// The start and stop paths need a machine without a daemon, and stopping one
// must not disturb anybody else's pools. So a child process works in a
// private mount namespace where the daemon's state directories are empty
// tmpfs: there it is alone, starts its own zfs-fuse and may stop it.
func TestZFSDaemonStartStopInPrivateMountNamespace(t *testing.T) {
	runPrivateDaemonChild(t, "zfs-private")
}

// runPrivateDaemonChild runs the child scenario mode in a private mount
// namespace (see childMain) and fails the test unless it ends with CHILD OK.
func runPrivateDaemonChild(t *testing.T, mode string) {
	t.Helper()
	testutil.RequireRoot(t)
	for _, tool := range []string{"zfs-fuse", "zpool"} {
		_, err := exec.LookPath(tool)
		testutil.RequireNoError(t, tool, err)
	}
	runDir := t.TempDir()
	selfMnt, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Safety net should the child die half-way: stop a daemon it
		// started (one in another mount namespace, named by its pid file).
		data, err := os.ReadFile(filepath.Join(runDir, "zfs-fuse.pid"))
		if err != nil {
			return
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(string(data)))
		mnt, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid))
		if pid > 0 && liveComm(pid) == "zfs-fuse" && mnt != selfMnt {
			t.Logf("child left its zfs-fuse (pid %d) running: killing it", pid)
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	out, err := runChild(t, []string{childEnv + "=" + mode, childRunDirEnv + "=" + runDir, "FLOCKER_RIG_TEST_PARENT_MNTNS=" + selfMnt}, true)
	t.Logf("child output:\n%s", out)
	if err != nil || !strings.Contains(out, "CHILD OK") {
		t.Fatalf("private-namespace daemon scenario %s failed: %v", mode, err)
	}
}

// enterPrivateMounts checks that the child really is in a mount namespace of
// its own with private propagation before it changes any mount.
func enterPrivateMounts() error {
	self, err := os.Readlink("/proc/self/ns/mnt")
	if err != nil {
		return err
	}
	if parent := os.Getenv("FLOCKER_RIG_TEST_PARENT_MNTNS"); parent == "" || parent == self {
		return fmt.Errorf("not in a mount namespace of its own (self %s, parent %q)", self, parent)
	}
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	return nil
}

// hideDaemonState enters the private mount namespace and covers the
// daemon's socket, lock and cache directories with empty tmpfs: a daemon
// started there is alone and sees none of the machine's pools.
func hideDaemonState() error {
	if err := enterPrivateMounts(); err != nil {
		return err
	}
	for _, d := range []string{"/run/zfs", "/run/lock/zfs", "/var/lib/zfs"} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return err
		}
		if err := unix.Mount("tmpfs", d, "tmpfs", 0, "mode=0700"); err != nil {
			return fmt.Errorf("hiding %s: %w", d, err)
		}
	}
	if exec.Command("zpool", "list").Run() == nil {
		return errors.New("a daemon still answers inside the private namespace")
	}
	// The copies of the machine's zfs-fuse mounts would answer for the
	// machine's daemon here.
	if _, err := rig.DetachDaemonMounts(); err != nil {
		return fmt.Errorf("detaching the machine's zfs-fuse mounts: %w", err)
	}
	return nil
}

func childZFSPrivate(ctx context.Context, logf func(string, ...any)) (err error) {
	if err := hideDaemonState(); err != nil {
		return err
	}
	runDir := os.Getenv(childRunDirEnv)
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	opts := rig.ZFSOptions{RunDir: runDir, Logger: log}
	alive := func(pid int) bool { return liveComm(pid) == "zfs-fuse" }
	kill := func(pid int) error {
		syscall.Kill(pid, syscall.SIGTERM)
		for i := 0; i < 200 && alive(pid); i++ {
			time.Sleep(50 * time.Millisecond)
		}
		if alive(pid) {
			syscall.Kill(pid, syscall.SIGKILL)
			return fmt.Errorf("zfs-fuse %d ignored SIGTERM", pid)
		}
		return nil
	}

	// 1. A starter leaves the daemon to a user that still holds it, and that
	// user, not being the starter, leaves it running too.
	z1, err := rig.EnsureZFS(ctx, opts)
	if err != nil {
		return err
	}
	if !z1.Started() || !alive(z1.PID()) {
		return fmt.Errorf("first user: started=%v pid=%d, want a daemon it started", z1.Started(), z1.PID())
	}
	pid := z1.PID()
	logf("started zfs-fuse pid %d", pid)
	p, err := rig.CreatePool(ctx, rig.PoolOptions{Size: 128 << 20, RunDir: runDir, Logger: log})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(p.Mountpoint, "f"), []byte("x"), 0o644); err != nil {
		return errors.Join(err, p.Close())
	}
	if err := p.Close(); err != nil {
		return err
	}
	z2, err := rig.EnsureZFS(ctx, opts)
	if err != nil {
		return err
	}
	if z2.Started() {
		return errors.New("second user claims to have started the running daemon")
	}
	if err := z1.Close(); err != nil {
		return err
	}
	if !alive(pid) {
		return errors.New("starter stopped the daemon while another user held it")
	}
	if err := z2.Close(); err != nil {
		return err
	}
	if !alive(pid) {
		return errors.New("a user that did not start the daemon stopped it")
	}
	logf("scenario 1: daemon kept while in use and by the non-starter")
	if err := kill(pid); err != nil {
		return err
	}

	// 2. Two users race to start it: one starts, the other joins; the
	// starter stops it once the other has left.
	var (
		zs   [2]*rig.ZFS
		errs [2]error
		wg   sync.WaitGroup
	)
	for i := range zs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			zs[i], errs[i] = rig.EnsureZFS(ctx, opts)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs[:]...); err != nil {
		return err
	}
	if zs[0].Started() == zs[1].Started() {
		return fmt.Errorf("racing users: started = %v and %v, want exactly one", zs[0].Started(), zs[1].Started())
	}
	starter, other := zs[0], zs[1]
	if other.Started() {
		starter, other = other, starter
	}
	pid = starter.PID()
	if err := other.Close(); err != nil {
		return err
	}
	if !alive(pid) {
		return errors.New("the joining user stopped the daemon")
	}
	if err := starter.Close(); err != nil {
		return err
	}
	if alive(pid) {
		return fmt.Errorf("starter left its daemon %d running with no users and no pools", pid)
	}
	if exec.Command("zpool", "list").Run() == nil {
		return errors.New("a daemon still answers after the starter stopped it")
	}
	logf("scenario 2: one of two racing users started it and stopped it last")

	// 3. A starter leaves a daemon that still has pools running.
	z3, err := rig.EnsureZFS(ctx, opts)
	if err != nil {
		return err
	}
	pid = z3.PID()
	p, err = rig.CreatePool(ctx, rig.PoolOptions{Size: 128 << 20, RunDir: runDir, Logger: log})
	if err != nil {
		return errors.Join(err, z3.Close())
	}
	if err := z3.Close(); err != nil {
		return errors.Join(err, p.Close())
	}
	if !alive(pid) {
		return errors.New("starter stopped a daemon that still had a pool")
	}
	if err := p.Close(); err != nil {
		return err
	}
	logf("scenario 3: daemon with a pool left running")
	return kill(pid)
}
