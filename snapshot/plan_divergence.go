package snapshot

import (
	"cmp"
	"fmt"
	"strings"
)

// HeadState says whether a dataset changed since its newest snapshot (OpenZFS:
// the `written` property; zfs-fuse has none, so there it is unknown).
type HeadState int

const (
	// HeadUnknown is the zero value and is treated as changed everywhere: the
	// cost of guessing wrong is one stash too many, never lost data.
	HeadUnknown HeadState = iota
	// HeadClean: nothing written since the newest snapshot.
	HeadClean
	// HeadChanged: something written since the newest snapshot.
	HeadChanged
)

func (h HeadState) String() string {
	switch h {
	case HeadUnknown:
		return "unknown"
	case HeadClean:
		return "clean"
	case HeadChanged:
		return "changed"
	}
	return fmt.Sprintf("HeadState(%d)", int(h))
}

// DivergencePolicy decides between two sides that both changed after their
// common snapshot. The zero value is the default, DivergeNewerEpoch.
type DivergencePolicy int

const (
	// DivergeNewerEpoch: the side with the higher epoch wins. The higher epoch
	// is the later promotion, the side clients were most recently sent to.
	DivergeNewerEpoch DivergencePolicy = iota
	// DivergeMostChanges: the side with more changes after the common base
	// wins. Changes are counted in snapshots (plus one for a head that changed
	// or may have), not bytes: every dialect lists snapshots, while bytes
	// written (`written@snap`) is missing on zfs-fuse and misleads anyway
	// (compression, rewrites of one big file, deletions). flocker snapshots
	// once per burst of writes, so the count approximates how many times a
	// side acknowledged writes, which is what this policy means to preserve.
	DivergeMostChanges
)

// ParseDivergencePolicy reads the config form: "newer-epoch" or "most-changes".
func ParseDivergencePolicy(s string) (DivergencePolicy, error) {
	switch s {
	case "newer-epoch":
		return DivergeNewerEpoch, nil
	case "most-changes":
		return DivergeMostChanges, nil
	}
	return 0, fmt.Errorf("divergence policy %q: want newer-epoch or most-changes", s)
}

func (p DivergencePolicy) String() string {
	switch p {
	case DivergeNewerEpoch:
		return "newer-epoch"
	case DivergeMostChanges:
		return "most-changes"
	}
	return fmt.Sprintf("DivergencePolicy(%d)", int(p))
}

// DivergenceSide is one host's view of a dataset, as the divergence planner needs it.
type DivergenceSide struct {
	Node      string // node name from the config: the last symmetric tie-break
	Epoch     uint64
	Master    bool // this side claims the master role
	Snapshots []Snapshot
	Head      HeadState
}

// Side names a host in a Resolution.
type Side int

const (
	SideNone Side = iota
	SideLocal
	SidePeer
)

func (s Side) String() string {
	switch s {
	case SideLocal:
		return "local"
	case SidePeer:
		return "peer"
	}
	return "none"
}

// DecidedBy names the rule that picked the winner.
type DecidedBy int

const (
	DecidedByZeroChanges DecidedBy = iota + 1 // the loser changed nothing after the base
	DecidedByEpoch                            // higher epoch
	DecidedByChanges                          // more changes after the base
	DecidedByMasterClaim                      // only one side claims master
	DecidedByNodeName                         // smaller node name
	DecidedByGUID                             // larger GUID of the newest snapshot after the base
)

func (d DecidedBy) String() string {
	switch d {
	case DecidedByZeroChanges:
		return "zero changes"
	case DecidedByEpoch:
		return "newer epoch"
	case DecidedByChanges:
		return "most changes"
	case DecidedByMasterClaim:
		return "master claim"
	case DecidedByNodeName:
		return "node name"
	case DecidedByGUID:
		return "snapshot guid"
	}
	return fmt.Sprintf("DecidedBy(%d)", int(d))
}

// SideChanges is what one side did after the common base.
type SideChanges struct {
	AfterBase []Snapshot // oldest first, under that side's names
	Head      HeadState
}

// Count is the change count most-changes compares: snapshots after the base,
// plus one when the head changed or may have.
func (c SideChanges) Count() int {
	n := len(c.AfterBase)
	if c.Head != HeadClean {
		n++
	}
	return n
}

// None reports a side provably unchanged since the base.
func (c SideChanges) None() bool { return c.Count() == 0 }

