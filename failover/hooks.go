package failover

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Hook defaults, each bounding one operator-provided command.
const (
	// DefaultHookTimeout bounds one start or stop: generous for a service
	// that flushes on stop, yet a hung hook cannot stall a failover forever.
	DefaultHookTimeout = 30 * time.Second
	// DefaultCheckTimeout bounds one check: a check is a quick probe; one
	// that hangs counts as failed.
	DefaultCheckTimeout = 5 * time.Second
	// DefaultStartWithin bounds how long check may take to pass after
	// start: the service's own warm-up.
	DefaultStartWithin = 30 * time.Second
	// DefaultCheckEvery is the longest pause between checks while waiting
	// for a start to come up: short, because every pause is failover time.
	DefaultCheckEvery = 100 * time.Millisecond
	// firstCheckPause is the first pause: a service started in the
	// background usually listens within milliseconds, so the pauses start
	// here and double up to CheckEvery.
	firstCheckPause = 5 * time.Millisecond
	// hookOutputLimit caps what is kept of a hook's output for the log.
	hookOutputLimit = 8 << 10
)

// HookResult is one run of a hook.
type HookResult struct {
	Exit     int    // exit status; -1 when killed
	Output   string // stdout and stderr interleaved, at most hookOutputLimit bytes
	Took     time.Duration
	TimedOut bool
}

// RunHook runs command with `sh -c`: hooks are operator-written shell
// commands (pipes, &&, a systemctl call), unlike the zfs calls, which never
// pass through a shell. The command gets its own process group; on timeout
// or cancellation the whole group is killed, so a hung start cannot leave
// half a service behind. Output goes to an unlinked temporary file rather
// than a pipe, so a service the hook starts in the background, which
// inherits the output, does not keep RunHook waiting.
//
// A non-zero exit, a timeout or a failure to run is an error; the result
// is filled in as far as it is known in every case.
func RunHook(ctx context.Context, log *slog.Logger, name, command string, timeout time.Duration) (HookResult, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	res := HookResult{Exit: -1}
	out, err := os.CreateTemp("", "flocker-hook-*")
	if err != nil {
		return res, fmt.Errorf("%s hook: output file: %w", name, err)
	}
	os.Remove(out.Name())
	defer out.Close()

	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", command)
	cmd.Stdin = nil
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// The group's id is the shell's pid (Setpgid with Pgid 0).
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	start := time.Now()
	runErr := cmd.Run()
	res.Took = time.Since(start)
	if cmd.ProcessState != nil {
		res.Exit = cmd.ProcessState.ExitCode()
	}
	res.TimedOut = errors.Is(ctx.Err(), context.DeadlineExceeded)
	if _, err := out.Seek(0, io.SeekStart); err == nil {
		b, _ := io.ReadAll(io.LimitReader(out, hookOutputLimit))
		res.Output = string(b)
	}
	attrs := []any{"hook", name, "command", command, "exit", res.Exit, "took", res.Took.Round(time.Millisecond),
		"output", strings.TrimSpace(res.Output)}
	switch {
	case res.TimedOut:
		log.Warn("hook timed out; process group killed", append(attrs, "timeout", timeout)...)
		return res, fmt.Errorf("%s hook timed out after %v (process group killed)%s", name, timeout, lastLine(res.Output))
	case ctx.Err() != nil:
		log.Warn("hook cancelled; process group killed", attrs...)
		return res, fmt.Errorf("%s hook: %w", name, ctx.Err())
	case runErr != nil && res.Exit > 0:
		log.Warn("hook failed", attrs...)
		return res, fmt.Errorf("%s hook: exit status %d%s", name, res.Exit, lastLine(res.Output))
	case runErr != nil:
		log.Warn("hook did not run", append(attrs, "err", runErr)...)
		return res, fmt.Errorf("%s hook: %w", name, runErr)
	}
	log.Info("hook done", attrs...)
	return res, nil
}

// lastLine returns ": LINE" with the output's last non-empty line, to make
// an error message say why.
func lastLine(out string) string {
	out = strings.TrimSpace(out)
	if out == "" {
		return ""
	}
	return ": " + out[strings.LastIndexByte(out, '\n')+1:]
}

