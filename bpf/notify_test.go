//go:build linux

package bpf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// quiet is how long a test waits to be sure no event comes: events arrive
// in microseconds, so this is generous on a busy 2-core machine.
const quiet = 300 * time.Millisecond

// watchTmpfs loads the tracepoint tier and adds a fresh tmpfs as a target.
func watchTmpfs(t *testing.T, opts TierOptions) (*Tier, uint32, string) {
	t.Helper()
	tier := mustLoadTier(t, opts)
	dir := tmpfs(t)
	id, err := tier.AddTarget(Target{Devs: []uint32{kernelDev(t, dir)}, Mountpoints: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	return tier, id, dir
}

func openFile(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// drain reads events until none comes for `quiet`, counting them per target.
func drain(t *testing.T, tier *Tier) map[uint32]int {
	t.Helper()
	got := map[uint32]int{}
	for {
		ev, ok := nextEvent(t, tier, quiet)
		if !ok {
			return got
		}
		got[ev.Target]++
	}
}

func TestHookNames(t *testing.T) {
	for ident, want := range map[string]string{
		"hook_sys_exit__pwrite64":          "sys_exit/pwrite64",
		"hook_io_uring_complete__WRITE":    "io_uring_complete/WRITE",
		"hook_fexit____kernel_write":       "fexit/__kernel_write",
		"hook_writeback_dirty_folio":       "writeback_dirty_folio",
		"hook_kretprobe__folio_mark_dirty": "kretprobe/folio_mark_dirty",
	} {
		if got := HookName(ident); got != want {
			t.Errorf("HookName(%q) = %q, want %q", ident, got, want)
		}
	}
	// Every object carries the whole enum, with no gaps.
	for key, load := range objects {
		spec, err := load()
		if err != nil {
			t.Fatal(err)
		}
		names, err := hookNames(spec)
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if names[0] != "none" || names[1] != "lost" || names[len(names)-1] != "max" {
			t.Errorf("%s: hook names %q ... %q: enum hook changed shape", key, names[:2], names[len(names)-1])
		}
		for i, n := range names {
			if n == "" {
				t.Errorf("%s: enum hook has no name for %d", key, i)
			}
		}
	}
}

// A million writes while the flag stays set give exactly one event; the
// flag is set afterwards and re-arming gives the next one.
func TestCoalescingMillionWrites(t *testing.T) {
	for _, variant := range []string{VariantTPBTF, VariantRawSyscalls} {
		t.Run(variant, func(t *testing.T) {
			tier, id, dir := watchTmpfs(t, TierOptions{Tier: TierTracepoint, Variant: variant})
			f := openFile(t, filepath.Join(dir, "f"))
			drain(t, tier) // the create
			tier.Arm(id)
			buf := make([]byte, 16)
			const n = 1_000_000
			for i := range n {
				if _, err := unix.Pwrite(int(f.Fd()), buf, int64(i%4096)*16); err != nil {
					t.Fatal(err)
				}
			}
			got := drain(t, tier)
			if got[id] != 1 || len(got) != 1 {
				t.Fatalf("%d writes gave events %v, want exactly one for target %d", n, got, id)
			}
			if !tier.Dirty(id) || tier.Lost(id) != 0 {
				t.Fatalf("after the writes: dirty %v, lost %d; want dirty, nothing lost", tier.Dirty(id), tier.Lost(id))
			}
			if !tier.Arm(id) {
				t.Fatal("Arm: the flag was not set")
			}
			if _, err := unix.Pwrite(int(f.Fd()), buf, 0); err != nil {
				t.Fatal(err)
			}
			if got := drain(t, tier); got[id] != 1 {
				t.Fatalf("re-armed write gave events %v, want one", got)
			}
		})
	}
}

// With the flag cleared every 10 ms under a steady stream of writes, every
// dirty period gives exactly one event: the events equal the clears that
// found the flag set (Arm is an atomic swap, so none is counted twice).
func TestCoalescingTracksClears(t *testing.T) {
	tier, id, dir := watchTmpfs(t, TierOptions{Tier: TierTracepoint})
	f := openFile(t, filepath.Join(dir, "f"))
	drain(t, tier)
	tier.Arm(id)

	var events atomic.Int64
	readDone := make(chan error, 1)
	go func() {
		for {
			ev, err := tier.ReadEvent()
			if err != nil {
				readDone <- err
				return
			}
			if ev.Target == id {
				events.Add(1)
			}
		}
	}()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		buf := make([]byte, 16)
		for {
			select {
			case <-stop:
				return
			default:
			}
			unix.Pwrite(int(f.Fd()), buf, 0)
		}
	})
	periods, clears := 0, 0
	tick := time.NewTicker(10 * time.Millisecond)
	for range 100 {
		<-tick.C
		clears++
		if tier.Arm(id) {
			periods++
		}
	}
	tick.Stop()
	close(stop)
	wg.Wait()
	if tier.Arm(id) { // the period the last clear opened
		periods++
	}
	// Let the reader catch up, then stop it through Close.
	deadline := time.Now().Add(5 * time.Second)
	for events.Load() < int64(periods) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(quiet)
	tier.Close()
	if err := <-readDone; !errors.Is(err, ErrClosed) {
		t.Fatalf("reader ended with %v, want ErrClosed", err)
	}
	t.Logf("%d clears, %d dirty periods, %d events", clears, periods, events.Load())
	if got := events.Load(); got != int64(periods) {
		t.Errorf("%d events for %d dirty periods: want exactly one each", got, periods)
	}
	if periods < clears/2 {
		t.Errorf("only %d of %d clears found the flag set: the writer hardly ran", periods, clears)
	}
}

// A full ring buffer loses no change: with the consumer stalled and the
// buffer filled by one target, every other target's change shows in its
// lost counter with its flag left clean, and once the buffer drains the
// next change gives an event again.
func TestFullRingBufferLosesNothing(t *testing.T) {
	tier := mustLoadTier(t, TierOptions{Tier: TierTracepoint, RingBufferSize: os.Getpagesize()})
	type target struct {
		id uint32
		f  *os.File
	}
	var targets []target
	for range 3 {
		dir := tmpfs(t)
		id, err := tier.AddTarget(Target{Devs: []uint32{kernelDev(t, dir)}, Mountpoints: []string{dir}})
		if err != nil {
			t.Fatal(err)
		}
		targets = append(targets, target{id, openFile(t, filepath.Join(dir, "f"))})
	}
	write := func(tg target) {
		t.Helper()
		if _, err := unix.Pwrite(int(tg.f.Fd()), []byte("0123456789abcdef"), 0); err != nil {
			t.Fatal(err)
		}
	}
	drain(t, tier) // the creates
	for _, tg := range targets {
		tier.Arm(tg.id)
	}
	// Fill the buffer through the first target: arm, write, until an edge
	// finds no room. Nothing reads meanwhile.
	a := targets[0]
	edges := 0
	for tier.Lost(a.id) == 0 {
		tier.Arm(a.id)
		write(a)
		edges++
		if edges > 100_000 {
			t.Fatal("the ring buffer never filled")
		}
	}
	t.Logf("a %d-byte ring buffer took %d events", os.Getpagesize(), edges-1)
	if tier.Dirty(a.id) {
		t.Error("the edge that found no room left the flag set: later writes would be lost")
	}
	for _, tg := range targets[1:] {
		write(tg)
		if tier.Lost(tg.id) != 1 || tier.Dirty(tg.id) {
			t.Errorf("target %d with the buffer full: lost %d, dirty %v; want lost 1, clean", tg.id, tier.Lost(tg.id), tier.Dirty(tg.id))
		}
	}
	// Drain, then each target reports a new change as an event again.
	if got := drain(t, tier); got[a.id] != edges-1 {
		t.Errorf("drained %v, want the %d events of target %d", got, edges-1, a.id)
	}
	for _, tg := range targets {
		tier.Arm(tg.id)
		write(tg)
		ev, ok := nextEvent(t, tier, 2*time.Second)
		if !ok || ev.Target != tg.id || ev.Hook != "sys_exit/pwrite64" {
			t.Errorf("target %d after the drain: event %+v (%v), want sys_exit/pwrite64", tg.id, ev, ok)
		}
	}
}

// Writes to a filesystem that is not a target, and reads of one that is,
// give nothing; removing a target silences it; its id is reused last.
func TestTargetsAndSilence(t *testing.T) {
	tier, id, dir := watchTmpfs(t, TierOptions{Tier: TierTracepoint})
	other := tmpfs(t)
	f := openFile(t, filepath.Join(dir, "f"))
	g := openFile(t, filepath.Join(other, "g"))
	drain(t, tier)
	tier.Arm(id)
	g.Write([]byte("elsewhere"))
	os.Rename(filepath.Join(other, "g"), filepath.Join(other, "h"))
	buf := make([]byte, 4)
	f.ReadAt(buf, 0)
	os.Stat(filepath.Join(dir, "f"))
	os.ReadDir(dir)
	if got := drain(t, tier); len(got) != 0 {
		t.Fatalf("reads and other filesystems gave events %v", got)
	}
	if _, err := tier.AddTarget(Target{Devs: []uint32{kernelDev(t, dir)}, Mountpoints: []string{dir}}); err == nil || !strings.Contains(err.Error(), "already watched") {
		t.Errorf("adding the same device twice: %v, want already watched", err)
	}
	if err := tier.RemoveTarget(id); err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("gone"))
	if got := drain(t, tier); len(got) != 0 {
		t.Fatalf("removed target gave events %v", got)
	}
	if err := tier.RemoveTarget(id); err == nil {
		t.Error("removing a removed target: no error")
	}
	id2, err := tier.AddTarget(Target{Devs: []uint32{kernelDev(t, other)}, Mountpoints: []string{other}})
	if err != nil {
		t.Fatal(err)
	}
	if id2 == id {
		t.Errorf("a removed id came back at once (%d): reuse the oldest free id", id)
	}
	g2 := openFile(t, filepath.Join(other, "g2"))
	drain(t, tier)
	tier.Arm(id2)
	g2.Write([]byte("x"))
	if ev, ok := nextEvent(t, tier, 2*time.Second); !ok || ev.Target != id2 {
		t.Fatalf("new target: %+v %v", ev, ok)
	}
}

func TestLoadTierRefusals(t *testing.T) {
	for _, opts := range []TierOptions{
		{Tier: "nope"},
		{Tier: TierTracepoint, Variant: "nope"},
		{Tier: TierBlock, Variant: VariantTPBTF},
		{Tier: TierTracepoint, RingBufferSize: 5000},
	} {
		if tier, err := LoadTier(opts); err == nil {
			tier.Close()
			t.Errorf("%+v: loaded, want an error", opts)
		}
	}
}
