package failover

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/flockerha/flocker/agent/config"
)

// fakeOS stands in for the INI, netlink, the hooks and ZFS at once, so a
// table can show what a list of effects leaves behind as text. It is a fake
// on purpose: these tests are about ordering, retries and stopping, and the
// real adapters have their own tests against the real things (vip, hooks,
// probe tests; config's WriteState tests).
type fakeOS struct {
	role     config.Role
	epoch    uint64
	datasets []string
	vip      map[string]bool
	running  map[string]bool
	writable map[string]bool
	partial  map[string]bool // a partial receive is pending
	stashed  map[string]bool
	synced   map[string]bool
	offered  uint64
	fail     map[string]int // effect text -> failures left
}

func newFakeOS(role config.Role, epoch uint64, datasets ...string) *fakeOS {
	return &fakeOS{role: role, epoch: epoch, datasets: datasets,
		vip: map[string]bool{}, running: map[string]bool{}, writable: map[string]bool{},
		partial: map[string]bool{}, stashed: map[string]bool{}, synced: map[string]bool{}, fail: map[string]int{}}
}

var errInjected = errors.New("injected")

func (f *fakeOS) try(e Effect) error {
	if f.fail[e.String()] > 0 {
		f.fail[e.String()]--
		return errInjected
	}
	return nil
}

func (f *fakeOS) WriteState(role config.Role, epoch uint64) error {
	if err := f.try(persist(role, epoch)); err != nil {
		return err
	}
	f.role, f.epoch = role, epoch
	return nil
}

func (f *fakeOS) set(kind EffectKind, ds string, m map[string]bool, v bool) error {
	if err := f.try(Effect{Kind: kind, Dataset: ds}); err != nil {
		return err
	}
	m[ds] = v
	return nil
}

func (f *fakeOS) AddVIP(_ context.Context, ds string) error {
	return f.set(EffectAddVIP, ds, f.vip, true)
}
func (f *fakeOS) DropVIP(_ context.Context, ds string) error {
	return f.set(EffectDropVIP, ds, f.vip, false)
}
func (f *fakeOS) StartService(_ context.Context, ds string) error {
	return f.set(EffectStart, ds, f.running, true)
}
func (f *fakeOS) StopService(_ context.Context, ds string) error {
	return f.set(EffectStop, ds, f.running, false)
}
func (f *fakeOS) AbortReceive(_ context.Context, ds string) error {
	return f.set(EffectAbortReceive, ds, f.partial, false)
}
func (f *fakeOS) SetWritable(_ context.Context, ds string) error {
	return f.set(EffectWritable, ds, f.writable, true)
}
func (f *fakeOS) SetReadonly(_ context.Context, ds string) error {
	return f.set(EffectReadonly, ds, f.writable, false)
}
func (f *fakeOS) SyncPeer(_ context.Context, ds string) error {
	return f.set(EffectSyncPeer, ds, f.synced, true)
}
func (f *fakeOS) Stash(_ context.Context, ds string) error {
	return f.set(EffectStash, ds, f.stashed, true)
}
func (f *fakeOS) OfferHandoff(_ context.Context, epoch uint64) error {
	if err := f.try(Effect{Kind: EffectOfferHandoff, Epoch: epoch}); err != nil {
		return err
	}
	f.offered = epoch
	return nil
}

// String prints the system as an operator would inspect it.
func (f *fakeOS) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "ini: role=%s epoch=%d\n", f.role, f.epoch)
	for _, ds := range f.datasets {
		var p []string
		p = append(p, map[bool]string{true: "writable", false: "readonly"}[f.writable[ds]])
		if f.partial[ds] {
			p = append(p, "partial-receive")
		}
		p = append(p, map[bool]string{true: "service running", false: "service stopped"}[f.running[ds]])
		p = append(p, map[bool]string{true: "vip held", false: "no vip"}[f.vip[ds]])
		if f.synced[ds] {
			p = append(p, "synced to peer")
		}
		if f.stashed[ds] {
			p = append(p, "stashed")
		}
		fmt.Fprintf(&b, "%s: %s\n", ds, strings.Join(p, ", "))
	}
	if f.offered > 0 {
		fmt.Fprintf(&b, "offered epoch %d to peer\n", f.offered)
	}
	return b.String()
}

func (f *fakeOS) executor(t *testing.T) *Executor {
	return &Executor{State: f, Addresses: f, Services: f, Replicas: f, Handover: f, Stasher: f,
		Log: testLogger(t), Backoff: -1}
}