// Service runs one dataset's hooks ([dataset] start, stop, check). An empty
// command is skipped: a dataset without a service only moves its data and
// address.
type Service struct {
	Dataset     string
	StartCmd    string
	StopCmd     string
	CheckCmd    string
	HookTimeout time.Duration // per start or stop; 0 means DefaultHookTimeout
	CheckLimit  time.Duration // per check; 0 means DefaultCheckTimeout
	StartWithin time.Duration // for check to pass after start; 0 means DefaultStartWithin
	CheckEvery  time.Duration // between checks while starting; 0 means DefaultCheckEvery
	Log         *slog.Logger
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func (s *Service) log() *slog.Logger {
	if s.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Log.With("dataset", s.Dataset)
}

// Check runs the check hook once (no check: healthy).
func (s *Service) Check(ctx context.Context) error {
	if s.CheckCmd == "" {
		return nil
	}
	_, err := RunHook(ctx, s.log(), "check", s.CheckCmd, orDefault(s.CheckLimit, DefaultCheckTimeout))
	return err
}

// Start makes the service run, idempotently: when check already passes
// nothing is started (so a start command that is not itself idempotent is
// never run twice); otherwise start runs and check is repeated until it
// passes, within StartWithin. A start that fails or never checks healthy
// is undone with stop, so a failed Start leaves the service stopped and
// may simply be retried.
func (s *Service) Start(ctx context.Context) error {
	if s.CheckCmd != "" && s.Check(ctx) == nil {
		s.log().Info("service already healthy: start skipped")
		return nil
	}
	if s.StartCmd != "" {
		if _, err := RunHook(ctx, s.log(), "start", s.StartCmd, orDefault(s.HookTimeout, DefaultHookTimeout)); err != nil {
			return s.undo(ctx, fmt.Errorf("starting %s: %w", s.Dataset, err))
		}
	}
	if err := s.WaitHealthy(ctx); err != nil {
		return s.undo(ctx, fmt.Errorf("starting %s: %w", s.Dataset, err))
	}
	return nil
}

func (s *Service) undo(ctx context.Context, err error) error {
	if s.StopCmd == "" {
		return err
	}
	// The caller's context may be what ended the start; the stop still
	// needs its own chance to run.
	stopCtx := context.WithoutCancel(ctx)
	if _, serr := RunHook(stopCtx, s.log(), "stop", s.StopCmd, orDefault(s.HookTimeout, DefaultHookTimeout)); serr != nil {
		return errors.Join(err, fmt.Errorf("undoing the start: %w", serr))
	}
	return err
}

// WaitHealthy repeats check until it passes, within StartWithin.
func (s *Service) WaitHealthy(ctx context.Context) error {
	if s.CheckCmd == "" {
		return nil
	}
	within := orDefault(s.StartWithin, DefaultStartWithin)
	ctx, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var last error
	every := orDefault(s.CheckEvery, DefaultCheckEvery)
	pause := min(firstCheckPause, every)
	for tries := 1; ; tries++ {
		if last = s.Check(ctx); last == nil {
			s.log().Info("service healthy", "checks", tries)
			return nil
		}
		if err := sleep(ctx, pause); err != nil {
			return fmt.Errorf("check did not pass within %v (%d tries): %w", within, tries, last)
		}
		pause = min(2*pause, every)
	}
}

// Stop runs the stop hook. It must be safe to run on a stopped service
// (systemctl stop is); flocker runs it on every demotion and fence.
func (s *Service) Stop(ctx context.Context) error {
	if s.StopCmd == "" {
		return nil
	}
	if _, err := RunHook(ctx, s.log(), "stop", s.StopCmd, orDefault(s.HookTimeout, DefaultHookTimeout)); err != nil {
		return fmt.Errorf("stopping %s: %w", s.Dataset, err)
	}
	return nil
}

// ServiceSet maps logical dataset names to their services and implements
// Services for the Executor. A dataset that is absent has nothing to run.
type ServiceSet map[string]*Service

// StartService implements Services.
func (s ServiceSet) StartService(ctx context.Context, dataset string) error {
	if svc := s[dataset]; svc != nil {
		return svc.Start(ctx)
	}
	return nil
}

// StopService implements Services.
func (s ServiceSet) StopService(ctx context.Context, dataset string) error {
	if svc := s[dataset]; svc != nil {
		return svc.Stop(ctx)
	}
	return nil
}

var _ Services = ServiceSet(nil)
