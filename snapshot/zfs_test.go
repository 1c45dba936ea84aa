package snapshot

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os/exec"
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
