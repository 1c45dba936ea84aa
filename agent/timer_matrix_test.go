//go:build linux

package agent_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent"
	"github.com/flockerha/flocker/internal/changes"
	"github.com/flockerha/flocker/internal/testutil"
	"github.com/flockerha/flocker/snapshot"
)

// hostTimerInterval keeps the host timer matrices short; every operation
// waits for at most two ticks.
const hostTimerInterval = 300 * time.Millisecond

func newTimer(t *testing.T, interval time.Duration, written agent.WrittenFunc, tg agent.Target) *agent.Timer {
	t.Helper()
	tm, err := agent.NewTimer(interval, written, testLog(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tm.Close() })
	if err := tm.Add(context.Background(), tg); err != nil {
		t.Fatalf("timer Add(%s): %v", tg.Mountpoint, err)
	}
	return tm
}

// intervalHook: every timer report names its interval, never an event.
func intervalHook(_ changes.Op, hook string) error {
	if hook != "interval" {
		return fmt.Errorf("want %q", "interval")
	}
	return nil
}

// Without `written` the timer reports every change, late (at its next
// tick), and every non-change too: it cannot tell them apart. The matrix
// asserts both.
func TestTimerMatrixTmpfs(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	tg := agent.Target{Name: "tmpfs", Mountpoint: changes.Tmpfs(t)}
	env := &changes.Env{Dir: tg.Mountpoint, Other: changes.Tmpfs(t), Aside: t.TempDir()}
	tm := newTimer(t, hostTimerInterval, nil, tg)
	changes.RunMatrix(t, tm, tg, changes.All(env), changes.Expectations{
		Tier: agent.TierTimer, Deadline: hostDeadline, Quiet: hostQuiet, Periodic: true, Hook: intervalHook,
	})
}

// zfs-fuse has no `written`: no WrittenFunc is built from its detected
// dialect, so the timer reports at every interval.
func TestTimerMatrixZFSFuse(t *testing.T) {
	testutil.RequireRoot(t)
	t.Parallel()
	p := newFusePool(t)
	tg := p.dataset(t, "watched")
	other := p.dataset(t, "sibling")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := p.cli.Detect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != snapshot.DialectZFSFuse || d.Features.WrittenProperty {
		t.Fatalf("dialect %s with written=%v: want zfs-fuse without written", d.Name, d.Features.WrittenProperty)
	}
	written := agent.WrittenFromZFS(snapshot.NewWithDialect(p.cli, d, testLog(t)), d)
	if written != nil {
		t.Fatal("WrittenFromZFS on zfs-fuse gave a func: want none (the timer cannot tell)")
	}
	env := &changes.Env{Dir: tg.Mountpoint, Other: other.Mountpoint, Aside: t.TempDir()}
	tm := newTimer(t, hostTimerInterval, written, tg)
	changes.RunMatrix(t, tm, tg, changes.All(env), changes.Expectations{
		Tier: agent.TierTimer, Deadline: hostDeadline, Quiet: hostQuiet, Periodic: true, Hook: intervalHook,
		Unsupported: zfsFuseUnsupported,
	})
}
