package agent

// STOPGAP: this file stands in for snapshot's ZFS adapter (branch
// zfsadapter) until it is on main. It has the adapter's method names,
// arguments and meanings, in as little code as the agent needs; when the
// adapter lands this file and the local option types go, the kinds in
// zfs.go become the adapter's (snapshot.ErrPoolFull, ...), and NewZFS
// returns the adapter.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/flockerha/flocker/snapshot"
)

// sendOptions is snapshot.SendOptions (the part the agent uses).
type sendOptions struct {
	From string // incremental source, dataset@snap or dataset#mark; "" for a full stream
}

// receiveOptions is snapshot.ReceiveOptions (the part the agent uses).
type receiveOptions struct {
	Resumable  bool              // -s
	Properties map[string]string // -o
}

// property is snapshot.Property.
type property struct{ Value, Source string }

func (p property) IsSet() bool { return p.Value != "-" && p.Value != "" }

// snapshotHolds is snapshot.SnapshotHolds.
type snapshotHolds struct {
	Snapshot string
	Count    int
	Tags     []string // nil where the dialect cannot list tags (zfs-fuse)
}

// NewZFS returns the agent's ZFS for a dialect detected once at start.
func NewZFS(cli *snapshot.CLI, zfsPath string, d snapshot.Dialect, log *slog.Logger) ZFS {
	if zfsPath == "" {
		zfsPath = "zfs"
	}
	return &stopgapZFS{cli: cli, bin: zfsPath, d: d, log: log}
}

type stopgapZFS struct {
	cli *snapshot.CLI
	bin string
	d   snapshot.Dialect
	log *slog.Logger
}

// zfsErr is the adapter's ZFSError in brief: the kinds read from stderr.
type zfsErr struct {
	kinds []error
	token string
	err   error
}

func (e *zfsErr) Error() string   { return e.err.Error() }
func (e *zfsErr) Unwrap() []error { return append(append([]error(nil), e.kinds...), e.err) }

// resumeTokenOf returns the token a failed resumable receive printed.
func resumeTokenOf(err error) string {
	var ze *zfsErr
	if errors.As(err, &ze) {
		return ze.token
	}
	return ""
}

var stderrKinds = []struct {
	text string
	kind error
}{
	{"out of space", errPoolFull},
	{"no space left", errPoolFull},
	{"checksum mismatch", errBadStream},
	{"invalid backup stream", errBadStream},
	{"invalid stream", errBadStream},
	{"incomplete stream", errBadStream},
	{"failed to read from stream", errBadStream},
	{"has been modified", errDestinationModified},
	{"does not match incremental source", errIncrementalMismatch},
	{"contains partially-complete state", errReceiveStatePresent},
	{"resume token is corrupt", errResumeTokenInvalid},
	{"used in the initial send", errResumeTokenInvalid},
	{"tag already exists", errHoldExists},
	{"no such tag", errNoSuchHold},
	{"is busy", errBusy},
	{"target is busy", errBusy},
	{"already exists", errExists},
	{"exists", errExists},
	{"does not exist", errNotFound},
}

var tokenRe = regexp.MustCompile(`zfs send -t ([0-9a-fA-F-]+)`)

// classify wraps a failed command's error with the kinds its stderr names.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var ce *snapshot.CmdError
	if !errors.As(err, &ce) {
		return fmt.Errorf("%s: %w", op, err)
	}
	e := &zfsErr{err: fmt.Errorf("%s: %w", op, err)}
	lower := strings.ToLower(ce.Stderr)
	for _, k := range stderrKinds {
		if strings.Contains(lower, k.text) {
			e.kinds = append(e.kinds, k.kind)
			break
		}
	}
	if m := tokenRe.FindStringSubmatch(ce.Stderr); m != nil {
		e.kinds, e.token = append(e.kinds, errResumable), m[1]
	}
	return e
}

func (z *stopgapZFS) run(ctx context.Context, op string, args ...string) ([]byte, error) {
	out, err := z.cli.ZFS(ctx, args...)
	return out, classify(op, err)
}

func (z *stopgapZFS) ListSnapshots(ctx context.Context, dataset string) ([]snapshot.Snapshot, error) {
	if err := snapshot.ValidateDataset(dataset); err != nil {
		return nil, err
	}
	out, err := z.run(ctx, "list snapshots", "get", "-Hp", "-d", "1", "-o", "name,property,value", "guid,createtxg,creation", dataset)
	if err != nil {
		return nil, err
	}
	return parseSnapshotRows(string(out), dataset+"@")
}

