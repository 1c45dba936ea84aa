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
	"syscall"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/rig"
)

// The deadlock itself cannot be produced on demand, so a stopped daemon
// (SIGSTOP) plays the wedged one: like the deadlocked daemon seen in CI it
// answers neither its CLI socket nor FUSE requests. It runs in a private
// mount namespace with a daemon of its own, so killing it disturbs nobody.
func TestWedgedDaemonIsRestarted(t *testing.T) {
	runPrivateDaemonChild(t, "zfs-wedge")
}

func childZFSWedge(ctx context.Context, logf func(string, ...any)) error {
	if err := hideDaemonState(); err != nil {
		return err
	}
	rig.SetWedgeTimings(3*time.Second, 2*time.Second)
	runDir := os.Getenv(childRunDirEnv)
	log := slog.New(slog.NewTextHandler(os.Stdout, nil))
	opts := rig.ZFSOptions{RunDir: runDir, Logger: log, StartTimeout: 10 * time.Second}
	alive := func(pid int) bool { return liveComm(pid) == "zfs-fuse" }
	wedges := func() string {
		data, _ := os.ReadFile(filepath.Join(runDir, rig.WedgeLogName))
		return string(data)
	}

	// 1. A user arriving at a wedged daemon restarts it.
	z1, err := rig.EnsureZFS(ctx, opts)
	if err != nil {
		return err
	}
	pid1 := z1.PID()
	p, err := rig.CreatePool(ctx, rig.PoolOptions{Size: 128 << 20, RunDir: runDir, Logger: log})
	if err != nil {
		return errors.Join(err, z1.Close())
	}
	if err := os.WriteFile(filepath.Join(p.Mountpoint, "f"), []byte("x"), 0o644); err != nil {
		return err
	}
	if err := rig.FUSEServes(5 * time.Second); err != nil {
		return fmt.Errorf("healthy daemon: %w", err)
	}
	if err := syscall.Kill(pid1, syscall.SIGSTOP); err != nil {
		return err
	}
	logf("stopped zfs-fuse pid %d", pid1)
	if err := rig.FUSEServes(2 * time.Second); err == nil || !strings.Contains(err.Error(), "does not serve its mounts") {
		return fmt.Errorf("FUSEServes on a stopped daemon: got %v, want a statfs left waiting", err)
	}
	z2, err := rig.EnsureZFS(ctx, opts)
	if err != nil {
		return fmt.Errorf("second user at the wedged daemon: %w", err)
	}
	if alive(pid1) {
		return fmt.Errorf("wedged daemon %d still alive", pid1)
	}
	if !z2.Started() || z2.PID() == pid1 || !alive(z2.PID()) {
		return fmt.Errorf("after the wedge: started=%v pid=%d, want a new daemon", z2.Started(), z2.PID())
	}
	if w := wedges(); strings.Count(w, "\n") != 1 || !strings.Contains(w, "pid="+strconv.Itoa(pid1)+" ") {
		return fmt.Errorf("wedge log %q: want one line naming pid %d", w, pid1)
	}
	if err := exec.CommandContext(ctx, "zpool", "list").Run(); err != nil {
		return fmt.Errorf("restarted daemon does not answer: %w", err)
	}
	q, err := rig.CreatePool(ctx, rig.PoolOptions{Size: 128 << 20, RunDir: runDir, Logger: log})
	if err != nil {
		return fmt.Errorf("pool on the restarted daemon: %w", err)
	}
	if err := rig.FUSEServes(5 * time.Second); err != nil {
		return errors.Join(fmt.Errorf("restarted daemon: %w", err), q.Close())
	}
	if err := q.Close(); err != nil {
		return err
	}
	// The pool's teardown must end, whether the new daemon imported it
	// again from its cache or not.
	if err := p.Close(); err != nil {
		return fmt.Errorf("closing the pool made before the wedge: %w", err)
	}
	if err := errors.Join(z1.Close(), z2.Close()); err != nil {
		return err
	}
	if alive(z2.PID()) {
		return fmt.Errorf("restarting user left its daemon %d running with no users and no pools", z2.PID())
	}
	logf("scenario 1: wedged daemon %d replaced by %d at the next user, logged", pid1, z2.PID())

	// 2. The watchdog replaces a daemon that wedges while a user holds it.
	wopts := opts
	wopts.Watchdog = true
	z3, err := rig.EnsureZFS(ctx, wopts)
	if err != nil {
		return err
	}
	pid3 := z3.PID()
	if err := syscall.Kill(pid3, syscall.SIGSTOP); err != nil {
		return err
	}
	logf("stopped zfs-fuse pid %d under a watching user", pid3)
	deadline := time.Now().Add(90 * time.Second)
	for strings.Count(wedges(), "\n") < 2 {
		if time.Now().After(deadline) {
			return errors.Join(errors.New("watchdog did not restart the wedged daemon within 90 s"), z3.Close())
		}
		time.Sleep(500 * time.Millisecond)
	}
	if alive(pid3) {
		return fmt.Errorf("wedged daemon %d still alive after the watchdog's restart", pid3)
	}
	if err := exec.CommandContext(ctx, "zpool", "list").Run(); err != nil {
		return fmt.Errorf("daemon the watchdog started does not answer: %w", err)
	}
	if err := z3.Close(); err != nil {
		return err
	}
	// The watchdog's daemon belongs to nobody now: this scenario stops it.
	data, err := os.ReadFile(filepath.Join(runDir, "zfs-fuse.pid"))
	if err != nil {
		return err
	}
	pid4, _ := strconv.Atoi(strings.TrimSpace(string(data)))
	if pid4 == pid3 || !alive(pid4) {
		return fmt.Errorf("pid file names %d, want the watchdog's new daemon", pid4)
	}
	logf("scenario 2: watchdog replaced wedged daemon %d by %d", pid3, pid4)
	syscall.Kill(pid4, syscall.SIGTERM)
	for i := 0; i < 200 && alive(pid4); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	if alive(pid4) {
		syscall.Kill(pid4, syscall.SIGKILL)
		return fmt.Errorf("zfs-fuse %d ignored SIGTERM", pid4)
	}
	return nil
}
