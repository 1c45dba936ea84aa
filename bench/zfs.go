package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"
)

// zfs runs one zfs command (no shell) and returns its stdout.
func zfs(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "zfs", args...)
	cmd.WaitDelay = 5 * time.Second // a forked mount helper may hold the pipes
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("zfs %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// sendRecv pipes `zfs send sendArgs...` into `zfs receive dst` through
// this process (as the agent does through QUIC) and returns the bytes.
func sendRecv(ctx context.Context, sendArgs []string, dst string) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	send := exec.CommandContext(ctx, "zfs", append([]string{"send"}, sendArgs...)...)
	recv := exec.CommandContext(ctx, "zfs", "receive", dst)
	var sendErr, recvErr strings.Builder
	send.Stderr, recv.Stderr = &sendErr, &recvErr
	out, err := send.StdoutPipe()
	if err != nil {
		return 0, err
	}
	in, err := recv.StdinPipe()
	if err != nil {
		return 0, err
	}
	if err := recv.Start(); err != nil {
		return 0, err
	}
	if err := send.Start(); err != nil {
		in.Close()
		_ = recv.Wait()
		return 0, err
	}
	var n atomic.Int64
	_, copyErr := io.Copy(counter{in, &n}, out)
	in.Close()
	errS, errR := send.Wait(), recv.Wait()
	if errS != nil {
		errS = fmt.Errorf("zfs send %s: %w: %s", strings.Join(sendArgs, " "), errS, strings.TrimSpace(sendErr.String()))
	}
	if errR != nil {
		errR = fmt.Errorf("zfs receive %s: %w: %s", dst, errR, strings.TrimSpace(recvErr.String()))
	}
	return n.Load(), errors.Join(copyErr, errS, errR)
}

type counter struct {
	w io.Writer
	n *atomic.Int64
}

func (c counter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n.Add(int64(n))
	return n, err
}

func errorsJoin(errs ...error) error { return errors.Join(errs...) }

// destroyTree destroys dataset and its snapshots, retrying while zfs-fuse
// calls it busy (it does for a moment after a mount's last file closed).
// Never forced: a forced destroy of a busy zfs-fuse dataset can wedge the
// daemon.
func destroyTree(ctx context.Context, dataset string) error {
	var err error
	for try := 0; try < 40; try++ {
		if _, err = zfs(ctx, "destroy", "-r", dataset); err == nil || !strings.Contains(err.Error(), "busy") {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return err
}