func (z *stopgapZFS) GetSnapshots(ctx context.Context, names ...string) ([]snapshot.Snapshot, error) {
	for _, n := range names {
		if err := snapshot.ValidateSnapshot(n); err != nil {
			return nil, err
		}
	}
	out, err := z.run(ctx, "get snapshots", append([]string{"get", "-Hp", "-o", "name,property,value", "guid,createtxg,creation"}, names...)...)
	if err != nil {
		return nil, err
	}
	snaps, err := parseSnapshotRows(string(out), "")
	if err != nil {
		return nil, err
	}
	if len(snaps) != len(names) {
		return nil, fmt.Errorf("get snapshots: zfs reported %d of %d", len(snaps), len(names))
	}
	return snaps, nil
}

// parseSnapshotRows reads `zfs get -Hp -o name,property,value
// guid,createtxg,creation` for the snapshots whose names start with prefix,
// in the order zfs printed them.
func parseSnapshotRows(out, prefix string) ([]snapshot.Snapshot, error) {
	var snaps []snapshot.Snapshot
	idx := map[string]int{}
	for line := range strings.Lines(out) {
		f := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
		if len(f) != 3 {
			return nil, fmt.Errorf("zfs get output line %q: want 3 fields", line)
		}
		if !strings.HasPrefix(f[0], prefix) || !strings.Contains(f[0], "@") {
			continue
		}
		i, ok := idx[f[0]]
		if !ok {
			i = len(snaps)
			idx[f[0]] = i
			snaps = append(snaps, snapshot.Snapshot{Name: f[0]})
		}
		n, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("zfs get %s %s: %q is not a number", f[0], f[1], f[2])
		}
		switch f[1] {
		case "guid":
			snaps[i].GUID = n
		case "createtxg":
			snaps[i].CreateTXG = n
		case "creation":
			snaps[i].Creation = time.Unix(int64(n), 0).UTC()
		}
	}
	return snaps, nil
}

func (z *stopgapZFS) Snapshot(ctx context.Context, names ...string) error {
	for _, n := range names {
		if err := snapshot.ValidateSnapshot(n); err != nil {
			return err
		}
		if _, err := z.run(ctx, "snapshot", "snapshot", n); err != nil {
			return err
		}
	}
	return nil
}

