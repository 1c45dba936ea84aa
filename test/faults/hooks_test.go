package faults

import (
	"context"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/chaos"
	"github.com/flockerha/flocker/internal/failpair"
)

func wrapHook(t *testing.T, n *agentpair.Node, hook string) *chaos.HookKiller {
	t.Helper()
	k, err := chaos.WrapHook(n, hook)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Disarm)
	return k
}

// killHook arms k, lets trigger set off the role change, and waits until
// the hook's shell was SIGKILLed and its effect retried to success.
func killHook(t *testing.T, k *chaos.HookKiller, trigger func()) {
	t.Helper()
	killed, err := k.Arm()
	if err != nil {
		t.Fatal(err)
	}
	mark := k.Node.Log.Len()
	trigger()
	select {
	case pid := <-killed:
		t.Logf("SIGKILL sent to %s's %s hook (shell pid %d)", k.Node.Name, k.Hook, pid)
	case <-time.After(serveTimeout):
		t.Fatalf("%s's %s hook did not run within %v", k.Node.Name, k.Hook, serveTimeout)
	}
	ctx, cancel := context.WithTimeout(context.Background(), serveTimeout)
	defer cancel()
	failed, done, err := k.Retried(ctx, mark, "app")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %s failed on try %v (%s), done on try %v", k.Node.Name, k.Effect("app"), failed.Str("try"), failed.Str("err"), done.Str("try"))
}

// TestHookKilled: the start hook of the slave that takes over (A lost
// power), and the stop hook of the old master as it comes back and
// demotes, are each SIGKILLed while they run. The agent reports the
// killed hook, undoes and retries it; the end state is B master serving C,
// A its slave with an identical replica, and every acknowledged write in
// the winner or a stash (what A acknowledged and had not sent before it
// died is on its disk, stashed when it demotes).
func TestHookKilled(t *testing.T) {
	p := newFailPair(t, false)
	a, b := p.Master, p.Slave
	startB := wrapHook(t, b, "start")
	stopA := wrapHook(t, a, "stop")
	s := startServing(t, p)
	if s.Master != a {
		t.Fatalf("%s serves, want %s", s.Master.Name, a.Name)
	}
	w := chaos.NewWriter(p, "hooks", 4096, 200*time.Millisecond)
	w.Start()
	defer w.Stop()
	time.Sleep(2 * time.Second)

	// Promotion: A loses power; B's start hook is killed mid-run.
	killHook(t, startB, func() {
		w.SetDown(a, true)
		if err := failpair.KillHost(a); err != nil {
			t.Fatal(err)
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), serveTimeout)
	defer cancel()
	if _, err := p.WaitServed(ctx, failpair.CheckFile, "ok\n"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second) // B takes writes

	// Demotion: A comes back, hears B at the higher epoch and demotes; its
	// stop hook is killed mid-run.
	killHook(t, stopA, func() {
		if err := a.Start(); err != nil {
			t.Fatal(err)
		}
		if err := a.Host.LinkUp(); err != nil {
			t.Fatal(err)
		}
		w.SetDown(a, false)
	})
	time.Sleep(2 * time.Second)
	w.Stop()

	after := waitSettled(t, p)
	if after.Master != b {
		t.Fatalf("%s is master after the heal, want %s", after.Master.Name, b.Name)
	}
	acc, err := chaos.Account(p, after, w.Ledgers()...)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("settled: %s master at epoch %d; %s", after.Master.Name, after.Epoch, acc)
	if !acc.OK() || acc.Acked == 0 {
		t.Fatalf("acknowledged writes: %s", acc)
	}
}
