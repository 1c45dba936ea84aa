package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent"
	"github.com/flockerha/flocker/internal/changes"
	"github.com/flockerha/flocker/internal/rig"
	"github.com/flockerha/flocker/internal/rig/rigtest"
	"github.com/flockerha/flocker/internal/testutil"
)

// watching runs `flocker watch args...` until the test ends, and hands its
// stdout over line by line.
type watching struct {
	lines  chan string
	cancel context.CancelFunc
	done   chan int
	stderr *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func startWatch(t *testing.T, args ...string) *watching {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	w := &watching{lines: make(chan string, 100), cancel: cancel, done: make(chan int, 1), stderr: &syncBuffer{}}
	go func() {
		code := run(ctx, append([]string{"watch"}, args...), pw, w.stderr)
		pw.Close()
		w.done <- code
	}()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			w.lines <- sc.Text()
		}
		close(w.lines)
	}()
	t.Cleanup(func() { w.stop(t) })
	return w
}

// stop cancels the command (as SIGINT does) and checks it exits 0.
func (w *watching) stop(t *testing.T) {
	t.Helper()
	w.cancel()
	select {
	case code := <-w.done:
		w.done <- code
		if code != exitOK {
			t.Errorf("flocker watch exited %d; stderr:\n%s", code, w.stderr.String())
		}
	case <-time.After(30 * time.Second):
		t.Errorf("flocker watch did not stop when cancelled")
	}
}

// attached waits until the command says it is watching: loading a tier
// takes a second or more on a busy machine, and a change made before that
// is rightly not reported.
func (w *watching) attached(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(w.stderr.String(), `msg="flocker watch: watching"`) {
		if time.Now().After(deadline) {
			t.Fatalf("flocker watch did not start watching within 60s; stderr:\n%s", w.stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// line waits for the next line of output.
func (w *watching) line(t *testing.T) string {
	t.Helper()
	select {
	case l, ok := <-w.lines:
		if !ok {
			t.Fatalf("flocker watch ended; stderr:\n%s", w.stderr.String())
		}
		return l
	case <-time.After(20 * time.Second):
		t.Fatalf("no line from flocker watch within 20s; stderr:\n%s", w.stderr.String())
	}
	return ""
}

// quiet checks that no line comes for d.
func (w *watching) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case l := <-w.lines:
		t.Fatalf("unexpected line %q", l)
	case <-time.After(d):
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// On a tmpfs (any mounted filesystem may be watched) with --json: one
// object per change, re-arming after each, nothing for reads.
func TestWatchJSONTmpfs(t *testing.T) {
	testutil.RequireRoot(t)
	mp := changes.Tmpfs(t)
	write(t, filepath.Join(mp, "existing"), "x")
	w := startWatch(t, "--json", mp)
	w.attached(t)
	// One system call each, so each is one dirty period however the
	// reader is scheduled (writing a new file would be three: create,
	// write, close).
	for i, change := range []func() error{
		func() error { return os.Mkdir(filepath.Join(mp, "d"), 0o755) },
		func() error { return os.Chmod(filepath.Join(mp, "existing"), 0o600) },
	} {
		if err := change(); err != nil {
			t.Fatal(err)
		}
		var got map[string]any
		l := w.line(t)
		if err := json.Unmarshal([]byte(l), &got); err != nil {
			t.Fatalf("line %d %q: %v", i, l, err)
		}
		for _, k := range []string{"time", "dataset", "tier", "hook", "mountpoint"} {
			if _, ok := got[k]; !ok {
				t.Errorf("line %d %q lacks %q", i, l, k)
			}
		}
		// auto attaches the tracepoint tier on this host (it refuses
		// fentry and kprobes): its hooks are the system calls' exits.
		if got["dataset"] != mp || got["tier"] != agent.TierTracepoint || !strings.HasPrefix(got["hook"].(string), "sys_exit/") {
			t.Errorf("line %d: %v", i, got)
		}
		if _, err := time.Parse(time.RFC3339Nano, got["time"].(string)); err != nil {
			t.Errorf("line %d: time: %v", i, err)
		}
		w.quiet(t, 500*time.Millisecond) // one line per dirty period
	}
	if _, err := os.ReadFile(filepath.Join(mp, "existing")); err != nil {
		t.Fatal(err)
	}
	w.quiet(t, time.Second)
}

// A zfs-fuse DATASET name resolves to its mountpoint; text lines carry
// time, dataset, tier and hook.
func TestWatchDatasetZFSFuse(t *testing.T) {
	p := rigtest.Pool(t, rig.PoolOptions{Size: 256 << 20})
	ds := rigtest.Dataset(t, p, "app", nil)
	w := startWatch(t, ds.Name)
	w.attached(t)
	write(t, filepath.Join(ds.Mountpoint, "f"), "data")
	re := regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z ` + regexp.QuoteMeta(ds.Name) + ` tracepoint sys_exit/openat$`)
	if l := w.line(t); !re.MatchString(l) {
		t.Errorf("line %q does not match %s", l, re)
	}
	w.stop(t) // closes its files before the pool is destroyed
}

// The timer tier, forced: a line every interval, named as such.
func TestWatchForcedTimer(t *testing.T) {
	testutil.RequireRoot(t)
	mp := changes.Tmpfs(t)
	w := startWatch(t, "--mode", "timer", "--timer", "100ms", mp)
	for range 2 {
		if l := w.line(t); !strings.HasSuffix(l, " "+mp+" timer interval") {
			t.Errorf("line %q", l)
		}
	}
}

func TestWatchErrors(t *testing.T) {
	testutil.RequireRoot(t)
	mp := changes.Tmpfs(t)
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{dir}, exitUsage, dir + " is not a mounted filesystem (it is a directory inside the one mounted at /"},
		{[]string{"flocker-no-such-pool/ds"}, exitUsage, "dataset flocker-no-such-pool/ds does not exist"},
		{[]string{"not a dataset"}, exitUsage, `invalid ZFS dataset "not a dataset"`},
		{[]string{"--mode", "ebpf", mp}, exitUsage, `--mode "ebpf": want auto or one of fentry, kprobe`},
		{[]string{}, exitUsage, "want one MOUNTPOINT or DATASET, got 0 arguments"},
		// Forced modes fail clearly where their tier cannot work.
		{[]string{"--mode", "fentry", mp}, exitFail, "notify mode fentry cannot watch " + mp + ": fentry: load: "},
	} {
		code, _, stderr := runCLI(t, append([]string{"watch"}, c.args...)...)
		if code != c.code || !strings.Contains(stderr, c.want) {
			t.Errorf("watch %q: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr, c.code, c.want)
		}
	}
}