func (z *stopgapZFS) DestroySnapshots(ctx context.Context, names ...string) error {
	var errs []error
	for _, n := range names {
		if err := snapshot.ValidateSnapshot(n); err != nil {
			return err
		}
		if _, err := z.run(ctx, "destroy snapshot", "destroy", n); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (z *stopgapZFS) Hold(ctx context.Context, tag string, snaps ...string) error {
	_, err := z.run(ctx, "hold", append([]string{"hold", tag}, snaps...)...)
	return err
}

func (z *stopgapZFS) Release(ctx context.Context, tag string, snaps ...string) error {
	_, err := z.run(ctx, "release", append([]string{"release", tag}, snaps...)...)
	return err
}

func (z *stopgapZFS) Holds(ctx context.Context, dataset string) ([]snapshotHolds, error) {
	out, err := z.run(ctx, "holds", "get", "-Hp", "-d", "1", "-o", "name,property,value", "userrefs", dataset)
	if err != nil {
		return nil, err
	}
	var held []snapshotHolds
	for line := range strings.Lines(string(out)) {
		f := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
		if len(f) != 3 || !strings.HasPrefix(f[0], dataset+"@") {
			continue
		}
		if n, err := strconv.Atoi(f[2]); err == nil && n > 0 {
			held = append(held, snapshotHolds{Snapshot: f[0], Count: n})
		}
	}
	return held, nil
}

func (z *stopgapZFS) CreateBookmark(ctx context.Context, source, bookmark string) error {
	if !z.d.Features.Bookmarks {
		return errUnsupported
	}
	_, err := z.run(ctx, "bookmark", "bookmark", source, bookmark)
	return err
}

func (z *stopgapZFS) ListBookmarks(ctx context.Context, dataset string) ([]snapshot.Bookmark, error) {
	if !z.d.Features.Bookmarks || !z.d.Features.ListParsable {
		return nil, errUnsupported
	}
	out, err := z.run(ctx, "list bookmarks", "list", "-Hp", "-t", "bookmark", "-d", "1", "-o", "name,guid,createtxg", dataset)
	if err != nil {
		return nil, err
	}
	var marks []snapshot.Bookmark
	for line := range strings.Lines(string(out)) {
		f := strings.Split(strings.TrimSuffix(line, "\n"), "\t")
		if len(f) != 3 {
			continue
		}
		g, err1 := strconv.ParseUint(f[1], 10, 64)
		t, err2 := strconv.ParseUint(f[2], 10, 64)
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("zfs list bookmarks line %q: not numbers", line)
		}
		marks = append(marks, snapshot.Bookmark{Name: f[0], GUID: g, CreateTXG: t})
	}
	return marks, nil
}

func (z *stopgapZFS) DestroyBookmark(ctx context.Context, bookmark string) error {
	_, err := z.run(ctx, "destroy bookmark", "destroy", bookmark)
	return err
}

func (z *stopgapZFS) GetProperty(ctx context.Context, name, prop string) (property, error) {
	out, err := z.run(ctx, "get "+prop, "get", "-Hp", "-o", "value,source", prop, name)
	if err != nil {
		return property{}, err
	}
	v, src, _ := strings.Cut(strings.TrimSuffix(string(out), "\n"), "\t")
	return property{Value: v, Source: src}, nil
}

func (z *stopgapZFS) SetProperty(ctx context.Context, name, prop, value string) error {
	_, err := z.run(ctx, "set "+prop, "set", prop+"="+value, name)
	return err
}

func (z *stopgapZFS) Mountpoint(ctx context.Context, dataset string) (string, bool, error) {
	out, err := z.run(ctx, "mountpoint", "get", "-Hp", "-o", "value", "mountpoint,mounted", dataset)
	if err != nil {
		return "", false, err
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return "", false, fmt.Errorf("mountpoint of %s: unexpected output %q", dataset, out)
	}
	return f[0], f[1] == "yes", nil
}

func (z *stopgapZFS) Mount(ctx context.Context, dataset string) error {
	_, err := z.run(ctx, "mount", "mount", dataset)
	return err
}

// Unmount never forces: a busy file system is refused (see the README's
// zfs-fuse hazard).
func (z *stopgapZFS) Unmount(ctx context.Context, dataset string) error {
	_, err := z.run(ctx, "unmount", "unmount", dataset)
	return err
}

func (z *stopgapZFS) Rollback(ctx context.Context, snap string) error {
	if err := snapshot.ValidateSnapshot(snap); err != nil {
		return err
	}
	_, err := z.run(ctx, "rollback", "rollback", snap)
	return err
}

func (z *stopgapZFS) EstimateSend(ctx context.Context, snap string, opts sendOptions) (int64, error) {
	if !z.d.Features.SendDryRunParsable {
		return 0, errUnsupported
	}
	args := []string{"send", "-nP"}
	if opts.From != "" {
		args = append(args, "-i", opts.From)
	}
	out, err := z.run(ctx, "estimate send", append(args, snap)...)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(out)) {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "size"); ok {
			return strconv.ParseInt(strings.TrimSpace(rest), 10, 64)
		}
	}
	return 0, fmt.Errorf("estimate send %s: no size line", snap)
}

func (z *stopgapZFS) Send(ctx context.Context, snap string, w io.Writer, opts sendOptions) (int64, error) {
	if err := snapshot.ValidateSnapshot(snap); err != nil {
		return 0, err
	}
	args := []string{"send"}
	if opts.From != "" {
		args = append(args, "-i", opts.From)
	}
	return z.stream(ctx, "send", append(args, snap), nil, w)
}

func (z *stopgapZFS) SendResume(ctx context.Context, token string, w io.Writer) (int64, error) {
	if !z.d.Features.ResumableReceive {
		return 0, errUnsupported
	}
	return z.stream(ctx, "send resume", []string{"send", "-t", token}, nil, w)
}

func (z *stopgapZFS) Receive(ctx context.Context, target string, r io.Reader, opts receiveOptions) (int64, error) {
	args := []string{"receive"}
	if opts.Resumable {
		if !z.d.Features.ResumableReceive {
			return 0, errUnsupported
		}
		args = append(args, "-s")
	}
	for k, v := range opts.Properties {
		args = append(args, "-o", k+"="+v)
	}
	return z.stream(ctx, "receive", append(args, target), r, nil)
}

func (z *stopgapZFS) ResumeToken(ctx context.Context, dataset string) (string, error) {
	if !z.d.Features.ResumableReceive {
		return "", errUnsupported
	}
	p, err := z.GetProperty(ctx, dataset, "receive_resume_token")
	if err != nil || !p.IsSet() {
		return "", err
	}
	return p.Value, nil
}

