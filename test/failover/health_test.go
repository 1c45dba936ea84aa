package failover

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/internal/agentpair"
)

// failingCheck makes n's check hook fail while a flag file exists (in n's
// directory: per host, never replicated) and returns the flag's path. Call
// it before n's agent starts.
func failingCheck(t *testing.T, n *agentpair.Node) string {
	t.Helper()
	c, err := config.Load(n.Config)
	if err != nil {
		t.Fatal(err)
	}
	flag := filepath.Join(n.Dir, "check-fails")
	check := "test ! -e " + flag + " && " + c.Datasets[0].Check
	if err := config.SetKeys(n.Config, config.DatasetSection(agentpair.DatasetName), "check", check); err != nil {
		t.Fatal(err)
	}
	return flag
}

// setFlag creates the flag file.
func setFlag(t *testing.T, flag string) {
	t.Helper()
	if err := os.WriteFile(flag, nil, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestHealthHandover: A's check starts failing (the flag file) while B is
// alive, slave, healthy and current: after check_failures failures in a
// row A hands over. B serves at the next epoch with everything A wrote, C
// is served by B, A is slave and readonly, the address is B's alone
// (sampled all along), nothing is stashed, and replication flows B to A.
func TestHealthHandover(t *testing.T) {
	p := newPair(t, false)
	flag := failingCheck(t, p.Master)
	startServing(t, p)
	e0 := state(t, p.Master).Epoch
	writeFile(t, p.Master, "data.txt", "written before the check failed\n")
	waitFile(t, p.Slave, "data.txt", "written before the check failed\n", syncTimeout)

	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	holders := watchHolders(watchCtx, p)
	mark := p.Master.Log.Len()
	// Written as the service goes bad: the handover's final snapshot
	// carries it.
	writeFile(t, p.Master, "last.txt", "written as the check started failing\n")
	setFlag(t, flag)
	waitDecision(t, p.Master, mark, "keeps failing: handing over to "+p.Slave.Name, serveTimeout)
	b := waitState(t, p.Slave, config.RoleMaster, e0+1, serveTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), serveTimeout)
	defer cancel()
	if _, err := p.WaitServed(ctx, "last.txt", "written as the check started failing\n"); err != nil {
		t.Fatal(err)
	}
	if body, err := p.Get("data.txt", time.Second); err != nil || body != "written before the check failed\n" {
		t.Fatalf("C through the address after the handover: data.txt %q, %v", body, err)
	}
	waitState(t, p.Master, config.RoleSlave, b.Epoch, serveTimeout)
	time.Sleep(500 * time.Millisecond)
	stopWatch()
	if h := <-holders; h.err != nil || h.double != nil {
		t.Fatalf("floating address: both hosts held it at once: %v (err %v)", h.double, h.err)
	} else {
		t.Logf("%d samples of the address holders, never two", h.samples)
	}
	if h, err := p.Holders(); err != nil || !slices.Equal(h, []string{p.Slave.Name}) {
		t.Fatalf("floating address held by %v (err %v), want only %s", h, err, p.Slave.Name)
	}
	requireReadonly(t, p.Master)

	markB := p.Slave.Log.Len()
	writeFile(t, p.Slave, "next.txt", "written on B after the handover\n")
	waitFile(t, p.Master, "next.txt", "written on B after the handover\n", syncTimeout)
	if n := countTransfers(p.Slave, markB, "full"); n != 0 {
		t.Fatalf("B sent %d full streams after the handover", n)
	}
	if s := stashes(t, p.Master); len(s) != 0 {
		t.Fatalf("a health handover stashed %v", s)
	}
}

// TestHealthNoHandoverPeerAway: A's check keeps failing while B's agent is
// stopped: there is nobody to hand over to, so A stays master and keeps
// the address (its service may still answer some clients); when B's agent
// is back and current, A hands over.
func TestHealthNoHandoverPeerAway(t *testing.T) {
	p := newPair(t, false)
	flag := failingCheck(t, p.Master)
	startServing(t, p)
	e0 := state(t, p.Master).Epoch
	writeFile(t, p.Master, "data.txt", "replicated\n")
	waitFile(t, p.Slave, "data.txt", "replicated\n", syncTimeout)

	if err := p.Slave.Stop(); err != nil {
		t.Fatal(err)
	}
	mark := p.Master.Log.Len()
	setFlag(t, flag)
	waitDecision(t, p.Master, mark, "keeps failing but "+p.Slave.Name+" is", serveTimeout)
	time.Sleep(3 * time.Second) // failed checks go on: still no handover
	if st := state(t, p.Master); st.Role != config.RoleMaster || st.Epoch != e0 {
		t.Fatalf("A is %s at epoch %d with its peer away; want master at %d", st.Role, st.Epoch, e0)
	}
	if h, err := p.Holders(); err != nil || !slices.Equal(h, []string{p.Master.Name}) {
		t.Fatalf("floating address held by %v (err %v), want only %s", h, err, p.Master.Name)
	}
	// Nor does an operator's handoff: refused, A still serves.
	hctx, hcancel := context.WithTimeout(context.Background(), serveTimeout)
	defer hcancel()
	if out, err := p.Master.Flocker(hctx, "handoff", "--config", p.Master.Config); err == nil || !strings.Contains(err.Error(), "handoff refused: "+p.Slave.Name+" is") {
		t.Fatalf("flocker handoff with B away: %q, %v; want refused", out, err)
	}
	if body, err := p.Get("data.txt", 2*time.Second); err != nil || body != "replicated\n" {
		t.Fatalf("C after the refused handoff: %q, %v; want A's answer", body, err)
	}

	// B returns: it catches up and is healthy, and the next run of failures
	// hands over.
	if err := p.Slave.Start(); err != nil {
		t.Fatal(err)
	}
	waitDecision(t, p.Master, mark, "keeps failing: handing over to "+p.Slave.Name, serveTimeout)
	waitState(t, p.Slave, config.RoleMaster, e0+1, serveTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), serveTimeout)
	defer cancel()
	if _, err := p.WaitServed(ctx, "data.txt", "replicated\n"); err != nil {
		t.Fatal(err)
	}
	waitState(t, p.Master, config.RoleSlave, e0+1, serveTimeout)
}

