package snapshot

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// snap builds a snapshot; the planners under test only look at name, GUID and txg.
func snap(name string, guid, txg uint64) Snapshot {
	return Snapshot{Name: name, GUID: guid, CreateTXG: txg}
}

func bookmark(name string, guid, txg uint64) Bookmark {
	return Bookmark{Name: name, GUID: guid, CreateTXG: txg}
}

// describePlan prints every field of a plan that a caller acts on, so a table
// row states the whole expected decision in one line.
func describePlan(p Plan) string {
	var b strings.Builder
	b.WriteString(p.Action.String())
	if p.Base != nil {
		b.WriteString(" " + describeBase(p.Base))
	}
	if p.Target.Name != "" {
		fmt.Fprintf(&b, " target=%s", p.Target.Name)
	}
	if len(p.Between) > 0 {
		fmt.Fprintf(&b, " between=%s", snapshotNames(p.Between))
	}
	if c := p.Conflict; c != nil {
		fmt.Fprintf(&b, " kind=%q", c.Kind)
		if c.Base != nil {
			b.WriteString(" " + describeBase(c.Base))
		}
		fmt.Fprintf(&b, " peer-after=%s local-after=%s", snapshotNames(c.PeerAfterBase), snapshotNames(c.LocalAfterBase))
		if c.PeerAhead() {
			b.WriteString(" peer-ahead")
		}
	}
	return b.String()
}

func describeBase(b *Base) string {
	s := fmt.Sprintf("base=%s/%d", b.Local, b.GUID)
	if b.Bookmark {
		s += "(bookmark)"
	}
	return s + " peer-base=" + b.Peer.Name
}