func (z *stopgapZFS) AbortReceive(ctx context.Context, dataset string) error {
	if !z.d.Features.ResumableReceive {
		return errUnsupported
	}
	_, err := z.run(ctx, "abort receive", "receive", "-A", dataset)
	return err
}

// streamKillDelay: after cancellation closed its pipe, zfs gets this long
// to exit on its own (a receive cleans up its partial state) before it is
// killed. zfs-fuse's daemon holds the pipe itself, so closing it is what
// stops the work there; killing the client does not.
const streamKillDelay = 10 * time.Second

// stream runs zfs with in fed to its stdin (receive) or its stdout copied to
// out (send), through a pipe of our own so cancellation can close it first.
func (z *stopgapZFS) stream(ctx context.Context, op string, args []string, in io.Reader, out io.Writer) (int64, error) {
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	cmd := exec.Command(z.bin, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	ours, theirs := pw, pr
	if out != nil {
		ours, theirs = pr, pw
		cmd.Stdout = pw
	} else {
		cmd.Stdin = pr
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return 0, fmt.Errorf("%s: %w", op, err)
	}
	theirs.Close()
	var once sync.Once
	closeOurs := func() { once.Do(func() { ours.Close() }) }
	var n atomic.Int64
	copyDone := make(chan error, 1)
	src := &errReader{r: in}
	go func() {
		var err error
		if in != nil {
			_, err = io.Copy(countingWriter{ours, &n}, src)
		} else {
			_, err = io.Copy(countingWriter{out, &n}, ours)
		}
		closeOurs() // receive: the end of the stream; send: a failed writer gives zfs EPIPE
		copyDone <- err
	}()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	var waitErr, copyErr error
	copyFinished, zfsExited := false, false
	var kill <-chan time.Time
	ctxDone := ctx.Done()
	for !zfsExited {
		select {
		case <-ctxDone:
			ctxDone = nil
			closeOurs()
			kill = time.After(streamKillDelay)
		case <-kill:
			_ = cmd.Process.Kill()
		case copyErr = <-copyDone:
			copyFinished = true
		case waitErr = <-exited:
			zfsExited = true
		}
	}
	if in != nil {
		closeOurs() // zfs reads no more
	}
	if !copyFinished && out != nil {
		// zfs is gone: what is left in the pipe is at most a buffer.
		select {
		case copyErr = <-copyDone:
		case <-time.After(5 * time.Second):
			copyErr = errors.New("stream copy did not finish after zfs exited")
		}
		closeOurs()
	}
	// A receive's copy still blocked in in.Read ends at its next write to
	// the closed pipe, or when the caller closes in.
	code := -1
	if cmd.ProcessState != nil {
		code = cmd.ProcessState.ExitCode()
	}
	total := n.Load()
	z.log.Debug("zfs stream", "args", args, "exit", code, "bytes", total, "took", time.Since(start))
	if waitErr != nil {
		if ctx.Err() != nil {
			waitErr = fmt.Errorf("%w (%v)", ctx.Err(), waitErr)
		}
		err := classify(op, &snapshot.CmdError{Path: z.bin, Args: args, ExitCode: code, Stderr: stderr.String(), Err: waitErr})
		if in != nil {
			if rerr := src.failure(); rerr != nil {
				// The stream broke first; zfs only saw it end.
				err = errors.Join(fmt.Errorf("%s: reading the stream: %w", op, rerr), err)
			}
		} else if copyErr != nil {
			// The writer failed first; zfs only saw the pipe close.
			err = errors.Join(fmt.Errorf("%s: writing the stream: %w", op, copyErr), err)
		}
		return total, err
	}
	if out != nil && copyErr != nil {
		return total, fmt.Errorf("%s: writing the stream: %w", op, copyErr)
	}
	if ctx.Err() != nil {
		return total, fmt.Errorf("%s: %w", op, ctx.Err())
	}
	return total, nil
}

// errReader remembers the first error its reader returned other than EOF.
type errReader struct {
	r   io.Reader
	mu  sync.Mutex
	err error
}

func (e *errReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF {
		e.mu.Lock()
		if e.err == nil {
			e.err = err
		}
		e.mu.Unlock()
	}
	return n, err
}

func (e *errReader) failure() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

type countingWriter struct {
	w io.Writer
	n *atomic.Int64
}

func (c countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(int64(n))
	return n, err
}
