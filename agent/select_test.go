//go:build linux

package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent"
	"github.com/flockerha/flocker/internal/changes"
	"github.com/flockerha/flocker/internal/testutil"
	"golang.org/x/sys/unix"
)

// refusingNotifier loads but refuses every target. It stands in for an eBPF
// tier whose programs load but cannot attach: no eBPF tier can attach on
// this host (fentry and kprobes are refused, see notes/machine.md), so only
// a stand-in can show the selection moving past an attach failure.
type refusingNotifier struct {
	tier    string
	changes chan agent.Change
}

func (r *refusingNotifier) Tier() string { return r.tier }
func (r *refusingNotifier) Add(context.Context, agent.Target) error {
	return errors.New("attaching program: permission denied")
}
func (r *refusingNotifier) Remove(string) error          { return errors.New("not watched") }
func (r *refusingNotifier) Changes() <-chan agent.Change { return r.changes }
func (r *refusingNotifier) Close() error {
	close(r.changes)
	return nil
}

// injected returns the real factories with fentry failing to load and
// kprobe loading but refusing to attach, and counts the loads per tier.
func injected(loads map[string]*atomic.Int32) map[string]agent.Factory {
	f := agent.DefaultFactories()
	f[agent.TierFentry] = func(agent.FactoryConfig) (agent.Notifier, error) {
		loads[agent.TierFentry].Add(1)
		return nil, errors.New("loading fentry programs: operation not permitted")
	}
	f[agent.TierKprobe] = func(agent.FactoryConfig) (agent.Notifier, error) {
		loads[agent.TierKprobe].Add(1)
		return &refusingNotifier{tier: agent.TierKprobe, changes: make(chan agent.Change)}, nil
	}
	fan := f[agent.TierFanotify]
	f[agent.TierFanotify] = func(c agent.FactoryConfig) (agent.Notifier, error) {
		loads[agent.TierFanotify].Add(1)
		return fan(c)
	}
	delete(f, agent.TierTracepoint)
	delete(f, agent.TierBlock)
	return f
}

// hostAutoTier is what auto mode attaches on this host: its kernel refuses
// fentry (no BTF-tracing permission) and kprobes (no kprobe_events), see
// /work/shared/notes/kernel-hooks.md; TestAgentAutoSelection checks why.
const hostAutoTier = agent.TierTracepoint

func newWatcher(t *testing.T, opts agent.WatcherOptions) *agent.Watcher {
	t.Helper()
	if opts.Log == nil {
		opts.Log = testLog(t)
	}
	w, err := agent.NewWatcher(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := w.Close(); err != nil {
			t.Errorf("closing the watcher: %v", err)
		}
	})
	return w
}

// expectChange waits for a change of dataset from w, skipping others.
func expectChange(t *testing.T, w *agent.Watcher, dataset, hook string) agent.Change {
	t.Helper()
	deadline := time.After(hostDeadline)
	for {
		select {
		case c, ok := <-w.Changes():
			if !ok {
				t.Fatal("the watcher closed its stream")
			}
			if c.Dataset == dataset && (hook == "" || c.Hook == hook) {
				return c
			}
			t.Logf("skipping %+v", c)
		case <-deadline:
			t.Fatalf("no change of %s (hook %q) within %v", dataset, hook, hostDeadline)
		}
	}
}

