package failover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// These run real /bin/sh processes: hooks are shell commands, so the shell
// is the real part here.

func TestRunHook(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		command string
		exit    int
		output  string
		err     string
	}{
		{"success with both streams", "echo out; echo err >&2", 0, "out\nerr\n", ""},
		{"failure names the status and the last line", "echo first; echo 'disk full' >&2; exit 3", 3, "first\ndisk full\n",
			"start hook: exit status 3: disk full"},
		{"operator shell syntax works", "x=1 && [ $x -eq 1 ] | cat && echo ok", 0, "ok\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := RunHook(ctx, testLogger(t), "start", tt.command, 10*time.Second)
			if res.Exit != tt.exit || res.Output != tt.output || res.TimedOut {
				t.Errorf("result %+v, want exit %d output %q", res, tt.exit, tt.output)
			}
			if got := fmt.Sprint(err); tt.err == "" && err != nil || tt.err != "" && got != tt.err {
				t.Errorf("error %v, want %q", err, tt.err)
			}
		})
	}
}

// alive reports whether pid runs (a zombie does not count).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	return pid
}

func TestRunHookTimeoutKillsTheGroup(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "child.pid")
	cmd := fmt.Sprintf("sleep 60 & echo $! > %s; echo started; sleep 60", pidfile)
	res, err := RunHook(context.Background(), testLogger(t), "start", cmd, 300*time.Millisecond)
	if !res.TimedOut || err == nil || err.Error() != "start hook timed out after 300ms (process group killed): started" {
		t.Fatalf("result %+v, error %v", res, err)
	}
	child := readPID(t, pidfile)
	deadline := time.Now().Add(5 * time.Second)
	for alive(child) {
		if time.Now().After(deadline) {
			syscall.Kill(child, syscall.SIGKILL)
			t.Fatalf("background child %d of the timed-out hook survived", child)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A start hook that leaves a service running in the background returns
// when the shell does, not when the service's inherited output closes.
func TestRunHookBackgroundService(t *testing.T) {
	pidfile := filepath.Join(t.TempDir(), "svc.pid")
	cmd := fmt.Sprintf("sleep 60 & echo $! > %s; echo launched", pidfile)
	res, err := RunHook(context.Background(), testLogger(t), "start", cmd, 20*time.Second)
	pid := readPID(t, pidfile)
	t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
	if err != nil || res.TimedOut || res.Output != "launched\n" {
		t.Fatalf("result %+v, error %v: the hook waited for its background child", res, err)
	}
	if !alive(pid) {
		t.Errorf("background service %d did not survive its start hook", pid)
	}
}

func TestRunHookCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	go func() { time.Sleep(100 * time.Millisecond); cancel() }()
	res, err := RunHook(ctx, testLogger(t), "stop", "sleep 60", time.Minute)
	if !errors.Is(err, context.Canceled) || res.TimedOut {
		t.Fatalf("result %+v, error %v", res, err)
	}
}

// service builds a Service whose hooks record what ran in dir/log and
// whose check passes while dir/up exists.
func service(t *testing.T, start string) (*Service, string) {
	dir := t.TempDir()
	return &Service{
		Dataset:     "app",
		StartCmd:    "echo start >> log; " + start,
		StopCmd:     "echo stop >> log; rm -f up",
		CheckCmd:    "test -e up",
		StartWithin: 2 * time.Second,
		CheckEvery:  20 * time.Millisecond,
		Log:         testLogger(t),
	}, dir
}

func inDir(s *Service, dir string) *Service {
	cd := "cd " + dir + " && "
	s.StartCmd, s.StopCmd, s.CheckCmd = cd+s.StartCmd, cd+s.StopCmd, cd+s.CheckCmd
	return s
}

func ranIn(t *testing.T, dir string) string {
	b, err := os.ReadFile(filepath.Join(dir, "log"))
	if errors.Is(err, os.ErrNotExist) {
		return "-"
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(strings.Fields(string(b)), " ")
}

func TestServiceStart(t *testing.T) {
	tests := []struct {
		name    string
		start   string // appended to the start hook
		already bool   // service healthy before Start
		ran     string // hooks that ran, in order
		err     string // "" for success
	}{
		{"start then check passes", "touch up", false, "start", ""},
		{"already healthy: start not run", "touch up", true, "-", ""},
		{"comes up in the background a little later", "(sleep 0.3; touch up) &", false, "start", ""},
		{"start fails: undone with stop", "exit 4", false, "start stop", "starting app: start hook: exit status 4"},
		{"check never passes: undone with stop", "true", false, "start stop",
			"starting app: check did not pass within 2s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, dir := service(t, tt.start)
			inDir(s, dir)
			if tt.already {
				os.WriteFile(filepath.Join(dir, "up"), nil, 0o644)
			}
			err := s.Start(context.Background())
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.err)) {
				t.Errorf("error %v, want %q", err, tt.err)
			}
			if got := ranIn(t, dir); got != tt.ran {
				t.Errorf("hooks ran: %s, want %s", got, tt.ran)
			}
			healthy := s.Check(context.Background()) == nil
			if healthy != (tt.err == "") {
				t.Errorf("healthy after Start: %v", healthy)
			}
		})
	}
}

func TestServiceSet(t *testing.T) {
	s, dir := service(t, "touch up")
	set := ServiceSet{"app": inDir(s, dir)}
	ctx := context.Background()
	for _, step := range []func() error{
		func() error { return set.StartService(ctx, "app") },
		func() error { return set.StartService(ctx, "app") }, // idempotent: check passes, no second start
		func() error { return set.StopService(ctx, "app") },
		func() error { return set.StopService(ctx, "other") }, // no service: nothing to do
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if got := ranIn(t, dir); got != "start stop" {
		t.Errorf("hooks ran: %s", got)
	}
}

func TestHealthCounter(t *testing.T) {
	var h HealthCounter // default threshold 3
	var got []string
	for _, ok := range []bool{true, false, false, true, false, false, false, false, true, false} {
		n, trip := h.Observe(ok)
		s := strconv.Itoa(n)
		if trip {
			s += "!"
		}
		got = append(got, s)
	}
	if want := "0 1 2 0 1 2 3! 4 0 1"; strings.Join(got, " ") != want {
		t.Errorf("counts %s, want %s", strings.Join(got, " "), want)
	}
	h2 := HealthCounter{Threshold: 1}
	if _, trip := h2.Observe(false); !trip {
		t.Error("threshold 1 did not trip on the first failure")
	}
}

func TestRunHealthChecks(t *testing.T) {
	dir := t.TempDir()
	svc := &Service{Dataset: "app", CheckCmd: "test -e " + filepath.Join(dir, "up"), Log: testLogger(t)}
	os.WriteFile(filepath.Join(dir, "up"), nil, 0o644)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reports := make(chan HealthReport, 100)
	done := make(chan struct{})
	go func() {
		defer close(done)
		RunHealthChecks(ctx, svc, 10*time.Millisecond, &HealthCounter{Threshold: 2}, func(r HealthReport) { reports <- r })
	}()
	if r := <-reports; r.Err != nil || r.Failures != 0 {
		t.Fatalf("first report %+v", r)
	}
	os.Remove(filepath.Join(dir, "up"))
	for r := range reports {
		if r.Tripped {
			if r.Failures != 2 || r.Err == nil {
				t.Errorf("tripping report %+v", r)
			}
			break
		}
	}
	cancel()
	<-done
}
