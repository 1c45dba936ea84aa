package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"
)

// CLI runs the zfs and zpool command-line tools: never through a shell, with
// the caller's context, each command logged at debug level with its duration,
// and a failure returned as a *CmdError carrying the tool's stderr.
type CLI struct {
	zfs, zpool string
	log        *slog.Logger
}

// NewCLI returns a runner for the given binaries; an empty path means "zfs" or
// "zpool" looked up in PATH. log may be nil.
func NewCLI(zfsPath, zpoolPath string, log *slog.Logger) *CLI {
	if zfsPath == "" {
		zfsPath = "zfs"
	}
	if zpoolPath == "" {
		zpoolPath = "zpool"
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &CLI{zfs: zfsPath, zpool: zpoolPath, log: log}
}

// CmdError is a zfs or zpool command that could not start or did not exit 0.
type CmdError struct {
	Path     string   // binary as given to the runner
	Args     []string // arguments after the binary
	ExitCode int      // -1 when it did not exit on its own (not started, killed)
	Stderr   string   // everything the tool wrote to stderr
	Err      error    // *exec.ExitError, exec.ErrNotFound, or the context's error
}

func (e *CmdError) Error() string {
	var b strings.Builder
	b.WriteString(e.Path)
	for _, a := range e.Args {
		b.WriteByte(' ')
		b.WriteString(a)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	if line := firstLine(e.Stderr); line != "" {
		b.WriteString(": ")
		b.WriteString(line)
	}
	return b.String()
}

func (e *CmdError) Unwrap() error { return e.Err }

// ZFS runs `zfs args...` and returns its stdout. On failure the stdout read so
// far is returned too, with a *CmdError.
func (c *CLI) ZFS(ctx context.Context, args ...string) ([]byte, error) {
	return c.run(ctx, c.zfs, args)
}

// Zpool runs `zpool args...` like ZFS does.
func (c *CLI) Zpool(ctx context.Context, args ...string) ([]byte, error) {
	return c.run(ctx, c.zpool, args)
}

func (c *CLI) run(ctx context.Context, bin string, args []string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	// Messages are parsed (dialect detection, typed errors): keep them untranslated.
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	// Stdin stays nil (/dev/null): a receive never reads the terminal.
	start := time.Now()
	err := cmd.Run()
	took := time.Since(start)
	code := -1
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	c.log.Debug("zfs command", "cmd", bin, "args", args, "exit", code, "took", took)
	if err == nil {
		return stdout.Bytes(), nil
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		err = fmt.Errorf("%w (%v)", ctxErr, err)
	}
	return stdout.Bytes(), &CmdError{Path: bin, Args: args, ExitCode: code, Stderr: stderr.String(), Err: err}
}

// firstLine returns the first non-blank line of s, trimmed.
func firstLine(s string) string {
	for line := range strings.SplitSeq(s, "\n") {
		if t := strings.TrimSpace(line); t != "" {
			return t
		}
	}
	return ""
}

// notStarted reports whether err is a binary that is not there: not in PATH,
// or a given path that does not exist.
func notStarted(err error) bool {
	return errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist)
}

// asCmdError returns err's *CmdError, or nil.
func asCmdError(err error) *CmdError {
	var ce *CmdError
	if errors.As(err, &ce) {
		return ce
	}
	return nil
}
