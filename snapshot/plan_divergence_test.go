package snapshot

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

func TestParseDivergencePolicy(t *testing.T) {
	for _, p := range []DivergencePolicy{DivergeNewerEpoch, DivergeMostChanges} {
		got, err := ParseDivergencePolicy(p.String())
		if err != nil || got != p {
			t.Fatalf("ParseDivergencePolicy(%q) = %v, %v", p.String(), got, err)
		}
	}
	var zero DivergencePolicy
	if zero != DivergeNewerEpoch {
		t.Fatal("the zero policy must be the default, newer-epoch")
	}
	for _, bad := range []string{"", "newest-epoch", "Most-Changes", "most-changes "} {
		_, err := ParseDivergencePolicy(bad)
		if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("%q", bad)) || !strings.Contains(err.Error(), "newer-epoch or most-changes") {
			t.Errorf("ParseDivergencePolicy(%q) = %v", bad, err)
		}
	}
}

// describeResolution prints what a caller acts on, so each table row states
// the whole decision in one line.
func describeResolution(r Resolution) string {
	if r.Conflict != nil {
		return "conflict " + r.Conflict.Kind.String()
	}
	s := fmt.Sprintf("winner=%s by=%q base=%s/%s", r.Winner, r.DecidedBy, r.Base.Local, r.Base.Peer.Name)
	if r.Diverged {
		s += " diverged"
	}
	if r.Stash.Empty() {
		return s + " stash=none"
	}
	s += " stash=" + snapshotNames(r.Stash.Snapshots)
	if r.Stash.Head {
		s += "+head"
	}
	return s + " rollback=" + r.RollbackTo
}

