package snapshot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// CLI runs the zfs and zpool command-line tools: never through a shell, with
// the caller's context, each command logged at debug level with its duration,
// and a failure returned as a *CmdError carrying the tool's stderr.
type CLI struct {
	zfs, zpool string
	log        *slog.Logger
	// streamKillDelay overrides defaultStreamKillDelay (tests).
	streamKillDelay time.Duration
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
	// zfs forks mount helpers that inherit stdout/stderr; one stuck on a hung
	// file system must not keep Wait (and the agent's loop) waiting for EOF.
	cmd.WaitDelay = streamDrainIdle
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

// Stream timing defaults.
const (
	// defaultStreamKillDelay is how long a streaming command gets to exit on
	// its own after cancellation closed its pipe, before it is killed.
	// Closing the pipe is the clean stop: a receive sees an incomplete
	// stream and discards its partial state (or keeps it for resume with
	// -s), a send gets EPIPE. Killing first would not stop zfs-fuse, whose
	// daemon holds the pipe itself and works on until it ends. 10 s covers a
	// daemon cleaning up a large partial receive on a loaded 2-core machine.
	defaultStreamKillDelay = 10 * time.Second
	// streamDrainIdle bounds the wait for the end of a send's output after
	// zfs exited: what is left is at most a pipe buffer, which arrives at
	// once; no data and no end for this long means something else holds
	// the pipe open.
	streamDrainIdle = 5 * time.Second
	// streamBufSize is the copy buffer between zfs's pipe and the caller.
	streamBufSize = 256 << 10
)

// streamResult is the outcome of a streaming command.
type streamResult struct {
	n      int64 // bytes that reached zfs (receive) or the caller's writer (send)
	cmdErr error // *CmdError when zfs failed to start or exited non-zero
	ioErr  error // the caller's reader or writer failed (*copyError)
	// abandoned: the call returned while the copy goroutine was still
	// blocked in the caller's Read or Write (see stream).
	abandoned bool
}

// copyError is a failed Read from the caller's reader or Write to the
// caller's writer (or to zfs's pipe, for the receive direction).
type copyError struct {
	write bool
	err   error
}

func (e *copyError) Error() string {
	if e.write {
		return "writing the stream: " + e.err.Error()
	}
	return "reading the stream: " + e.err.Error()
}

func (e *copyError) Unwrap() error { return e.err }

// stream runs `zfs args...` with exactly one of in (fed to its stdin) or out
// (its stdout copied there) through a pipe of our own, with back-pressure:
// at most one buffer is in flight, nothing is held in memory.
//
// Cancellation closes our end of the pipe first (see defaultStreamKillDelay),
// sets a deadline of now on the caller's reader or writer when it has
// SetReadDeadline/SetWriteDeadline (net.Conn, quic-go streams and os.File
// pipes do), and kills zfs if it has not exited after the kill delay.
//
// It returns once zfs has exited and, for a send that was not cancelled,
// its output has reached out. A copy still blocked in the caller's Read or
// Write at that point (a reader or writer without deadlines, after
// cancellation or a failed receive) is left to finish on its own: its next
// write hits the closed pipe and it ends. Callers end such a Read or Write
// by closing their stream.
func (c *CLI) stream(ctx context.Context, args []string, in io.Reader, out io.Writer) streamResult {
	if (in == nil) == (out == nil) {
		return streamResult{cmdErr: errors.New("stream: want exactly one of a reader and a writer")}
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return streamResult{cmdErr: &CmdError{Path: c.zfs, Args: args, ExitCode: -1, Err: err}}
	}
	growPipe(pw)
	cmd := exec.Command(c.zfs, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	stderr := &cappedBuffer{limit: maxStderr}
	cmd.Stderr = stderr
	// Bounds Wait when something other than zfs keeps its stderr open.
	cmd.WaitDelay = streamDrainIdle
	var ours, theirs *os.File
	if in != nil {
		cmd.Stdin, theirs, ours = pr, pr, pw
	} else {
		cmd.Stdout, theirs, ours = pw, pw, pr
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return streamResult{cmdErr: &CmdError{Path: c.zfs, Args: args, ExitCode: -1, Err: err}}
	}
	theirs.Close()
	var closeOnce sync.Once
	closeOurs := func() { closeOnce.Do(func() { ours.Close() }) }

	var copied atomic.Int64
	var zfsExited atomic.Bool
	copyDone := make(chan error, 1)
	go func() {
		var err error
		if in != nil {
			err = copyCounting(ours, in, &copied, nil)
			closeOurs() // the end of the stream, for zfs
		} else {
			err = copyAhead(out, ours, &copied, func() {
				// After zfs exited only the pipe's remainder is left.
				if zfsExited.Load() {
					ours.SetReadDeadline(time.Now().Add(streamDrainIdle))
				}
			})
		}
		copyDone <- err
	}()
	exitDone := make(chan error, 1)
	go func() { exitDone <- cmd.Wait() }()

	killDelay := c.streamKillDelay
	if killDelay == 0 {
		killDelay = defaultStreamKillDelay
	}
	var (
		res          streamResult
		waitErr      error
		exited       bool
		copyFinished bool
		kill         <-chan time.Time
		ctxDone      = ctx.Done()
	)
	for !exited || !copyFinished {
		// After zfs exited, a cancelled call or a failed receive does not
		// wait for a copy blocked in the caller's Read or Write. A receive
		// that succeeded reads r to its end, so that nothing of r is read
		// after Receive returned.
		if exited && (ctx.Err() != nil || (in != nil && waitErr != nil)) {
			res.abandoned = true
			break
		}
		select {
		case <-ctxDone:
			ctxDone = nil
			closeOurs()
			interrupt(in, out)
			kill = time.After(killDelay)
		case <-kill:
			kill = nil
			cmd.Process.Kill()
		case waitErr = <-exitDone:
			exited = true
			kill = nil
			zfsExited.Store(true)
			if in != nil {
				// zfs reads no more: end the copy rather than feed a dead pipe.
				closeOurs()
				if waitErr != nil {
					interrupt(in, nil)
				}
			} else {
				// Only the pipe's remainder is left: bound a Read already
				// waiting (the copy refreshes the deadline before each Read).
				ours.SetReadDeadline(time.Now().Add(streamDrainIdle))
			}
		case err := <-copyDone:
			copyFinished = true
			res.ioErr = err
			if out != nil && err != nil {
				closeOurs() // the writer failed: zfs gets EPIPE and stops
			}
		}
	}
	if !copyFinished {
		// The copy may have finished in the meantime.
		select {
		case err := <-copyDone:
			copyFinished, res.abandoned, res.ioErr = true, false, err
		default:
		}
	}
	// A copy still running fails on the closed pipe: at its next Write for
	// a receive, at its next Read for a send.
	closeOurs()
	res.n = copied.Load()
	took := time.Since(start)
	code := -1
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	c.log.Debug("zfs stream", "cmd", c.zfs, "args", args, "exit", code, "bytes", res.n, "took", took)
	if in != nil && res.ioErr != nil {
		var ce *copyError
		if errors.As(res.ioErr, &ce) && ce.write {
			// Writes into zfs's pipe fail once zfs has stopped reading; what
			// counts then is why zfs stopped.
			res.ioErr = nil
		}
	}
	if waitErr != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			waitErr = fmt.Errorf("%w (%v)", ctxErr, waitErr)
		}
		res.cmdErr = &CmdError{Path: c.zfs, Args: args, ExitCode: code, Stderr: stderr.String(), Err: waitErr}
	} else if err := ctx.Err(); err != nil && in == nil && !copyFinished {
		res.cmdErr = &CmdError{Path: c.zfs, Args: args, ExitCode: code, Stderr: stderr.String(), Err: err}
	}
	return res
}