func TestWatcherAutoPicksBestWorkingTierAndKeepsReasons(t *testing.T) {
	testutil.RequireRoot(t)
	loads := map[string]*atomic.Int32{agent.TierFentry: {}, agent.TierKprobe: {}, agent.TierFanotify: {}}
	w := newWatcher(t, agent.WatcherOptions{Factories: injected(loads), SafetyNet: time.Hour})
	a := agent.Target{Name: "a", Mountpoint: changes.Tmpfs(t)}
	b := agent.Target{Name: "b", Mountpoint: changes.Tmpfs(t)}
	st, err := w.Watch(context.Background(), a)
	if err != nil {
		t.Fatal(err)
	}
	if st.Tier != agent.TierFanotify || st.SafetyNet != time.Hour {
		t.Fatalf("status %+v: want fanotify with the safety net beside it", st)
	}
	want := []struct{ tier, reason string }{
		{agent.TierFentry, "load: loading fentry programs: operation not permitted"},
		{agent.TierKprobe, "attach: attaching program: permission denied"},
		{agent.TierTracepoint, "load: no tracepoint notifier in this build"},
		{agent.TierBlock, "load: no block notifier in this build"},
	}
	if len(st.Refused) != len(want) {
		t.Fatalf("refused %+v, want %d entries", st.Refused, len(want))
	}
	for i, r := range st.Refused {
		if r.Tier != want[i].tier || r.Reason != want[i].reason {
			t.Errorf("refusal %d = %+v, want %+v", i, r, want[i])
		}
	}
	if _, err := w.Watch(context.Background(), b); err != nil {
		t.Fatal(err)
	}
	for tier, n := range loads {
		if n.Load() != 1 {
			t.Errorf("tier %s loaded %d times for two targets, want once", tier, n.Load())
		}
	}
	if got := w.Status(); len(got) != 2 || got[0].Target.Name != "a" || len(got[0].Refused) != 4 {
		t.Errorf("Status() = %+v", got)
	}

	// One merged stream, each change naming its tier and hook.
	if err := os.WriteFile(filepath.Join(b.Mountpoint, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	c := expectChange(t, w, "b", "")
	if c.Tier != agent.TierFanotify || !strings.HasPrefix(c.Hook, "fanotify/") {
		t.Errorf("change %+v: want tier fanotify and a fanotify hook", c)
	}
	if _, err := w.Watch(context.Background(), b); err == nil {
		t.Error("adding a target twice must fail")
	}
	if err := w.Remove("a"); err != nil {
		t.Fatal(err)
	}
	if err := w.Remove("a"); err == nil {
		t.Error("removing an unknown target must fail")
	}
}

func TestWatcherForcedModes(t *testing.T) {
	testutil.RequireRoot(t)
	loads := map[string]*atomic.Int32{agent.TierFentry: {}, agent.TierKprobe: {}, agent.TierFanotify: {}}
	tg := agent.Target{Name: "t", Mountpoint: changes.Tmpfs(t)}
	for _, c := range []struct{ mode, want string }{
		{agent.TierFentry, "notify mode fentry cannot watch " + tg.Mountpoint + ": fentry: load: loading fentry programs: operation not permitted"},
		{agent.TierKprobe, "notify mode kprobe cannot watch " + tg.Mountpoint + ": kprobe: attach: attaching program: permission denied"},
		{agent.TierTracepoint, "notify mode tracepoint cannot watch " + tg.Mountpoint + ": tracepoint: load: no tracepoint notifier in this build"},
	} {
		w := newWatcher(t, agent.WatcherOptions{Mode: c.mode, Factories: injected(loads)})
		if _, err := w.Watch(context.Background(), tg); err == nil || err.Error() != c.want {
			t.Errorf("mode %s: error %v, want %q", c.mode, err, c.want)
		}
	}
	w := newWatcher(t, agent.WatcherOptions{Mode: agent.TierTimer, TimerInterval: 50 * time.Millisecond})
	st, err := w.Watch(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	if st.Tier != agent.TierTimer || st.SafetyNet != 0 || len(st.Refused) != 0 {
		t.Errorf("forced timer: %+v, want the timer alone and no refusals", st)
	}
	if c := expectChange(t, w, "t", "interval"); c.Tier != agent.TierTimer {
		t.Errorf("change %+v", c)
	}
	if _, err := agent.NewWatcher(agent.WatcherOptions{Mode: "ebpf"}); err == nil || !strings.Contains(err.Error(), `notify mode "ebpf"`) {
		t.Errorf("an unknown mode: %v", err)
	}
	nw := newWatcher(t, agent.WatcherOptions{})
	if _, err := nw.Watch(context.Background(), agent.Target{Name: "x", Mountpoint: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "not a mounted filesystem") {
		t.Errorf("a directory that is not a mount: %v", err)
	}
}

// The safety net beside an event tier reports what `written` says is
// unsnapshotted, marked as its own hook in the merged stream.
func TestWatcherSafetyNet(t *testing.T) {
	testutil.RequireRoot(t)
	var written atomic.Uint64
	w := newWatcher(t, agent.WatcherOptions{
		SafetyNet: 100 * time.Millisecond,
		Written: func(context.Context, string) (uint64, bool, error) {
			return written.Load(), true, nil
		},
	})
	tg := agent.Target{Name: "t", Mountpoint: changes.Tmpfs(t)}
	if st, err := w.Watch(context.Background(), tg); err != nil || st.Tier != hostAutoTier || st.SafetyNet != 100*time.Millisecond {
		t.Fatalf("Watch: %+v, %v: want tier %s with the safety net", st, err, hostAutoTier)
	}
	select {
	case c := <-w.Changes():
		t.Fatalf("change %+v although nothing was written", c)
	case <-time.After(time.Second):
	}
	written.Store(1) // as if a change escaped every hook
	c := expectChange(t, w, "t", agent.HookSafetyNet)
	if c.Tier != agent.TierTimer {
		t.Errorf("safety-net change %+v: want tier timer", c)
	}
}

// A tmpfs mounted again at the same path is a new filesystem: the watcher
// notices, re-attaches, reports the remount as a change, and changes on the
// new filesystem are reported.
func TestWatcherRemountTmpfs(t *testing.T) {
	testutil.RequireRoot(t)
	w := newWatcher(t, agent.WatcherOptions{SafetyNet: time.Hour})
	mp := changes.Tmpfs(t)
	st0, err := w.Watch(context.Background(), agent.Target{Name: "t", Mountpoint: mp})
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Unmount(mp, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("flocker-test", mp, "tmpfs", 0, "size=16m"); err != nil {
		t.Fatal(err)
	}
	c := expectChange(t, w, "t", agent.HookRemount)
	if c.Tier != hostAutoTier {
		t.Errorf("remount change %+v", c)
	}
	// The new tmpfs may well get the old device number: anonymous devices
	// are reused at once, which is why the watcher also listens for the
	// kernel's IN_UNMOUNT.
	st1 := w.Status()[0]
	if st1.Tier != hostAutoTier {
		t.Fatalf("after remount: %+v", st1)
	}
	t.Logf("device before %d, after %d", st0.Dev, st1.Dev)
	if err := os.WriteFile(filepath.Join(mp, "after"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	// The eBPF tier filters by device: it must follow the new filesystem.
	expectChange(t, w, "t", "sys_exit/openat")
}

// zfs-fuse: unmounting and mounting a dataset, and destroying and creating
// it again, each make it a new filesystem; the watcher follows both (and
// holds nothing that would make the plain unmount or destroy fail).
func TestWatcherRemountZFSFuse(t *testing.T) {
	testutil.RequireRoot(t)
	p := newFusePool(t)
	tg := p.dataset(t, "watched")
	w := newWatcher(t, agent.WatcherOptions{SafetyNet: time.Hour})
	st, err := w.Watch(context.Background(), tg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Plain commands, retried while busy: a file closed just now may still
	// be open in zfs-fuse (FUSE releases asynchronously). Never -f.
	zfs := func(args ...string) {
		t.Helper()
		var err error
		for range 40 {
			if _, err = p.cli.ZFS(ctx, args...); err == nil || !strings.Contains(err.Error(), "busy") {
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	dev := st.Dev
	for _, step := range []struct {
		name string
		run  func()
	}{
		{"unmount and mount", func() { zfs("unmount", tg.Name); zfs("mount", tg.Name) }},
		{"destroy and create", func() { zfs("destroy", tg.Name); zfs("create", tg.Name) }},
	} {
		step.run()
		expectChange(t, w, tg.Name, agent.HookRemount)
		now := w.Status()[0]
		if now.Tier != hostAutoTier {
			t.Fatalf("%s: status %+v", step.name, now)
		}
		t.Logf("%s: device before %d, after %d", step.name, dev, now.Dev)
		dev = now.Dev
		if err := os.WriteFile(filepath.Join(tg.Mountpoint, "after"), []byte(step.name), 0o644); err != nil {
			t.Fatal(err)
		}
		expectChange(t, w, tg.Name, "sys_exit/openat")
	}
}

func TestParseMountinfo(t *testing.T) {
	in := `22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
42 22 0:39 / /tmp/with\040space rw,relatime - fuse.zfs pool/my\040ds rw,user_id=0
43 22 0:40 / /mnt rw - tmpfs one rw
44 43 0:41 / /mnt rw master:3 - zfs tank/app rw,xattr
45 22 259:300 /sub /srv/bind rw - ext4 /dev/nvme0n1p1 rw
`
	mt, err := agent.ParseMountinfo([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if m := mt["/tmp/with space"]; m.Source != "pool/my ds" || m.Dev != unix.Mkdev(0, 39) || !m.IsZFS() {
		t.Errorf("escaped entry: %+v", m)
	}
	if m := mt["/mnt"]; m.FSType != "zfs" || m.Source != "tank/app" || m.Dev != unix.Mkdev(0, 41) {
		t.Errorf("stacked mounts: want the top one, got %+v", m)
	}
	if m := mt["/"]; m.IsZFS() || m.Dev != unix.Mkdev(8, 1) {
		t.Errorf("root: %+v", m)
	}
	// A minor above 255 keeps its bits apart from the major in the kernel's
	// encoding (glibc's st_dev interleaves them).
	if m := mt["/srv/bind"]; m.Root != "/sub" || m.Dev != unix.Mkdev(259, 300) || m.KernelDev() != 259<<20|300 {
		t.Errorf("bind mount of a subtree: %+v (kernel dev %#x)", m, m.KernelDev())
	}
	for _, bad := range []string{
		"1 2 3",
		"22 1 8:1 / / rw shared:1 ext4 /dev/sda1 rw",
		"22 1 x / / rw - ext4 src rw",
		"22 1 4096:1 / / rw - ext4 src rw", // a major the kernel cannot have
		"22 1 0:1 / /x rw - ext4",          // no source
	} {
		if _, err := agent.ParseMountinfo([]byte(bad)); err == nil {
			t.Errorf("ParseMountinfo(%q) accepted it", bad)
		}
	}
}