func TestPlanReplication(t *testing.T) {
	// One history, GUIDs 1..5; the peer received some of it into another
	// dataset path (backup/app) with its own, unrelated txgs.
	a, b, c, d := snap("tank/app@flocker-1-1", 1, 10), snap("tank/app@flocker-1-2", 2, 20),
		snap("tank/app@flocker-1-3", 3, 30), snap("tank/app@flocker-1-4", 4, 40)
	pa, pb, pc, pd := snap("backup/app@flocker-1-1", 1, 900), snap("backup/app@flocker-1-2", 2, 905),
		snap("backup/app@flocker-1-3", 3, 911), snap("backup/app@flocker-1-4", 4, 950)

	for _, tc := range []struct {
		name        string
		local, peer []Snapshot
		bookmarks   []Bookmark
		want        string
	}{
		{"both empty", nil, nil, nil, "nothing"},
		{"first sync", []Snapshot{a, b}, nil, nil, "full target=tank/app@flocker-1-2"},
		{"first sync unsorted", []Snapshot{c, a, b}, nil, nil, "full target=tank/app@flocker-1-3"},
		{"identical lists", []Snapshot{a, b, c}, []Snapshot{pa, pb, pc}, nil,
			"nothing base=tank/app@flocker-1-3/3 peer-base=backup/app@flocker-1-3"},
		{"one behind", []Snapshot{a, b, c}, []Snapshot{pa, pb}, nil,
			"incremental base=tank/app@flocker-1-2/2 peer-base=backup/app@flocker-1-2 target=tank/app@flocker-1-3"},
		{"several behind, unsorted", []Snapshot{d, b, a, c}, []Snapshot{pa}, nil,
			"incremental base=tank/app@flocker-1-1/1 peer-base=backup/app@flocker-1-1 target=tank/app@flocker-1-4 between=[tank/app@flocker-1-2 tank/app@flocker-1-3]"},
		{"peer kept less history than us", []Snapshot{a, b, c}, []Snapshot{pb}, nil,
			"incremental base=tank/app@flocker-1-2/2 peer-base=backup/app@flocker-1-2 target=tank/app@flocker-1-3"},
		{"we pruned old ones the peer still has", []Snapshot{c, d}, []Snapshot{pa, pb, pc}, nil,
			"incremental base=tank/app@flocker-1-3/3 peer-base=backup/app@flocker-1-3 target=tank/app@flocker-1-4"},
		{"we have none, peer has some", nil, []Snapshot{pa}, nil,
			`conflict kind="no common snapshot" peer-after=[backup/app@flocker-1-1] local-after=none`},
		{"no common snapshot", []Snapshot{c, d}, []Snapshot{pa, pb}, nil,
			`conflict kind="no common snapshot" peer-after=[backup/app@flocker-1-1 backup/app@flocker-1-2] local-after=[tank/app@flocker-1-3 tank/app@flocker-1-4]`},
		{"peer ahead", []Snapshot{a, b}, []Snapshot{pa, pb, pc}, nil,
			`conflict kind="diverged" base=tank/app@flocker-1-2/2 peer-base=backup/app@flocker-1-2 peer-after=[backup/app@flocker-1-3] local-after=none peer-ahead`},
		{"diverged", []Snapshot{a, b, snap("tank/app@flocker-2-1", 77, 50)},
			[]Snapshot{pa, pb, snap("backup/app@flocker-1-3", 88, 990), snap("backup/app@hand", 89, 991)}, nil,
			`conflict kind="diverged" base=tank/app@flocker-1-2/2 peer-base=backup/app@flocker-1-2 peer-after=[backup/app@flocker-1-3 backup/app@hand] local-after=[tank/app@flocker-2-1]`},
		{"renamed on the peer: GUIDs match, names do not",
			[]Snapshot{a, b, c}, []Snapshot{snap("other/x@before-upgrade", 1, 5), snap("other/x@keep-me", 2, 6)}, nil,
			"incremental base=tank/app@flocker-1-2/2 peer-base=other/x@keep-me target=tank/app@flocker-1-3"},
		{"renamed locally", []Snapshot{snap("tank/app@renamed", 2, 20), c}, []Snapshot{pa, pb}, nil,
			"incremental base=tank/app@renamed/2 peer-base=backup/app@flocker-1-2 target=tank/app@flocker-1-3"},
		{"same name, other GUID is not common", []Snapshot{a, b}, []Snapshot{snap("backup/app@flocker-1-2", 99, 5)}, nil,
			`conflict kind="no common snapshot" peer-after=[backup/app@flocker-1-2] local-after=[tank/app@flocker-1-1 tank/app@flocker-1-2]`},
		{"unknown GUID 0 never matches", []Snapshot{snap("tank/app@x", 0, 1)}, []Snapshot{snap("backup/app@x", 0, 1)}, nil,
			`conflict kind="no common snapshot" peer-after=[backup/app@x] local-after=[tank/app@x]`},
		{"txgs compared only within a side", // the peer's txgs are below ours and would mis-order a merged sort
			[]Snapshot{snap("tank/app@s1", 1, 1000), snap("tank/app@s2", 2, 2000), snap("tank/app@s3", 3, 3000)},
			[]Snapshot{snap("backup/app@s1", 1, 7), snap("backup/app@s2", 2, 8)}, nil,
			"incremental base=tank/app@s2/2 peer-base=backup/app@s2 target=tank/app@s3"},

		// Bookmarks: the base snapshot was pruned here while the peer was away.
		{"incremental from a bookmark", []Snapshot{a, c, d}, []Snapshot{pa, pb},
			[]Bookmark{bookmark("tank/app#flocker-1-2", 2, 20)},
			"incremental base=tank/app#flocker-1-2/2(bookmark) peer-base=backup/app@flocker-1-2 target=tank/app@flocker-1-4 between=[tank/app@flocker-1-3]"},
		{"bookmark newer than every snapshot we still hold", []Snapshot{a}, []Snapshot{pa, pb},
			[]Bookmark{bookmark("tank/app#flocker-1-2", 2, 20)},
			"nothing base=tank/app#flocker-1-2/2(bookmark) peer-base=backup/app@flocker-1-2"},
		{"bookmark only, no snapshot left", nil, []Snapshot{pa, pb},
			[]Bookmark{bookmark("tank/app#flocker-1-2", 2, 20)},
			"nothing base=tank/app#flocker-1-2/2(bookmark) peer-base=backup/app@flocker-1-2"},
		{"snapshot preferred over its bookmark", []Snapshot{a, b, c}, []Snapshot{pa, pb},
			[]Bookmark{bookmark("tank/app#flocker-1-2", 2, 20)},
			"incremental base=tank/app@flocker-1-2/2 peer-base=backup/app@flocker-1-2 target=tank/app@flocker-1-3"},
		{"bookmark of an older snapshot does not hide a newer common snapshot", []Snapshot{b, c}, []Snapshot{pa, pb},
			[]Bookmark{bookmark("tank/app#flocker-1-1", 1, 10)},
			"incremental base=tank/app@flocker-1-2/2 peer-base=backup/app@flocker-1-2 target=tank/app@flocker-1-3"},
		{"snapshot in the bookmark's own txg counts as after it", // same txg: same content, another GUID
			[]Snapshot{a, snap("tank/app@twin", 22, 20)}, []Snapshot{pa, pb},
			[]Bookmark{bookmark("tank/app#flocker-1-2", 2, 20)},
			"incremental base=tank/app#flocker-1-2/2(bookmark) peer-base=backup/app@flocker-1-2 target=tank/app@twin"},
		{"two bookmarks of one snapshot: deterministic pick", []Snapshot{a, c}, []Snapshot{pa, pb},
			[]Bookmark{bookmark("tank/app#z", 2, 20), bookmark("tank/app#m", 2, 20)},
			"incremental base=tank/app#m/2(bookmark) peer-base=backup/app@flocker-1-2 target=tank/app@flocker-1-3"},
		{"a bookmark does not make the peer's newer snapshots ours", []Snapshot{a, b}, []Snapshot{pa, pb, pc, pd},
			[]Bookmark{bookmark("tank/app#flocker-1-3", 3, 30)},
			`conflict kind="diverged" base=tank/app#flocker-1-3/3(bookmark) peer-base=backup/app@flocker-1-3 peer-after=[backup/app@flocker-1-4] local-after=none peer-ahead`},
		{"peer bookmarks are no input: only the peer's snapshots count", []Snapshot{a, b, c}, []Snapshot{pb}, nil,
			"incremental base=tank/app@flocker-1-2/2 peer-base=backup/app@flocker-1-2 target=tank/app@flocker-1-3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			localCopy, peerCopy := slices.Clone(tc.local), slices.Clone(tc.peer)
			got := describePlan(PlanReplication(tc.local, tc.peer, tc.bookmarks...))
			if got != tc.want {
				t.Fatalf("\ngot  %s\nwant %s", got, tc.want)
			}
			if !slices.Equal(localCopy, tc.local) || !slices.Equal(peerCopy, tc.peer) {
				t.Fatal("planner reordered the caller's slices")
			}
		})
	}
}