func TestPlanDivergence(t *testing.T) {
	// Host alpha (tank/app) and host beta (bk/app) share history GUIDs 1 and 2.
	a1, a2 := snap("tank/app@flocker-1-1", 1, 10), snap("tank/app@flocker-1-2", 2, 20)
	b1, b2 := snap("bk/app@flocker-1-1", 1, 500), snap("bk/app@flocker-1-2", 2, 501)
	aNew := []Snapshot{snap("tank/app@flocker-1-3", 31, 30), snap("tank/app@flocker-1-4", 32, 40)}
	bNew := []Snapshot{snap("bk/app@flocker-2-1", 41, 502)}
	alpha := func(epoch uint64, master bool, head HeadState, extra ...Snapshot) DivergenceSide {
		return DivergenceSide{Node: "alpha", Epoch: epoch, Master: master, Head: head, Snapshots: append([]Snapshot{a1, a2}, extra...)}
	}
	beta := func(epoch uint64, master bool, head HeadState, extra ...Snapshot) DivergenceSide {
		return DivergenceSide{Node: "beta", Epoch: epoch, Master: master, Head: head, Snapshots: append([]Snapshot{b1, b2}, extra...)}
	}

	for _, tc := range []struct {
		name        string
		local, peer DivergenceSide
		policy      DivergencePolicy
		want        string
	}{
		{"returning master loses to the newer epoch, stashes everything after the base",
			alpha(7, true, HeadUnknown, aNew...), beta(8, true, HeadChanged, bNew...), DivergeNewerEpoch,
			`winner=peer by="newer epoch" base=tank/app@flocker-1-2/bk/app@flocker-1-2 diverged stash=[tank/app@flocker-1-3 tank/app@flocker-1-4]+head rollback=tank/app@flocker-1-2`},
		{"the same seen from the new master",
			beta(8, true, HeadChanged, bNew...), alpha(7, true, HeadUnknown, aNew...), DivergeNewerEpoch,
			`winner=local by="newer epoch" base=bk/app@flocker-1-2/tank/app@flocker-1-2 diverged stash=[tank/app@flocker-1-3 tank/app@flocker-1-4]+head rollback=tank/app@flocker-1-2`},
		{"zero changes loses even with the newer epoch",
			alpha(9, true, HeadClean), beta(8, true, HeadChanged, bNew...), DivergeNewerEpoch,
			`winner=peer by="zero changes" base=tank/app@flocker-1-2/bk/app@flocker-1-2 stash=none`},
		{"zero changes loses under most-changes too",
			alpha(9, true, HeadChanged), beta(8, false, HeadClean), DivergeMostChanges,
			`winner=local by="zero changes" base=tank/app@flocker-1-2/bk/app@flocker-1-2 stash=none`},
		{"an unknown head is not zero changes: it is stashed",
			alpha(7, false, HeadUnknown), beta(8, true, HeadClean, bNew...), DivergeNewerEpoch,
			`winner=peer by="newer epoch" base=tank/app@flocker-1-2/bk/app@flocker-1-2 diverged stash=none+head rollback=tank/app@flocker-1-2`},
		{"loser with snapshots but a clean head stashes only its snapshots",
			alpha(7, true, HeadClean, aNew...), beta(8, true, HeadChanged, bNew...), DivergeNewerEpoch,
			`winner=peer by="newer epoch" base=tank/app@flocker-1-2/bk/app@flocker-1-2 diverged stash=[tank/app@flocker-1-3 tank/app@flocker-1-4] rollback=tank/app@flocker-1-2`},
		{"most-changes: more snapshots beat the newer epoch",
			alpha(7, true, HeadClean, aNew...), beta(8, true, HeadClean, bNew...), DivergeMostChanges,
			`winner=local by="most changes" base=tank/app@flocker-1-2/bk/app@flocker-1-2 diverged stash=[bk/app@flocker-2-1] rollback=bk/app@flocker-1-2`},
		{"most-changes: a changed head counts as one",
			alpha(7, true, HeadClean, aNew[0]), beta(8, true, HeadChanged, bNew...), DivergeMostChanges,
			`winner=peer by="most changes" base=tank/app@flocker-1-2/bk/app@flocker-1-2 diverged stash=[tank/app@flocker-1-3] rollback=tank/app@flocker-1-2`},
		{"most-changes tie: the newer epoch decides",
			alpha(7, true, HeadChanged, aNew[0]), beta(8, true, HeadChanged, bNew...), DivergeMostChanges,
			`winner=peer by="newer epoch" base=tank/app@flocker-1-2/bk/app@flocker-1-2 diverged stash=[tank/app@flocker-1-3]+head rollback=tank/app@flocker-1-2`},
		{"newer-epoch tie: more changes decide",
			alpha(8, true, HeadClean, aNew...), beta(8, true, HeadClean, bNew...), DivergeNewerEpoch,
			`winner=local by="most changes" base=tank/app@flocker-1-2/bk/app@flocker-1-2 diverged stash=[bk/app@flocker-2-1] rollback=bk/app@flocker-1-2`},
		{"then the master claim",
			alpha(8, false, HeadClean, aNew[0]), beta(8, true, HeadClean, bNew...), DivergeNewerEpoch,
			`winner=peer by="master claim" base=tank/app@flocker-1-2/bk/app@flocker-1-2 diverged stash=[tank/app@flocker-1-3] rollback=tank/app@flocker-1-2`},
		{"then the smaller node name",
			alpha(8, true, HeadClean, aNew[0]), beta(8, true, HeadClean, bNew...), DivergeMostChanges,
			`winner=local by="node name" base=tank/app@flocker-1-2/bk/app@flocker-1-2 diverged stash=[bk/app@flocker-2-1] rollback=bk/app@flocker-1-2`},
		{"then the larger GUID after the base (same node name: misconfigured)",
			DivergenceSide{Node: "x", Epoch: 8, Snapshots: []Snapshot{a1, a2, aNew[0]}, Head: HeadClean},
			DivergenceSide{Node: "x", Epoch: 8, Snapshots: []Snapshot{b1, b2, bNew[0]}, Head: HeadClean}, DivergeNewerEpoch,
			`winner=peer by="snapshot guid" base=tank/app@flocker-1-2/bk/app@flocker-1-2 diverged stash=[tank/app@flocker-1-3] rollback=tank/app@flocker-1-2`},
		{"every rule equal: the operator decides",
			DivergenceSide{Node: "x", Epoch: 8, Master: true, Snapshots: []Snapshot{a1, a2}, Head: HeadChanged},
			DivergenceSide{Node: "x", Epoch: 8, Master: true, Snapshots: []Snapshot{b1, b2}, Head: HeadUnknown}, DivergeNewerEpoch,
			`conflict undecided`},
		{"neither side changed: the epoch picks the master, nothing to stash",
			alpha(7, false, HeadClean), beta(8, true, HeadClean), DivergeNewerEpoch,
			`winner=peer by="newer epoch" base=tank/app@flocker-1-2/bk/app@flocker-1-2 stash=none`},
		{"the base is the newest common snapshot, not the newest of either side",
			DivergenceSide{Node: "alpha", Epoch: 7, Snapshots: []Snapshot{a2, a1, aNew[1], aNew[0]}, Head: HeadClean},
			DivergenceSide{Node: "beta", Epoch: 8, Snapshots: []Snapshot{b1, bNew[0]}, Head: HeadClean}, DivergeNewerEpoch,
			`winner=peer by="newer epoch" base=tank/app@flocker-1-1/bk/app@flocker-1-1 diverged stash=[tank/app@flocker-1-2 tank/app@flocker-1-3 tank/app@flocker-1-4] rollback=tank/app@flocker-1-1`},
		{"renamed snapshots match by GUID",
			alpha(7, true, HeadClean, aNew...),
			DivergenceSide{Node: "beta", Epoch: 8, Master: true, Head: HeadClean,
				Snapshots: []Snapshot{snap("other/ds@old", 1, 3), snap("other/ds@renamed", 2, 4), snap("other/ds@mine", 99, 5)}}, DivergeNewerEpoch,
			`winner=peer by="newer epoch" base=tank/app@flocker-1-2/other/ds@renamed diverged stash=[tank/app@flocker-1-3 tank/app@flocker-1-4] rollback=tank/app@flocker-1-2`},
		{"no common base: the operator decides",
			alpha(7, true, HeadChanged), DivergenceSide{Node: "beta", Epoch: 8, Snapshots: []Snapshot{snap("bk/app@x", 77, 1)}}, DivergeNewerEpoch,
			`conflict no common base`},
		{"no snapshots on one side: the operator decides",
			alpha(7, true, HeadClean), DivergenceSide{Node: "beta", Epoch: 8, Head: HeadClean}, DivergeNewerEpoch,
			`conflict no common base`},
		{"GUID 0 is never a common base",
			DivergenceSide{Node: "alpha", Snapshots: []Snapshot{snap("tank/app@x", 0, 1)}},
			DivergenceSide{Node: "beta", Snapshots: []Snapshot{snap("bk/app@x", 0, 1)}}, DivergeNewerEpoch,
			`conflict no common base`},
		{"histories that cross have no single base",
			DivergenceSide{Node: "alpha", Epoch: 7, Snapshots: []Snapshot{a1, a2}, Head: HeadClean},
			DivergenceSide{Node: "beta", Epoch: 8, Snapshots: []Snapshot{snap("bk/app@two", 2, 1), snap("bk/app@one", 1, 2)}, Head: HeadClean}, DivergeNewerEpoch,
			`conflict ambiguous common base`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := describeResolution(PlanDivergence(tc.local, tc.peer, tc.policy)); got != tc.want {
				t.Fatalf("\ngot  %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestDivergenceConflictIsAnError(t *testing.T) {
	r := PlanDivergence(
		DivergenceSide{Node: "alpha", Snapshots: []Snapshot{snap("tank/app@a", 1, 1)}},
		DivergenceSide{Node: "beta", Snapshots: []Snapshot{snap("bk/app@b", 2, 1)}}, DivergeNewerEpoch)
	var err error = r.Conflict
	var c *DivergenceConflict
	if !errors.As(err, &c) || c.Kind != DivergenceNoCommonBase || r.Winner != SideNone || r.Base != nil {
		t.Fatalf("want a no-common-base conflict and no winner, got %+v", r)
	}
	for _, want := range []string{"needs the operator", "tank/app@a", "bk/app@b"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not name %s", err, want)
		}
	}
}

// TestPlanDivergenceResumesIncrementally follows the decision through: after
// the loser stashes and rolls back to the base, the replication planner run
// by the winner plans an incremental from that base, not a full resend.
func TestPlanDivergenceResumesIncrementally(t *testing.T) {
	base := snap("tank/app@flocker-7-3", 3, 30)
	local := DivergenceSide{Node: "alpha", Epoch: 8, Master: true, Head: HeadChanged, Snapshots: []Snapshot{
		snap("tank/app@flocker-7-1", 1, 10), base, snap("tank/app@flocker-8-1", 50, 60)}}
	peer := DivergenceSide{Node: "beta", Epoch: 7, Head: HeadUnknown, Snapshots: []Snapshot{
		snap("bk/app@flocker-7-1", 1, 100), snap("bk/app@flocker-7-3", 3, 101), snap("bk/app@flocker-7-4", 60, 102)}}
	r := PlanDivergence(local, peer, DivergeNewerEpoch)
	if r.Winner != SideLocal || r.RollbackTo != "bk/app@flocker-7-3" {
		t.Fatalf("got %s", describeResolution(r))
	}
	// The loser after stash and rollback: snapshots up to the base.
	var after []Snapshot
	for _, s := range peer.Snapshots {
		if s.CreateTXG <= r.Base.Peer.CreateTXG {
			after = append(after, s)
		}
	}
	p := PlanReplication(local.Snapshots, after)
	if p.Action != ActIncremental || p.Base.GUID != r.Base.GUID || p.Target.Name != "tank/app@flocker-8-1" {
		t.Fatalf("after resolution: %s, want incremental from guid %d", describePlan(p), r.Base.GUID)
	}
	// Before the rollback the same lists are a divergence: the resolution is
	// what unblocks replication.
	if p := PlanReplication(local.Snapshots, peer.Snapshots); p.Action != ActConflict || p.Conflict.Kind != ConflictDiverged {
		t.Fatalf("before resolution: %s", describePlan(p))
	}
}

// TestPlanDivergenceSymmetric: both hosts run the planner with the inputs
// swapped; over random inputs they must name the same winner (mirrored), the
// same rule, the same stash and the same base, or the same conflict.
// Otherwise two hosts could each decide to keep their own data, or both
// stash theirs.
func TestPlanDivergenceSymmetric(t *testing.T) {
	decided := map[DecidedBy]int{}
	for seed := uint64(0); seed < 5000; seed++ {
		rng := rand.New(rand.NewPCG(seed, 99))
		a, b := randomDivergenceSides(rng)
		policy := DivergencePolicy(rng.IntN(2))
		ab, ba := PlanDivergence(a, b, policy), PlanDivergence(b, a, policy)
		ctx := fmt.Sprintf("seed %d (%s):\n a->b %s\n b->a %s", seed, policy, describeResolution(ab), describeResolution(ba))
		if (ab.Conflict == nil) != (ba.Conflict == nil) {
			t.Fatalf("%s: only one side sees a conflict", ctx)
		}
		if ab.Conflict != nil {
			if ab.Conflict.Kind != ba.Conflict.Kind {
				t.Fatalf("%s: conflict kinds differ", ctx)
			}
			continue
		}
		mirror := map[Side]Side{SideLocal: SidePeer, SidePeer: SideLocal}
		if ab.Winner == SideNone || ba.Winner != mirror[ab.Winner] || ab.DecidedBy != ba.DecidedBy {
			t.Fatalf("%s: winners do not mirror", ctx)
		}
		if ab.Base.GUID != ba.Base.GUID || ab.Base.Local != ba.Base.Peer.Name || ab.RollbackTo != ba.RollbackTo ||
			ab.Diverged != ba.Diverged || snapshotNames(ab.Stash.Snapshots) != snapshotNames(ba.Stash.Snapshots) || ab.Stash.Head != ba.Stash.Head {
			t.Fatalf("%s: base or stash differ", ctx)
		}
		// The stash holds exactly the loser's snapshots after the base: nothing
		// it acknowledged is left out.
		loser, loserChanges := b, ab.Peer
		if ab.Winner == SidePeer {
			loser, loserChanges = a, ab.Local
		}
		if len(ab.Stash.Snapshots) != len(loserChanges.AfterBase) || ab.Stash.Head != (loser.Head != HeadClean) {
			t.Fatalf("%s: stash is not the loser's changes", ctx)
		}
		if ab.DecidedBy == DecidedByZeroChanges && (!loserChanges.None() || ab.Diverged) {
			t.Fatalf("%s: zero-changes rule used although the loser changed", ctx)
		}
		if (!ab.Local.None() && !ab.Peer.None()) != ab.Diverged {
			t.Fatalf("%s: diverged flag wrong", ctx)
		}
		decided[ab.DecidedBy]++
	}
	for _, by := range []DecidedBy{DecidedByZeroChanges, DecidedByEpoch, DecidedByChanges, DecidedByMasterClaim, DecidedByNodeName, DecidedByGUID} {
		if decided[by] == 0 {
			t.Errorf("no random input was decided by %q: the generator misses a rule", by)
		}
	}
}

// randomDivergenceSides builds two hosts with a shared history (each keeping a
// random part of it) and random own tails, epochs, claims, heads and names
// drawn from small sets so that ties happen often.
func randomDivergenceSides(rng *rand.Rand) (a, b DivergenceSide) {
	heads := []HeadState{HeadUnknown, HeadClean, HeadChanged}
	names := []string{"alpha", "beta", "alpha"}
	a = DivergenceSide{Node: names[rng.IntN(3)], Epoch: uint64(rng.IntN(3)), Master: rng.IntN(2) == 0, Head: heads[rng.IntN(3)]}
	b = DivergenceSide{Node: names[rng.IntN(3)], Epoch: uint64(rng.IntN(3)), Master: rng.IntN(2) == 0, Head: heads[rng.IntN(3)]}
	var atxg, btxg uint64 = 10, 5000
	for i := range rng.IntN(4) {
		atxg += 1 + rng.Uint64N(3)
		btxg += 1 + rng.Uint64N(3)
		if rng.IntN(4) > 0 {
			a.Snapshots = append(a.Snapshots, snap(fmt.Sprintf("tank/app@h%d", i), uint64(i+1), atxg))
		}
		if rng.IntN(4) > 0 {
			b.Snapshots = append(b.Snapshots, snap(fmt.Sprintf("bk/app@h%d", i), uint64(i+1), btxg))
		}
	}
	for i := range rng.IntN(3) {
		atxg++
		a.Snapshots = append(a.Snapshots, snap(fmt.Sprintf("tank/app@a%d", i), 1000+uint64(i)+10*rng.Uint64N(50), atxg))
	}
	for i := range rng.IntN(3) {
		btxg++
		b.Snapshots = append(b.Snapshots, snap(fmt.Sprintf("bk/app@b%d", i), 1003+uint64(i)+10*rng.Uint64N(50), btxg))
	}
	rng.Shuffle(len(a.Snapshots), func(i, j int) { a.Snapshots[i], a.Snapshots[j] = a.Snapshots[j], a.Snapshots[i] })
	return a, b
}