// Stash is what the loser must preserve, as its own dataset, before it rolls
// back to the base: nothing either side acknowledged may be lost.
type Stash struct {
	Snapshots []Snapshot // the loser's snapshots after the base, oldest first
	Head      bool       // the loser's head changed (or may have) after its newest snapshot
}

// Empty reports that the loser has nothing to preserve.
func (s Stash) Empty() bool { return len(s.Snapshots) == 0 && !s.Head }

// Resolution is the divergence planner's decision. After the loser stashed
// Stash and rolled back to RollbackTo, its newest snapshot is the base, and
// PlanReplication from the winner plans an incremental from the base: no full
// resend.
type Resolution struct {
	Winner    Side // SideNone with a Conflict
	DecidedBy DecidedBy
	// Diverged is true when both sides changed after the base; otherwise the
	// loser simply catches up and Stash is empty.
	Diverged bool
	Base     *Base // the newest snapshot both hold; Base.Local names ours
	Local    SideChanges
	Peer     SideChanges
	Stash    Stash
	// RollbackTo is the loser's name for the base, which it rolls back to
	// after stashing; empty when Stash is empty (nothing to undo).
	RollbackTo string
	Conflict   *DivergenceConflict
}

// DivergenceConflictKind says why the planner cannot decide alone.
type DivergenceConflictKind int

const (
	// DivergenceNoCommonBase: no snapshot GUID is on both sides. Resuming would
	// mean a full receive over one side's data; the operator decides.
	DivergenceNoCommonBase DivergenceConflictKind = iota + 1
	// DivergenceAmbiguousBase: the newest common snapshot by one side's order
	// is not the newest by the other's; the histories are not linear and no
	// single base is safe.
	DivergenceAmbiguousBase
	// DivergenceUndecided: every rule, tie-breaks included, came out equal
	// (same epoch, change count, claim and node name, no snapshot after the
	// base to compare). Two nodes with one name is a configuration error; the
	// operator must fix it, as no symmetric rule is left to pick a side.
	DivergenceUndecided
)

func (k DivergenceConflictKind) String() string {
	switch k {
	case DivergenceNoCommonBase:
		return "no common base"
	case DivergenceAmbiguousBase:
		return "ambiguous common base"
	case DivergenceUndecided:
		return "undecided"
	}
	return fmt.Sprintf("DivergenceConflictKind(%d)", int(k))
}

// DivergenceConflict needs the operator; nothing is destroyed automatically.
type DivergenceConflict struct {
	Kind   DivergenceConflictKind
	Local  []Snapshot // our snapshots, oldest first
	Peer   []Snapshot // the peer's snapshots, oldest first
	Detail string
}

func (c *DivergenceConflict) Error() string {
	msg := fmt.Sprintf("divergence needs the operator: %s; we hold %s; peer holds %s",
		c.Kind, snapshotNames(c.Local), snapshotNames(c.Peer))
	if c.Detail != "" {
		msg += " (" + c.Detail + ")"
	}
	return msg
}