// TestHealthNoHandoverPeerBehind: B is alive and slave but cannot take
// A's newest snapshot (its replica's quota is too small for what A wrote):
// B is not current, so A's failing check hands nothing over: B would serve
// without A's last writes. A stays master and keeps the address.
func TestHealthNoHandoverPeerBehind(t *testing.T) {
	p := newPair(t, false)
	flag := failingCheck(t, p.Master)
	startServing(t, p)
	e0 := state(t, p.Master).Epoch
	writeFile(t, p.Master, "data.txt", "replicated\n")
	waitFile(t, p.Slave, "data.txt", "replicated\n", syncTimeout)

	zfs(t, "set", "quota=1M", p.Slave.Dataset)
	mark := p.Master.Log.Len()
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	writeFile(t, p.Master, "big.bin", string(big))
	// A full pool is logged on its own line; any failed transfer will do.
	ctx, cancel := context.WithTimeout(context.Background(), syncTimeout)
	defer cancel()
	if _, err := p.Master.Log.Wait(ctx, mark, func(r agentpair.Record) bool { return strings.Contains(r.Msg(), "transfer failed") }); err != nil {
		t.Fatalf("A's transfer of big.bin to B (quota 1M) did not fail: %v", err)
	}
	setFlag(t, flag)
	waitDecision(t, p.Master, mark, "keeps failing but "+p.Slave.Name+" is not current", serveTimeout)
	// Every failed check tries again (after a pre-sync that cannot
	// complete): still no handover.
	time.Sleep(5 * time.Second)
	if st := state(t, p.Master); st.Role != config.RoleMaster || st.Epoch != e0 {
		t.Fatalf("A is %s at epoch %d with its peer behind; want master at %d", st.Role, st.Epoch, e0)
	}
	if st := state(t, p.Slave); st.Role != config.RoleSlave || st.Epoch != e0 {
		t.Fatalf("B is %s at epoch %d while behind; want slave at %d", st.Role, st.Epoch, e0)
	}
	if h, err := p.Holders(); err != nil || !slices.Equal(h, []string{p.Master.Name}) {
		t.Fatalf("floating address held by %v (err %v), want only %s", h, err, p.Master.Name)
	}
}

// zfs runs a zfs command of the test's own.
func zfs(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("zfs", args...).CombinedOutput(); err != nil {
		t.Fatalf("zfs %v: %v: %s", args, err, out)
	}
}
