package failover

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/failpair"
)

// TestPeerAwayMasterServesAlone: B's host dies while A is master, with a
// witness configured. A reaches the witness, so it neither fences nor
// changes epoch: it serves alone (C is answered by A all along), takes
// snapshots and prunes them, and keeps its replication base (the newest
// snapshot B acknowledged). B comes back: it stays slave at A's epoch, and
// A catches it up with an incremental from that base, no full stream.
func TestPeerAwayMasterServesAlone(t *testing.T) {
	p := newPairWith(t, true, map[string]map[string]string{
		"notify":   timerNotify["notify"],
		"snapshot": {"retention": "5s:all"}, // prunes within the away period
	})
	startServing(t, p)
	e0 := state(t, p.Master).Epoch
	writeFile(t, p.Master, "before.txt", "replicated before B went away\n")
	waitFile(t, p.Slave, "before.txt", "replicated before B went away\n", syncTimeout)

	// B acknowledged something (not only received it): A holds a base.
	waitRecordMsg(t, p.Master, 0, "replicated", syncTimeout)
	mark := p.Master.Log.Len()
	if err := failpair.KillHost(p.Slave); err != nil {
		t.Fatal(err)
	}
	waitDecision(t, p.Master, mark, "is dead: serving alone", serveTimeout)
	// The base is the newest snapshot B acknowledged before it died (or
	// one B received while A missed the ack: either was taken before).
	var base string
	before := map[string]bool{}
	for _, r := range p.Master.Log.Records(0) {
		switch r.Msg() {
		case "replicated":
			base = r.Str("target")
		case "snapshot taken":
			before[r.Str("snapshot")] = true
		}
	}
	for i := range 6 {
		name, content := fmt.Sprintf("alone-%d.txt", i), fmt.Sprintf("written while B was away (%d)\n", i)
		writeFile(t, p.Master, name, content)
		if body, err := p.Get(name, 2*time.Second); err != nil || body != content {
			t.Fatalf("C while B is away: %s: %q, %v; want A's answer", name, body, err)
		}
		time.Sleep(time.Second)
	}
	waitRecordMsg(t, p.Master, mark, "pruned snapshots", serveTimeout)
	if st := state(t, p.Master); st.Role != config.RoleMaster || st.Epoch != e0 {
		t.Fatalf("A is %s at epoch %d while B is away; want master at %d", st.Role, st.Epoch, e0)
	}
	if n := p.Master.Log.Count(mark, func(r agentpair.Record) bool {
		return r.Msg() == "failover decision" && strings.Contains(r.Str("note"), "fencing")
	}); n != 0 {
		t.Fatalf("A fenced itself %d times while it reached the witness", n)
	}
	if h, err := p.Holders(); err != nil || !slices.Contains(h, p.Master.Name) {
		t.Fatalf("floating address held by %v (err %v), want %s", h, err, p.Master.Name)
	}
	if out, err := exec.Command("zfs", "list", "-H", "-o", "name", "-t", "snapshot", p.Master.Dataset+"@"+base).CombinedOutput(); err != nil {
		t.Fatalf("A pruned its replication base %s while B was away: %v: %s", base, err, out)
	}

	markA := p.Master.Log.Len()
	if err := p.Slave.Host.LinkUp(); err != nil {
		t.Fatal(err)
	}
	if err := p.Slave.Start(); err != nil {
		t.Fatal(err)
	}
	waitFile(t, p.Slave, "alone-5.txt", "written while B was away (5)\n", syncTimeout)
	for i := range 5 {
		waitFile(t, p.Slave, fmt.Sprintf("alone-%d.txt", i), fmt.Sprintf("written while B was away (%d)\n", i), syncTimeout)
	}
	if n := countTransfers(p.Master, markA, "full"); n != 0 {
		t.Fatalf("A sent %d full streams to the returning B; want incrementals only", n)
	}
	first := agentpair.Record(nil)
	for _, r := range p.Master.Log.Records(markA) {
		if r.Msg() == "transfer started" {
			first = r
			break
		}
	}
	_, from, _ := strings.Cut(first.Str("base"), "@")
	if first == nil || first.Str("kind") != "incremental" || !before[from] {
		t.Fatalf("A's first transfer after B's return: %v; want an incremental from a base taken before B went away (%s)", first, base)
	}
	t.Logf("B caught up from %s to %s incrementally", first.Str("base"), first.Str("target"))
	if st := state(t, p.Slave); st.Role != config.RoleSlave || st.Epoch != e0 {
		t.Fatalf("B returned as %s at epoch %d; want slave at %d", st.Role, st.Epoch, e0)
	}
	if h, err := p.Holders(); err != nil || !slices.Equal(h, []string{p.Master.Name}) {
		t.Fatalf("floating address held by %v (err %v), want only %s", h, err, p.Master.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), serveTimeout)
	defer cancel()
	if _, err := p.WaitServed(ctx, "before.txt", "replicated before B went away\n"); err != nil {
		t.Fatal(err)
	}
}