func TestExecutor(t *testing.T) {
	m := Machine{Node: "alpha", Peer: "beta", Datasets: []string{"app"}, Witness: true}
	promotion := m.Step(standby, deadSilent).Effects
	demotion := m.Step(serving, masterHeard8).Effects
	handoff := m.Step(serving, Handoff{}).Effects
	tests := []struct {
		name    string
		os      func() *fakeOS
		effects []Effect
		fail    map[string]int
		want    string // report, blank line, OS afterwards
	}{
		{
			name: "promotion",
			os: func() *fakeOS {
				f := newFakeOS(slave, 7, "app")
				f.partial["app"] = true
				return f
			},
			effects: promotion,
			want: `
done: persist(master,8) abort-receive(app) writable(app) start(app) vip-add(app)

ini: role=master epoch=8
app: writable, service running, vip held
`,
		},
		{
			name:    "a failure that clears on retry",
			os:      func() *fakeOS { return newFakeOS(slave, 7, "app") },
			effects: promotion,
			fail:    map[string]int{"start(app)": 2},
			want: `
done: persist(master,8) abort-receive(app) writable(app) start(app) vip-add(app)

ini: role=master epoch=8
app: writable, service running, vip held
`,
		},
		{
			name:    "start keeps failing: stop there, the address never added",
			os:      func() *fakeOS { return newFakeOS(slave, 7, "app") },
			effects: promotion,
			fail:    map[string]int{"start(app)": 3},
			want: `
done: persist(master,8) abort-receive(app) writable(app)
failed: start(app): injected
remaining: start(app) vip-add(app)

ini: role=master epoch=8
app: writable, service stopped, no vip
`,
		},
		{
			name:    "persist fails: nothing else happens",
			os:      func() *fakeOS { return newFakeOS(slave, 7, "app") },
			effects: promotion,
			fail:    map[string]int{"persist(master,8)": 3},
			want: `
done: -
failed: persist(master,8): injected
remaining: persist(master,8) abort-receive(app) writable(app) start(app) vip-add(app)

ini: role=slave epoch=7
app: readonly, service stopped, no vip
`,
		},
		{
			name: "demotion",
			os: func() *fakeOS {
				f := newFakeOS(master, 7, "app")
				f.vip["app"], f.running["app"], f.writable["app"] = true, true, true
				return f
			},
			effects: demotion,
			want: `
done: persist(slave,8) vip-drop(app) stop(app) readonly(app)

ini: role=slave epoch=8
app: readonly, service stopped, no vip
`,
		},
		{
			name: "demotion whose stop fails: the address is already gone",
			os: func() *fakeOS {
				f := newFakeOS(master, 7, "app")
				f.vip["app"], f.running["app"], f.writable["app"] = true, true, true
				return f
			},
			effects: demotion,
			fail:    map[string]int{"stop(app)": 5},
			want: `
done: persist(slave,8) vip-drop(app)
failed: stop(app): injected
remaining: stop(app) readonly(app)

ini: role=slave epoch=8
app: writable, service running, no vip
`,
		},
		{
			name: "handoff",
			os: func() *fakeOS {
				f := newFakeOS(master, 7, "app")
				f.vip["app"], f.running["app"], f.writable["app"] = true, true, true
				return f
			},
			effects: handoff,
			want: `
done: vip-drop(app) stop(app) readonly(app) sync-peer(app) offer-handoff(8)

ini: role=master epoch=7
app: readonly, service stopped, no vip, synced to peer
offered epoch 8 to peer
`,
		},
		{
			name:    "a list that acts before persisting is refused whole",
			os:      func() *fakeOS { return newFakeOS(slave, 7, "app") },
			effects: []Effect{{Kind: EffectWritable, Dataset: "app"}, persist(master, 8)},
			want: `
done: -
failed: refusing writable(app) persist(master,8): persist must be the first effect (found at position 1)
remaining: writable(app) persist(master,8)

ini: role=slave epoch=7
app: readonly, service stopped, no vip
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := tt.os()
			for k, v := range tt.fail {
				f.fail[k] = v
			}
			rep := f.executor(t).Run(context.Background(), tt.effects)
			got := rep.String() + "\n\n" + f.String()
			if want := strings.TrimPrefix(tt.want, "\n"); got != want {
				t.Errorf("got:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// Running the remainder after a failure finishes the job, and running a
// whole list twice changes nothing the second time.
func TestExecutorResume(t *testing.T) {
	m := Machine{Node: "alpha", Peer: "beta", Datasets: []string{"app", "db"}}
	effects := m.Step(standby, deadSilent).Effects
	f := newFakeOS(slave, 7, "app", "db")
	f.fail["start(db)"] = 3
	x := f.executor(t)
	rep := x.Run(context.Background(), effects)
	if rep.Err == nil || !slices.Equal(rep.Remaining, effects[6:]) {
		t.Fatalf("first run: %s", rep)
	}
	mid := f.String()
	if want := "ini: role=master epoch=8\napp: writable, service running, no vip\ndb: writable, service stopped, no vip\n"; mid != want {
		t.Errorf("after the failure:\n%s\nwant:\n%s", mid, want)
	}
	if rep := x.Run(context.Background(), rep.Remaining); rep.Err != nil {
		t.Fatalf("rerun of the remainder: %s", rep)
	}
	done := f.String()
	if want := "ini: role=master epoch=8\napp: writable, service running, vip held\ndb: writable, service running, vip held\n"; done != want {
		t.Errorf("after the remainder:\n%s\nwant:\n%s", done, want)
	}
	if rep := x.Run(context.Background(), effects); rep.Err != nil || f.String() != done {
		t.Errorf("second full run: %s\n%s", rep, f)
	}
}

func TestExecutorMissingAdapterAndCancel(t *testing.T) {
	x := &Executor{Backoff: -1, Log: testLogger(t)}
	rep := x.Run(context.Background(), []Effect{{Kind: EffectAddVIP, Dataset: "app"}})
	if rep.Err == nil || !errors.Is(rep.Err, errNoAdapter) || rep.Err.Error() != "vip-add(app): addresses: no adapter configured" {
		t.Errorf("missing adapter: %v", rep.Err)
	}
	f := newFakeOS(slave, 7, "app")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep = f.executor(t).Run(ctx, []Effect{persist(master, 8)})
	if !errors.Is(rep.Err, context.Canceled) || f.epoch != 7 {
		t.Errorf("cancelled run: %v, epoch %d", rep.Err, f.epoch)
	}
}

// INIState writes through config.WriteState: the real file, re-read.
func TestINIState(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "flocker.ini")
	src, err := os.ReadFile("../agent/config/testdata/valid/design.ini")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, src, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (INIState{Path: path}).WriteState(master, 42); err != nil {
		t.Fatal(err)
	}
	c, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.State.Role != master || c.State.Epoch != 42 {
		t.Errorf("state after write: %+v", c.State)
	}
}
