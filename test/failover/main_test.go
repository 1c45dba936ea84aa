// Package failover runs the failover end-to-end tests on the host tier: two
// real agents (internal/failpair on internal/agentpair) in network
// namespaces A and B, each on its own zfs-fuse pool, a service started by
// the dataset's start hook, a floating address, and client C requesting a
// file of the dataset through that address.
package failover

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/agentpair/pairtest"
	"github.com/flockerha/flocker/internal/failpair"
	"github.com/flockerha/flocker/internal/rig/rigtest"
)

var bin string

func TestMain(m *testing.M) { pairtest.Main(m, &bin) }

// Timeouts: generous, the machine is shared; nothing here asserts speed.
const (
	syncTimeout  = 90 * time.Second
	serveTimeout = 60 * time.Second
)

// timerNotify is the tier most of these tests were written for: a
// snapshot every 200 ms while the dataset is served.
var timerNotify = map[string]map[string]string{"notify": {"mode": "timer", "interval": "200ms"}}

func newPair(t *testing.T, witness bool) *failpair.Pair {
	t.Helper()
	return newPairWith(t, witness, timerNotify)
}

// newPairWith builds the pair with settings for both config files (nil:
// the defaults). FLOCKER_TEST_LOGLEVEL=debug makes the agents log every
// zfs command (the handoff timeline then shows them).
func newPairWith(t *testing.T, witness bool, settings map[string]map[string]string) *failpair.Pair {
	t.Helper()
	pairtest.RequireTools(t, "busybox")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p, err := failpair.New(ctx, failpair.Options{
		Bin: bin, Witness: witness, Logger: rigtest.Logger(t), Settings: settings, LogLevel: os.Getenv("FLOCKER_TEST_LOGLEVEL"),
	})
	if err != nil {
		t.Fatalf("building the pair: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			pairtest.KeepLogs(t, "flocker-failover-logs-"+t.Name(), p.Nodes())
		}
		if err := p.Close(); err != nil {
			t.Errorf("closing the pair: %v", err)
		}
	})
	return p
}

// startServing starts both agents and waits until C is served by A.
func startServing(t *testing.T, p *failpair.Pair) {
	t.Helper()
	for _, n := range []*agentpair.Node{p.Slave, p.Master} {
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), serveTimeout)
	defer cancel()
	if _, err := p.WaitServed(ctx, failpair.CheckFile, "ok\n"); err != nil {
		t.Fatalf("A does not serve: %v", err)
	}
}

// writeFile writes name into n's dataset.
func writeFile(t *testing.T, n *agentpair.Node, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(n.Mountpoint, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// waitFile waits until n's dataset holds name with content.
func waitFile(t *testing.T, n *agentpair.Node, name, content string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(filepath.Join(n.Mountpoint, name))
		if err == nil && string(b) == content {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %s does not hold %q after %v (err %v, got %q)", n.Name, name, content, timeout, err, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// state reads n's persisted role and epoch.
func state(t *testing.T, n *agentpair.Node) config.State {
	t.Helper()
	c, err := config.Load(n.Config)
	if err != nil {
		t.Fatal(err)
	}
	return c.State
}

// waitState waits until n's file records role (and an epoch of at least
// epoch).
func waitState(t *testing.T, n *agentpair.Node, role config.Role, epoch uint64, timeout time.Duration) config.State {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := state(t, n)
		if st.Role == role && st.Epoch >= epoch {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: state %s/%d after %v, want %s at epoch >= %d", n.Name, st.Role, st.Epoch, timeout, role, epoch)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitDecision waits for a failover decision of n whose note contains
// part.
func waitDecision(t *testing.T, n *agentpair.Node, mark int, part string, timeout time.Duration) agentpair.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r, err := n.Log.Wait(ctx, mark, func(r agentpair.Record) bool {
		return r.Msg() == "failover decision" && strings.Contains(r.Str("note"), part)
	})
	if err != nil {
		t.Fatalf("%s: no failover decision %q within %v", n.Name, part, timeout)
	}
	return r
}

// stashes lists the stash datasets in n's pool.
func stashes(t *testing.T, n *agentpair.Node) []string {
	t.Helper()
	out, err := exec.Command("zfs", "list", "-H", "-o", "name", "-t", "filesystem", "-r", "-d", "1", n.Pool.Name+"/flocker-stash").CombinedOutput()
	if err != nil {
		if strings.Contains(string(out), "does not exist") {
			return nil
		}
		t.Fatalf("listing stashes: %v: %s", err, out)
	}
	var names []string
	for _, l := range strings.Fields(string(out)) {
		if l != n.Pool.Name+"/flocker-stash" {
			names = append(names, l)
		}
	}
	return names
}

// mountpoint of a dataset.
func mountpoint(t *testing.T, ds string) string {
	t.Helper()
	out, err := exec.Command("zfs", "get", "-H", "-o", "value", "mountpoint", ds).CombinedOutput()
	if err != nil {
		t.Fatalf("mountpoint of %s: %v: %s", ds, err, out)
	}
	return strings.TrimSpace(string(out))
}

// countTransfers counts n's "transfer started" records of kind from mark.
func countTransfers(n *agentpair.Node, mark int, kind string) int {
	return n.Log.Count(mark, func(r agentpair.Record) bool {
		return r.Msg() == "transfer started" && r.Str("kind") == kind
	})
}

// waitRecordMsg waits for a record with message m of n from mark on.
func waitRecordMsg(t *testing.T, n *agentpair.Node, mark int, m string, timeout time.Duration) agentpair.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	r, err := n.Log.WaitMsg(ctx, mark, m)
	if err != nil {
		t.Fatalf("%s: no %q within %v", n.Name, m, timeout)
	}
	return r
}

// cutMasterWhileItWrites serves, replicates base.txt, pulls A's cable, has
// A write (and snapshot) a-only.txt alone, and waits until B took the next
// epoch and serves C: the state is written before the takeover's effects,
// so B serves (and its dataset is writable) once C gets an answer, which
// only B can give. It returns B's state and A's log position before A's
// lone write.
func cutMasterWhileItWrites(t *testing.T, p *failpair.Pair) (config.State, int) {
	t.Helper()
	startServing(t, p)
	e0 := state(t, p.Master).Epoch
	writeFile(t, p.Master, "base.txt", "common\n")
	waitFile(t, p.Slave, "base.txt", "common\n", syncTimeout)

	if err := p.Master.Host.LinkDown(); err != nil {
		t.Fatal(err)
	}
	mark := p.Master.Log.Len()
	writeFile(t, p.Master, "a-only.txt", "acknowledged by A alone\n")
	waitRecordMsg(t, p.Master, mark, "snapshot taken", 30*time.Second)
	b := waitState(t, p.Slave, config.RoleMaster, e0+1, serveTimeout)
	sctx, scancel := context.WithTimeout(context.Background(), serveTimeout)
	defer scancel()
	if _, err := p.WaitServed(sctx, "base.txt", "common\n"); err != nil {
		t.Fatal(err)
	}
	return b, mark
}
