package snapshot

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/testutil"
)

// testLog routes the code's debug logs into the test's output.
func testLog(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// requireZFSFuse needs root, the zfs tool, and the zfs-fuse daemon answering.
func requireZFSFuse(t *testing.T) *CLI {
	t.Helper()
	testutil.RequireRoot(t)
	cli := NewCLI("", "", testLog(t))
	_, err := cli.Zpool(context.Background(), "list", "-H", "-o", "name")
	testutil.RequireNoError(t, "zfs tools answering (zfs-fuse daemon running?)", err)
	return cli
}

// A refused option comes back as a *CmdError with the exit code and the
// tool's own stderr, and the command is logged with its duration.
func TestCmdErrorCarriesStderr(t *testing.T) {
	cli := requireZFSFuse(t)
	var logs bytes.Buffer
	cli.log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	_, err := cli.ZFS(context.Background(), "list", "-p")
	var ce *CmdError
	if !errors.As(err, &ce) {
		t.Fatalf("want *CmdError, got %T %v", err, err)
	}
	if ce.ExitCode != 2 || !strings.Contains(ce.Stderr, "invalid option 'p'") || ce.Path != "zfs" || strings.Join(ce.Args, " ") != "list -p" {
		t.Errorf("CmdError %+v", ce)
	}
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Errorf("want the *exec.ExitError underneath, got %v", ce.Err)
	}
	if want := "zfs list -p: exit status 2: invalid option 'p'"; err.Error() != want {
		t.Errorf("Error() = %q, want %q", err.Error(), want)
	}
	if l := logs.String(); !strings.Contains(l, `msg="zfs command"`) || !strings.Contains(l, "args=\"[list -p]\"") || !strings.Contains(l, "exit=2") || !strings.Contains(l, "took=") {
		t.Errorf("log line missing command, exit code or duration: %s", l)
	}
}

func TestMissingBinary(t *testing.T) {
	for _, bin := range []string{"/nonexistent/zfs", "flocker-no-such-zfs-binary"} {
		_, err := NewCLI(bin, "", testLog(t)).ZFS(context.Background(), "list")
		var ce *CmdError
		if !errors.As(err, &ce) || ce.ExitCode != -1 || !notStarted(err) {
			t.Errorf("%s: want a CmdError for a binary that is not there, got %v", bin, err)
		}
	}
}

// A command outliving its context is killed and reported as the context's
// error. sleep stands in for a zfs command that hangs (as one does when its
// daemon stops answering): nothing in zfs can be made to hang on purpose.
func TestContextEndsCommand(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := NewCLI("sleep", "", testLog(t)).ZFS(ctx, "30")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want DeadlineExceeded, got %v", err)
	}
	// Killed by a signal, not exited on its own.
	if ce := asCmdError(err); ce == nil || ce.ExitCode != -1 {
		t.Errorf("want the process killed (exit code -1), got %+v", ce)
	}
}

// fakeZFS writes a shell script standing in for zfs where the real one
// cannot be made to misbehave on purpose (hang, leak its stdout).
func fakeZFS(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "zfs")
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

// A receive whose zfs ignores the closed pipe on cancellation (a hung zfs:
// the fake sleeps without reading) is killed after the kill delay.
func TestStreamKillsAfterDelay(t *testing.T) {
	cli := NewCLI(fakeZFS(t, "exec sleep 60"), "", testLog(t))
	cli.streamKillDelay = 200 * time.Millisecond
	z := NewWithDialect(cli, allFeatures, testLog(t))
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := z.Receive(ctx, "tank/app", strings.NewReader("stream"), ReceiveOptions{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("want the deadline, got %v", err)
	}
	if ce := asCmdError(err); ce == nil || ce.ExitCode != -1 {
		t.Errorf("want the process killed (exit -1), got %+v", ce)
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("took %v: the kill did not come", took)
	}
}

// A receive whose zfs fails at once returns with zfs's error even while the
// caller's reader blocks (a stalled peer): it does not wait for that Read.
func TestReceiveReturnsWhileReaderBlocks(t *testing.T) {
	cli := NewCLI(fakeZFS(t, "echo 'cannot receive: invalid stream (bad magic number)' >&2; exit 1"), "", testLog(t))
	z := NewWithDialect(cli, allFeatures, testLog(t))
	pr, pw := io.Pipe() // never written: Read blocks until closed
	defer pw.Close()
	done := make(chan error, 1)
	go func() {
		_, err := z.Receive(context.Background(), "tank/app", pr, ReceiveOptions{})
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, ErrBadStream) {
			t.Errorf("want ErrBadStream, got %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Receive waited for a reader that blocks")
	}
}

// A send whose stdout stays open after zfs exited (here a background child
// keeps it, as zfs-fuse's daemon, which writes the stream, could) ends after
// streamDrainIdle with an error instead of waiting forever. The child ends
// on its own shortly after.
func TestSendDrainIsBounded(t *testing.T) {
	cli := NewCLI(fakeZFS(t, "printf data; (exec sleep 20 2>/dev/null) & exit 0"), "", testLog(t))
	z := NewWithDialect(cli, allFeatures, testLog(t))
	var out bytes.Buffer
	start := time.Now()
	n, err := z.Send(context.Background(), "tank/app@s", &out, SendOptions{})
	if err == nil || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("want a deadline error for the stdout left open, got %v", err)
	}
	if n != 4 || out.String() != "data" {
		t.Errorf("got %d bytes %q, want what zfs wrote before exiting", n, out.String())
	}
	if took := time.Since(start); took < streamDrainIdle || took > 19*time.Second {
		t.Errorf("took %v, want about %v", took, streamDrainIdle)
	}
}