func TestPlanReplicationSameTXGIsDeterministic(t *testing.T) {
	// `zfs snapshot a@x a@y` makes two snapshots in one txg; whichever order the
	// list arrives in, the same one is the target.
	x := Snapshot{Name: "tank/app@x", GUID: 1, CreateTXG: 5}
	y := Snapshot{Name: "tank/app@y", GUID: 2, CreateTXG: 5}
	for _, in := range [][]Snapshot{{x, y}, {y, x}} {
		if got := PlanReplication(in, nil); got.Target.Name != "tank/app@y" {
			t.Fatalf("input %v: target %s, want tank/app@y", snapshotNames(in), got.Target.Name)
		}
	}
}

func TestReplicationConflictIsAnError(t *testing.T) {
	p := PlanReplication([]Snapshot{snap("tank/app@a", 1, 1), snap("tank/app@b", 2, 2)},
		[]Snapshot{snap("bk/app@a", 1, 1), snap("bk/app@c", 3, 2)})
	var err error = p.Conflict
	var c *Conflict
	if !errors.As(err, &c) || c.Kind != ConflictDiverged {
		t.Fatalf("want a diverged *Conflict, got %v", err)
	}
	for _, want := range []string{"tank/app@a", "bk/app@c", "tank/app@b", "guid 1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("message %q does not name %s", err, want)
		}
	}
	if s := p.String(); !strings.HasPrefix(s, "conflict: diverged") {
		t.Errorf("Plan.String() = %q", s)
	}
}

