//go:build linux

package agent_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent"
	"github.com/flockerha/flocker/internal/changes"
	"github.com/flockerha/flocker/internal/vmtest"
	"github.com/flockerha/flocker/snapshot"
)

// Guest matrix timings. TCG guests are slow: generous deadlines, and for
// the timer quiet windows longer than a tick plus a transaction group (1 s
// here). The timer's interval leaves the matrix's snapshot (0.2-0.5 s under
// TCG) time to finish before the next tick: a tick that comes first still
// sees `written` and reports the same change again (harmless in the agent,
// an extra empty snapshot; here it would fail "exactly one").
const (
	guestDeadline      = 90 * time.Second
	guestQuiet         = 2 * time.Second
	guestTimerQuiet    = 5 * time.Second
	guestTimerInterval = 2 * time.Second
)

// guestPool is the pool the guest's setup creates on its one disk. A
// transaction group every second (not 5) makes `written` follow changes
// sooner, which keeps the timer matrix to minutes under TCG.
const (
	guestPool  = "tank"
	guestSetup = "modprobe zfs\n" +
		"zpool create -f -O mountpoint=/tank tank /dev/disk/by-id/virtio-pool0\n" +
		"echo 1 >/sys/module/zfs/parameters/zfs_txg_timeout"
)

// openZFSUnsupported: what OpenZFS 2.3 on Linux refuses of the operations.
var openZFSUnsupported = map[string]string{}

// The fanotify and timer tiers on real OpenZFS (kernel module: the dataset
// has an fsid, so fanotify marks it in FID mode; `written` exists, so the
// timer skips unchanged datasets), each matrix on its own datasets, in
// parallel: the timer's is mostly waiting.
func TestGuestMatricesOpenZFS(t *testing.T) {
	if !vmtest.RunInGuest(t, vmtest.GoTest{
		Setup: guestSetup, Disks: []vmtest.Disk{{Serial: "pool0"}},
		CPUs: 2, MemoryMiB: 1536, Timeout: 40 * time.Minute,
		// The matrices below run side by side; the default (GOMAXPROCS,
		// 2 here) would queue half of them.
		Args: []string{"-test.parallel=8"},
	}) {
		return
	}
	cli := snapshot.NewCLI("", "", nil)
	ctx := context.Background()
	d, err := cli.Detect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Name != snapshot.DialectOpenZFS || !d.Features.WrittenProperty {
		t.Fatalf("dialect %+v: want OpenZFS with written", d)
	}
	dataset := func(t *testing.T, name string, props ...string) agent.Target {
		t.Helper()
		full := guestPool + "/" + name
		args := []string{"create"}
		for _, p := range props {
			args = append(args, "-o", p)
		}
		if _, err := cli.ZFS(ctx, append(args, full)...); err != nil {
			t.Fatal(err)
		}
		return agent.Target{Name: full, Mountpoint: "/" + full}
	}

	t.Run("fanotify", func(t *testing.T) {
		t.Parallel()
		tg, other := dataset(t, "fan"), dataset(t, "fan-sibling")
		env := &changes.Env{Dir: tg.Mountpoint, Other: other.Mountpoint, Aside: t.TempDir()}
		n := newFanotify(t, tg)
		if mark, why := n.Mark(tg.Name); mark != agent.MarkFilesystemFID {
			t.Fatalf("OpenZFS has an fsid: want %q, got %q (%s)", agent.MarkFilesystemFID, mark, why)
		}
		ops := changes.All(env)
		for i := range ops {
			// Two kernel events: FAN_DELETE on the directory at once,
			// FAN_DELETE_SELF when the inode is evicted, which on OpenZFS
			// can come after the first was consumed (a second dirty
			// period: one extra snapshot). Seen once under load.
			if ops[i].Name == "unlink" {
				ops[i].Compound = true
			}
		}
		changes.RunMatrix(t, n, tg, ops, changes.Expectations{
			Tier: agent.TierFanotify, Deadline: guestDeadline, Quiet: guestQuiet,
			Missed: fanotifyFIDMissed, Unsupported: openZFSUnsupported,
		})
	})

	// The timer with `written`: every change is reported, at a tick after
	// ZFS counted it, and after the snapshot that follows a report (as the
	// agent takes one) the timer is silent until the next change. atime is
	// off: with it on, reads write atime, which the timer rightly counts
	// (the "atime" case below asserts that).
	timer := func(t *testing.T, name string, ops func(*changes.Env) []changes.Op, ex changes.Expectations, props ...string) {
		tg, other := dataset(t, name, props...), dataset(t, name+"-sibling")
		env := &changes.Env{Dir: tg.Mountpoint, Other: other.Mountpoint, Aside: t.TempDir()}
		tm := newTimer(t, guestTimerInterval, agent.WrittenFromZFS(snapshot.NewWithDialect(cli, d, nil), d), tg)
		var seq atomic.Int32
		ex.Tier, ex.Deadline, ex.Quiet, ex.Hook = agent.TierTimer, guestDeadline, guestTimerQuiet, intervalHook
		ex.Unsupported = openZFSUnsupported
		ex.AfterChange = func(ctx context.Context, c agent.Change) error {
			_, err := cli.ZFS(ctx, "snapshot", fmt.Sprintf("%s@m%d", c.Dataset, seq.Add(1)))
			return err
		}
		changes.RunMatrix(t, tm, tg, ops(env), ex)
	}
	// The positive operations in two halves on two datasets: the timer's
	// matrix is mostly waiting, so halves in parallel halve the run.
	half := func(first bool) func(e *changes.Env) []changes.Op {
		return func(e *changes.Env) []changes.Op {
			ops := changes.Positive(e)
			if first {
				return ops[:len(ops)/2]
			}
			return ops[len(ops)/2:]
		}
	}
	t.Run("timer", func(t *testing.T) {
		t.Parallel()
		timer(t, "timer", half(true), changes.Expectations{}, "atime=off")
	})
	t.Run("timer-2", func(t *testing.T) {
		t.Parallel()
		timer(t, "timer-2", half(false), changes.Expectations{}, "atime=off")
	})
	t.Run("timer-negative", func(t *testing.T) {
		t.Parallel()
		timer(t, "timer-neg", changes.Negative, changes.Expectations{}, "atime=off")
	})
	t.Run("timer-atime", func(t *testing.T) {
		t.Parallel()
		timer(t, "timer-atime", changes.Reads, changes.Expectations{Spurious: map[string]string{
			"read":     "with atime=on a read writes the file's atime, which `written` counts",
			"readdir":  "with atime=on reading a directory writes its atime",
			"readlink": "with atime=on reading a symlink writes its atime",
		}}, "atime=on", "relatime=off")
	})
}

