package agent

import (
	"testing"
	"time"

	"github.com/flockerha/flocker/snapshot"
)

func snaps(ds string, list ...any) []snapshot.Snapshot {
	var out []snapshot.Snapshot
	for i := 0; i < len(list); i += 2 {
		out = append(out, snapshot.Snapshot{Name: ds + "@" + list[i].(string), GUID: uint64(list[i+1].(int)), CreateTXG: uint64(i + 1)})
	}
	return out
}

// The divergence a returning master meets: both sides wrote after the
// common snapshot flocker-1-2. Each side's epoch is the one its newest
// snapshot was taken in, so the demoted side (whose current epoch already
// equals the winner's) still loses under newer-epoch, and wins under
// most-changes when it wrote more.
func TestPlanDivergenceEpochsFromNames(t *testing.T) {
	a := snaps("pa/app", "flocker-1-1", 11, "flocker-1-2", 12, "flocker-1-3", 13, "flocker-1-4", 14, "flocker-1-5", 15)
	b := snaps("beta:app", "flocker-1-1", 11, "flocker-1-2", 12, "flocker-2-1", 21)
	if !divergedFrom(a, b) || !divergedFrom(b, a) {
		t.Fatal("both hold snapshots the other lacks: diverged from either side")
	}
	cfgA := datasetConfig{node: "alpha", peer: "beta", name: "app"}
	res := planDivergence(cfgA, a, b, false)
	if res.Conflict != nil || res.Winner != snapshot.SidePeer || res.DecidedBy != snapshot.DecidedByEpoch {
		t.Fatalf("newer-epoch from A's side: winner %v by %v (conflict %v), want peer by epoch", res.Winner, res.DecidedBy, res.Conflict)
	}
	if res.RollbackTo != "pa/app@flocker-1-2" {
		t.Fatalf("A rolls back to %q, want its base pa/app@flocker-1-2", res.RollbackTo)
	}
	d := divergence{dataset: "app", localWins: false, res: res}
	if e := d.loserEpoch(); e != 1 {
		t.Fatalf("the stash holds epoch %d's writes, want 1", e)
	}
	// The master's side reaches the mirrored decision.
	cfgB := datasetConfig{node: "beta", peer: "alpha", name: "app"}
	if res := planDivergence(cfgB, b, a, true); res.Winner != snapshot.SideLocal {
		t.Fatalf("from B's side the winner is %v, want local", res.Winner)
	}
	cfgA.policy, cfgB.policy = snapshot.DivergeMostChanges, snapshot.DivergeMostChanges
	if res := planDivergence(cfgA, a, b, false); res.Winner != snapshot.SideLocal || res.DecidedBy != snapshot.DecidedByChanges {
		t.Fatalf("most-changes from A's side: winner %v by %v, want local by changes", res.Winner, res.DecidedBy)
	}
	if res := planDivergence(cfgB, b, a, true); res.Winner != snapshot.SidePeer || res.RollbackTo != "beta:app@flocker-1-2" {
		t.Fatalf("most-changes from B's side: winner %v, rollback %q; want peer, B's base", res.Winner, res.RollbackTo)
	}
}

// A slave that is merely behind, or a master that is merely ahead, is not
// a divergence.
func TestDivergedFromOrdinaryLag(t *testing.T) {
	master := snaps("pa/app", "flocker-1-1", 11, "flocker-1-2", 12, "flocker-1-3", 13)
	slave := snaps("pb/app", "flocker-1-1", 11)
	if divergedFrom(slave, master) {
		t.Fatal("a slave behind the master is not diverged")
	}
	if divergedFrom(nil, master) || divergedFrom(slave, nil) {
		t.Fatal("an empty side is not diverged")
	}
}

func TestStashNames(t *testing.T) {
	at := time.Date(2026, 11, 21, 15, 4, 5, 0, time.UTC)
	name := stashName("tank/db/main", "db-main", 7, at)
	if name != "tank/flocker-stash/db-main-7-20261121T150405Z" {
		t.Fatalf("stash name %q", name)
	}
	s := parseStash(name)
	if s.Dataset != "db-main" || s.Epoch != 7 || !s.Created.Equal(at) {
		t.Fatalf("parsed %+v", s)
	}
}

// Equal epochs (an operator's snapshot on the replica) go to the master,
// whatever the change counts say.
func TestPlanDivergenceTieGoesToMaster(t *testing.T) {
	master := snaps("pa/app", "flocker-1-1", 11, "flocker-1-2", 12)
	slave := snaps("pb/app", "flocker-1-1", 11, "operator-snap", 99, "flocker-1-9", 98)
	for _, policy := range []snapshot.DivergencePolicy{snapshot.DivergeNewerEpoch, snapshot.DivergeMostChanges} {
		cfg := datasetConfig{node: "alpha", peer: "beta", policy: policy}
		if res := planDivergence(cfg, master, slave, true); res.Winner != snapshot.SideLocal {
			t.Errorf("%v, master's side: winner %v by %v, want local", policy, res.Winner, res.DecidedBy)
		}
		cfg = datasetConfig{node: "beta", peer: "alpha", policy: policy}
		if res := planDivergence(cfg, slave, master, false); res.Winner != snapshot.SidePeer {
			t.Errorf("%v, slave's side: winner %v by %v, want peer", policy, res.Winner, res.DecidedBy)
		}
	}
}