// interrupt unblocks a pending Read on in or Write on out when they support
// deadlines.
func interrupt(in io.Reader, out io.Writer) {
	if d, ok := in.(interface{ SetReadDeadline(time.Time) error }); ok {
		d.SetReadDeadline(time.Now())
	}
	if d, ok := out.(interface{ SetWriteDeadline(time.Time) error }); ok {
		d.SetWriteDeadline(time.Now())
	}
}

// copyCounting copies src to dst until EOF, counting bytes written, calling
// beforeRead (if set) before each Read.
func copyCounting(dst io.Writer, src io.Reader, n *atomic.Int64, beforeRead func()) error {
	buf := make([]byte, streamBufSize)
	for {
		if beforeRead != nil {
			beforeRead()
		}
		nr, rerr := src.Read(buf)
		if nr > 0 {
			nw, werr := dst.Write(buf[:nr])
			n.Add(int64(nw))
			if werr == nil && nw < nr {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return &copyError{write: true, err: werr}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return &copyError{write: false, err: rerr}
		}
	}
}

// copyAhead is copyCounting with the next Read overlapping the current
// Write: a send's writer (a QUIC stream) returns only when the chunk is out,
// and without a chunk ready it idles until the pipe is read again. At most
// two buffers of streamBufSize are held (one being written, one being
// filled), besides zfs's pipe. A failed Write returns at once; the reader
// then stops at its next Read of the pipe, which the caller closes.
func copyAhead(dst io.Writer, src io.Reader, n *atomic.Int64, beforeRead func()) error {
	type chunk struct {
		b   []byte
		err error
	}
	const depth = 2
	free := make(chan []byte, depth)
	for range depth {
		free <- make([]byte, streamBufSize)
	}
	filled := make(chan chunk, depth) // never blocks: at most depth buffers exist
	quit := make(chan struct{})
	defer close(quit)
	go func() {
		for {
			var b []byte
			select {
			case b = <-free:
			case <-quit:
				return
			}
			if beforeRead != nil {
				beforeRead()
			}
			nr, err := src.Read(b)
			filled <- chunk{b[:nr], err}
			if err != nil {
				return
			}
		}
	}()
	for c := range filled {
		if len(c.b) > 0 {
			nw, werr := dst.Write(c.b)
			n.Add(int64(nw))
			if werr == nil && nw < len(c.b) {
				werr = io.ErrShortWrite
			}
			if werr != nil {
				return &copyError{write: true, err: werr}
			}
		}
		if c.err == io.EOF {
			return nil
		}
		if c.err != nil {
			return &copyError{write: false, err: c.err}
		}
		free <- c.b[:cap(c.b)]
	}
	return nil // not reached: the reader ends with an error chunk
}

// cappedBuffer keeps the first limit bytes written to it and counts the rest.
type cappedBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	limit   int
	dropped int
}

func (b *cappedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.limit - b.buf.Len()
	if room >= len(p) {
		b.buf.Write(p)
	} else {
		if room > 0 {
			b.buf.Write(p[:room])
		}
		b.dropped += len(p) - max(room, 0)
	}
	return len(p), nil
}

func (b *cappedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped > 0 {
		return fmt.Sprintf("%s\n[%d more bytes of stderr dropped]", b.buf.String(), b.dropped)
	}
	return b.buf.String()
}

// streamPipeSize is the pipe between zfs and the caller: 1 MiB (the
// default pipe-max-size) rather than 64 KiB, so that zfs send keeps
// reading while the network is busy with what it wrote, and zfs receive's
// pauses (a transaction group syncing) do not stall the network at once.
const streamPipeSize = 1 << 20

// growPipe enlarges the pipe; where the kernel refuses, the default stays.
func growPipe(f *os.File) {
	rc, err := f.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_, _ = unix.FcntlInt(fd, unix.F_SETPIPE_SZ, streamPipeSize)
	})
}