// The fentry tier and its kprobe twin, which this host's kernel refuses,
// through the same matrix as the tracepoint tier's on the host, on real
// OpenZFS. A boot of their own: beside the five matrices above, a TCG
// guest on a loaded host delivered changes later than the quiet window.
func TestGuestEBPFMatricesOpenZFS(t *testing.T) {
	if !vmtest.RunInGuest(t, vmtest.GoTest{
		Setup: guestSetup, Disks: []vmtest.Disk{{Serial: "pool0"}},
		CPUs: 2, MemoryMiB: 1536, Timeout: 30 * time.Minute,
		Args: []string{"-test.parallel=2"},
	}) {
		return
	}
	cli := snapshot.NewCLI("", "", nil)
	ctx := context.Background()
	for _, tier := range []string{agent.TierFentry, agent.TierKprobe} {
		t.Run(tier, func(t *testing.T) {
			t.Parallel()
			var tg [2]agent.Target
			for i, name := range []string{tier, tier + "-sibling"} {
				full := guestPool + "/" + name
				if _, err := cli.ZFS(ctx, "create", full); err != nil {
					t.Fatal(err)
				}
				tg[i] = agent.Target{Name: full, Mountpoint: "/" + full}
			}
			env := &changes.Env{Dir: tg[0].Mountpoint, Other: tg[1].Mountpoint, Aside: t.TempDir()}
			n := newTestEBPF(t, tier, tg[0])
			for _, a := range n.Attachments() {
				if a.Err != "" {
					t.Logf("%s: %s not attached (required %v): %s", tier, a.Section, a.Required, a.Err)
				}
			}
			changes.RunMatrix(t, n, tg[0], ebpfOps(env), changes.Expectations{
				Tier: tier, Deadline: guestDeadline, Quiet: guestQuiet,
				Unsupported: openZFSUnsupported, Hook: ebpfHook(tier),
			})
			t.Logf("%s stats %+v", tier, n.Stats())
		})
	}
}