// PlanDivergence decides which side's history survives when both sides may
// have written since their last common snapshot (a returning old master, a
// split brain). Both hosts run it with the inputs swapped and reach mirrored
// decisions: every rule below is symmetric.
//
// Rules:
//  1. The base is the newest snapshot both hold, matched by GUID (GUID 0 never
//     matches). Only snapshots count, not bookmarks: the loser must roll back
//     to the base and receive on top of it, which needs the real snapshot.
//     None: DivergenceNoCommonBase. The newest common by our order must be the
//     newest by the peer's: otherwise DivergenceAmbiguousBase.
//  2. A side's changes are its snapshots after the base plus its head unless
//     known clean (HeadUnknown counts as changed).
//  3. A side with zero changes loses to a side with some (DRBD's
//     discard-zero-changes): it has nothing to lose.
//  4. Otherwise, and also when neither side changed (nothing to stash then),
//     the policy's criterion decides, then the other policy's criterion:
//     newer-epoch compares epochs then change counts; most-changes compares
//     change counts then epochs. Higher wins.
//  5. Ties, in order: the side claiming master wins over one that does not;
//     the lexicographically smaller node name wins; the side whose newest
//     snapshot after the base has the larger GUID wins (none counts as 0).
//     Still equal: DivergenceUndecided.
//  6. The loser stashes its snapshots after the base and its head (unless
//     known clean), then rolls back to the base.
func PlanDivergence(local, peer DivergenceSide, p DivergencePolicy) Resolution {
	ls := sortedSnapshots(local.Snapshots)
	ps := sortedSnapshots(peer.Snapshots)

	li, pi, conflict := divergenceBase(ls, ps)
	if conflict != nil {
		return Resolution{Conflict: conflict}
	}
	r := Resolution{
		Base:  &Base{GUID: ls[li].GUID, Local: ls[li].Name, LocalTXG: ls[li].CreateTXG, Peer: ps[pi]},
		Local: SideChanges{AfterBase: ls[li+1:], Head: local.Head},
		Peer:  SideChanges{AfterBase: ps[pi+1:], Head: peer.Head},
	}
	r.Diverged = !r.Local.None() && !r.Peer.None()

	// Each criterion returns >0 when local wins, <0 when the peer wins.
	epoch := func() int { return cmp.Compare(local.Epoch, peer.Epoch) }
	changes := func() int { return cmp.Compare(r.Local.Count(), r.Peer.Count()) }
	type criterion struct {
		by      DecidedBy
		compare func() int
	}
	order := []criterion{
		{DecidedByZeroChanges, func() int {
			if r.Diverged || (r.Local.None() && r.Peer.None()) {
				return 0
			}
			return changes()
		}},
		{DecidedByEpoch, epoch},
		{DecidedByChanges, changes},
		{DecidedByMasterClaim, func() int { return compareBool(local.Master, peer.Master) }},
		{DecidedByNodeName, func() int { return strings.Compare(peer.Node, local.Node) }},
		{DecidedByGUID, func() int { return cmp.Compare(newestGUID(r.Local.AfterBase), newestGUID(r.Peer.AfterBase)) }},
	}
	if p == DivergeMostChanges {
		order[1], order[2] = order[2], order[1]
	}
	for _, c := range order {
		if v := c.compare(); v != 0 {
			r.Winner, r.DecidedBy = SideLocal, c.by
			if v < 0 {
				r.Winner = SidePeer
			}
			break
		}
	}
	if r.Winner == SideNone {
		return Resolution{Conflict: &DivergenceConflict{
			Kind: DivergenceUndecided, Local: ls, Peer: ps,
			Detail: fmt.Sprintf("both at epoch %d with %d changes, master claim %t, node %q",
				local.Epoch, r.Local.Count(), local.Master, local.Node),
		}}
	}

	loser, loserBase := r.Peer, r.Base.Peer.Name
	if r.Winner == SidePeer {
		loser, loserBase = r.Local, r.Base.Local
	}
	r.Stash = Stash{Snapshots: loser.AfterBase, Head: loser.Head != HeadClean}
	if !r.Stash.Empty() {
		r.RollbackTo = loserBase
	}
	return r
}

// divergenceBase finds the newest common snapshot (indexes into the sorted
// lists) or says why there is none.
func divergenceBase(local, peer []Snapshot) (li, pi int, conflict *DivergenceConflict) {
	peerIndex := make(map[uint64]int, len(peer))
	for i, s := range peer {
		if s.GUID != 0 {
			peerIndex[s.GUID] = i
		}
	}
	li, pi = -1, -1
	for i := len(local) - 1; i >= 0; i-- {
		if j, ok := peerIndex[local[i].GUID]; ok {
			li, pi = i, j
			break
		}
	}
	if li < 0 {
		return 0, 0, &DivergenceConflict{Kind: DivergenceNoCommonBase, Local: local, Peer: peer}
	}
	localGUIDs := make(map[uint64]bool, len(local))
	for _, s := range local {
		localGUIDs[s.GUID] = true
	}
	for j := len(peer) - 1; j > pi; j-- {
		if peer[j].GUID != 0 && localGUIDs[peer[j].GUID] {
			return 0, 0, &DivergenceConflict{
				Kind: DivergenceAmbiguousBase, Local: local, Peer: peer,
				Detail: fmt.Sprintf("our newest common is guid %d, the peer's is guid %d", local[li].GUID, peer[j].GUID),
			}
		}
	}
	return li, pi, nil
}

func compareBool(a, b bool) int {
	switch {
	case a == b:
		return 0
	case a:
		return 1
	}
	return -1
}

func newestGUID(s []Snapshot) uint64 {
	if len(s) == 0 {
		return 0
	}
	return s[len(s)-1].GUID
}
