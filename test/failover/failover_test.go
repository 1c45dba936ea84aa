package failover

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/internal/failpair"
)

// TestHostDies: A (master) loses power: every process in its namespace is
// killed and its cable pulled. C is served by B through the floating
// address with the data replicated before. A comes back: it hears B as
// master at a higher epoch and demotes; what A held after the common
// snapshot is stashed (on zfs-fuse a restarted master's head is unknown,
// so it is kept); replication then flows B to A incrementally.
func TestHostDies(t *testing.T) {
	p := newPair(t, true)
	startServing(t, p)
	e0 := state(t, p.Master).Epoch
	writeFile(t, p.Master, "data.txt", "replicated before the failure\n")
	waitFile(t, p.Slave, "data.txt", "replicated before the failure\n", syncTimeout)

	ctx, cancel := context.WithTimeout(context.Background(), serveTimeout)
	defer cancel()
	took, err := p.MeasureFailover(ctx, "data.txt", "replicated before the failure\n")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("C served by B %v after A's death", took.Round(time.Millisecond))
	// A's dead namespace keeps its interface's addresses (a real power
	// loss clears them); its cable is out, so only B's copy answers.
	if h, err := p.Holders(); err != nil || !slices.Contains(h, p.Slave.Name) {
		t.Fatalf("floating address held by %v (err %v), want %s among them", h, err, p.Slave.Name)
	}
	b := waitState(t, p.Slave, config.RoleMaster, e0+1, 10*time.Second)

	// B serves and writes alone; then A returns.
	writeFile(t, p.Slave, "after.txt", "written on B while A was down\n")
	markB := p.Slave.Log.Len()
	if err := p.Master.Start(); err != nil { // drops the stale address first
		t.Fatal(err)
	}
	if err := p.Master.Host.LinkUp(); err != nil {
		t.Fatal(err)
	}
	a := waitState(t, p.Master, config.RoleSlave, b.Epoch, serveTimeout)
	if a.Epoch != b.Epoch {
		t.Fatalf("A demoted at epoch %d, B is at %d", a.Epoch, b.Epoch)
	}
	waitFile(t, p.Master, "after.txt", "written on B while A was down\n", syncTimeout)
	waitFile(t, p.Master, "data.txt", "replicated before the failure\n", syncTimeout)
	if n := countTransfers(p.Slave, markB, "full"); n != 0 {
		t.Fatalf("B sent %d full streams to the returning A; want incrementals only", n)
	}
	if n := countTransfers(p.Slave, markB, "incremental"); n == 0 {
		t.Fatal("B sent no incremental to the returning A")
	}
	if h, err := p.Holders(); err != nil || !slices.Equal(h, []string{p.Slave.Name}) {
		t.Fatalf("floating address held by %v (err %v), want only %s", h, err, p.Slave.Name)
	}
	// Nothing A held is gone: a stash, if made, holds A's files.
	for _, s := range stashes(t, p.Master) {
		b, err := os.ReadFile(filepath.Join(mountpoint(t, s), "data.txt"))
		if err != nil || string(b) != "replicated before the failure\n" {
			t.Fatalf("stash %s lacks data.txt (%v, %q)", s, err, b)
		}
		t.Logf("A's head kept as %s", s)
	}
}

// TestPartitionedMasterWrites: A's cable is cut while A runs (no witness:
// A cannot tell and goes on serving locally) and A writes; B takes over
// and writes too. When the cable is back, A hears B's higher epoch and
// demotes; both wrote after the common snapshot, the newer epoch (B) wins,
// A's writes are in a stash, and B's replicate to A incrementally.
func TestPartitionedMasterWrites(t *testing.T) {
	p := newPair(t, false)
	b, _ := cutMasterWhileItWrites(t, p)
	writeFile(t, p.Slave, "b-only.txt", "acknowledged by B alone\n")
	waitRecordMsg(t, p.Slave, 0, "snapshot taken", 30*time.Second)

	markB := p.Slave.Log.Len()
	if err := p.Master.Host.LinkUp(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p.Master, config.RoleSlave, b.Epoch, serveTimeout)
	waitFile(t, p.Master, "b-only.txt", "acknowledged by B alone\n", syncTimeout)
	if _, err := os.Stat(filepath.Join(p.Master.Mountpoint, "a-only.txt")); !os.IsNotExist(err) {
		t.Fatalf("A's replica still has a-only.txt (err %v): it should follow B", err)
	}
	list := stashes(t, p.Master)
	if len(list) == 0 {
		t.Fatal("A stashed nothing")
	}
	found := false
	for _, s := range list {
		if b, err := os.ReadFile(filepath.Join(mountpoint(t, s), "a-only.txt")); err == nil && string(b) == "acknowledged by A alone\n" {
			found = true
			t.Logf("A's divergent writes are in %s", s)
		}
	}
	if !found {
		t.Fatalf("no stash of %v holds a-only.txt", list)
	}
	if n := countTransfers(p.Slave, markB, "full"); n != 0 {
		t.Fatalf("B sent %d full streams after the heal; want incrementals only", n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), serveTimeout)
	defer cancel()
	if _, err := p.WaitServed(ctx, "b-only.txt", "acknowledged by B alone\n"); err != nil {
		t.Fatal(err)
	}
}