// TestPlanReplicationRandom checks, over random histories, the properties ZFS
// itself imposes rather than re-deriving the planner: an incremental's source
// must be the peer's newest snapshot and a snapshot or bookmark we hold; the
// target is our newest; "nothing" means the peer's newest is ours to hold and
// we have nothing newer; a conflict means no receivable stream exists. The
// decision must not depend on the order of the input lists.
func TestPlanReplicationRandom(t *testing.T) {
	for seed := uint64(0); seed < 3000; seed++ {
		rng := rand.New(rand.NewPCG(seed, 42))
		local, peer, marks := randomSides(rng)
		p := PlanReplication(local, peer, marks...)
		ctx := fmt.Sprintf("seed %d: local %s marks %v peer %s: %s", seed, snapshotNames(local), marks, snapshotNames(peer), describePlan(p))

		ls, ps := sortedSnapshots(local), sortedSnapshots(peer)
		held := map[uint64]bool{}
		for _, s := range ls {
			held[s.GUID] = true
		}
		for _, m := range marks {
			held[m.GUID] = true
		}
		switch p.Action {
		case ActFull:
			if len(ps) != 0 || len(ls) == 0 || p.Target != ls[len(ls)-1] {
				t.Fatalf("%s: full needs an empty peer and our newest as target", ctx)
			}
		case ActIncremental:
			peerNewest := ps[len(ps)-1]
			if p.Base.GUID != peerNewest.GUID || p.Base.Peer != peerNewest {
				t.Fatalf("%s: base is not the peer's newest snapshot", ctx)
			}
			if !held[p.Base.GUID] || p.Target != ls[len(ls)-1] || p.Target.CreateTXG < p.Base.LocalTXG {
				t.Fatalf("%s: base not held here or target not our newest", ctx)
			}
		case ActNothing:
			if len(ps) == 0 {
				if len(ls) != 0 {
					t.Fatalf("%s: nothing although the peer is empty", ctx)
				}
				break
			}
			if !held[ps[len(ps)-1].GUID] {
				t.Fatalf("%s: nothing although we lack the peer's newest", ctx)
			}
			for _, s := range ls {
				if s.CreateTXG >= p.Base.LocalTXG && s.GUID != p.Base.GUID {
					t.Fatalf("%s: nothing although %s is newer than the base", ctx, s.Name)
				}
			}
		case ActConflict:
			if len(ps) == 0 {
				t.Fatalf("%s: conflict with an empty peer", ctx)
			}
			if held[ps[len(ps)-1].GUID] {
				t.Fatalf("%s: conflict although the peer's newest is held here", ctx)
			}
			anyHeld := slices.ContainsFunc(ps, func(s Snapshot) bool { return held[s.GUID] })
			if want := map[bool]ConflictKind{false: ConflictNoCommonSnapshot, true: ConflictDiverged}[anyHeld]; p.Conflict.Kind != want {
				t.Fatalf("%s: kind %s, want %s", ctx, p.Conflict.Kind, want)
			}
		default:
			t.Fatalf("%s: unknown action", ctx)
		}

		rng.Shuffle(len(local), func(i, j int) { local[i], local[j] = local[j], local[i] })
		rng.Shuffle(len(peer), func(i, j int) { peer[i], peer[j] = peer[j], peer[i] })
		rng.Shuffle(len(marks), func(i, j int) { marks[i], marks[j] = marks[j], marks[i] })
		if again := describePlan(PlanReplication(local, peer, marks...)); again != describePlan(p) {
			t.Fatalf("%s: shuffled input planned %s", ctx, again)
		}
	}
}

// randomSides makes one shared linear history, lets each side keep a random
// part of it (pruning), optionally bookmarks some of ours, and adds a random
// tail of its own on each side (new snapshots, or divergent writes).
func randomSides(rng *rand.Rand) (local, peer []Snapshot, marks []Bookmark) {
	n := rng.IntN(7)
	var ltxg, ptxg uint64 = rng.Uint64N(100), rng.Uint64N(1_000_000)
	for i := range n {
		guid := uint64(i + 1)
		ltxg += 1 + rng.Uint64N(5)
		ptxg += 1 + rng.Uint64N(5)
		if rng.IntN(3) > 0 {
			local = append(local, snap(fmt.Sprintf("tank/app@h%d", i), guid, ltxg))
		} else if rng.IntN(2) == 0 {
			marks = append(marks, bookmark(fmt.Sprintf("tank/app#h%d", i), guid, ltxg))
		}
		if rng.IntN(3) > 0 {
			peer = append(peer, snap(fmt.Sprintf("bk/app@h%d", i), guid, ptxg))
		}
	}
	for i := range rng.IntN(3) {
		ltxg += 1 + rng.Uint64N(5)
		local = append(local, snap(fmt.Sprintf("tank/app@l%d", i), 1000+uint64(i), ltxg))
	}
	for i := range rng.IntN(3) {
		ptxg += 1 + rng.Uint64N(5)
		peer = append(peer, snap(fmt.Sprintf("bk/app@p%d", i), 2000+uint64(i), ptxg))
	}
	return local, peer, marks
}