// TestLinkCutFences: with a witness, A's cable is cut while A runs: A loses
// both B and the witness and fences itself (drops the address, stops the
// service) before B's timeout; B, which still reaches the witness, takes
// over. At no sampled moment do both hosts hold the floating address.
func TestLinkCutFences(t *testing.T) {
	p := newPair(t, true)
	startServing(t, p)
	e0 := state(t, p.Master).Epoch
	writeFile(t, p.Master, "data.txt", "before the cut\n")
	waitFile(t, p.Slave, "data.txt", "before the cut\n", syncTimeout)

	watchCtx, stopWatch := context.WithCancel(context.Background())
	type watch struct {
		double  []string
		samples int
		err     error
	}
	done := make(chan watch, 1)
	go func() {
		d, n, err := p.WatchHolders(watchCtx, 2*time.Millisecond)
		done <- watch{d, n, err}
	}()
	mark := p.Master.Log.Len()
	if err := p.Master.Host.LinkDown(); err != nil {
		t.Fatal(err)
	}
	waitDecision(t, p.Master, mark, "fencing", 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), serveTimeout)
	defer cancel()
	if _, err := p.WaitServed(ctx, "data.txt", "before the cut\n"); err != nil {
		t.Fatal(err)
	}
	waitState(t, p.Slave, config.RoleMaster, e0+1, 10*time.Second)
	time.Sleep(time.Second)
	stopWatch()
	w := <-done
	if w.err != nil {
		t.Fatal(w.err)
	}
	if w.double != nil {
		t.Fatalf("both hosts held the floating address at once: %v", w.double)
	}
	t.Logf("%d samples of the address holders, never two", w.samples)

	if err := p.Master.Host.LinkUp(); err != nil {
		t.Fatal(err)
	}
	waitState(t, p.Master, config.RoleSlave, e0+1, serveTimeout)
	if h, err := p.Holders(); err != nil || !slices.Equal(h, []string{p.Slave.Name}) {
		t.Fatalf("floating address held by %v (err %v), want only %s", h, err, p.Slave.Name)
	}
}

// TestAgentKilled: SIGKILL of A's agent alone. The service on A still
// answers and A's host is reachable, so B reports the lost agent and does
// not take over; the restarted agent resumes as master at the same epoch.
func TestAgentKilled(t *testing.T) {
	p := newPair(t, false)
	startServing(t, p)
	e0 := state(t, p.Master).Epoch
	markB := p.Slave.Log.Len()
	if err := p.Master.Kill(); err != nil {
		t.Fatal(err)
	}
	waitDecision(t, p.Slave, markB, "peer agent lost", 30*time.Second)
	// Well past the timeout: B must still be slave at the same epoch, and C is
	// still served by A's service.
	time.Sleep(3 * time.Second)
	if st := state(t, p.Slave); st.Role != config.RoleSlave || st.Epoch != e0 {
		t.Fatalf("B is %s at epoch %d after A's agent died; want slave at %d", st.Role, st.Epoch, e0)
	}
	if body, err := p.Get(failpair.CheckFile, time.Second); err != nil || body != "ok\n" {
		t.Fatalf("C not served while only A's agent is dead: %q, %v", body, err)
	}
	markA := p.Master.Log.Len()
	if err := p.Master.Start(); err != nil {
		t.Fatal(err)
	}
	waitDecision(t, p.Master, markA, "heard as slave", 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), serveTimeout)
	defer cancel()
	if _, err := p.WaitServed(ctx, failpair.CheckFile, "ok\n"); err != nil {
		t.Fatal(err)
	}
	if st := state(t, p.Master); st.Role != config.RoleMaster || st.Epoch != e0 {
		t.Fatalf("A resumed as %s at epoch %d; want master at %d", st.Role, st.Epoch, e0)
	}
	writeFile(t, p.Master, "later.txt", "after the restart\n")
	waitFile(t, p.Slave, "later.txt", "after the restart\n", syncTimeout)
}
