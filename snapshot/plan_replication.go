package snapshot

import (
	"fmt"
	"strings"
)

// Action is what a replication Plan asks the sender to do.
type Action int

const (
	// ActNothing: the peer already holds our newest snapshot (or neither side
	// has any). Nothing to send.
	ActNothing Action = iota + 1
	// ActFull: the peer has no snapshots; send Target whole.
	ActFull
	// ActIncremental: send from Base to Target.
	ActIncremental
	// ActConflict: no stream can be received as things stand; see Plan.Conflict.
	ActConflict
)

func (a Action) String() string {
	switch a {
	case ActNothing:
		return "nothing"
	case ActFull:
		return "full"
	case ActIncremental:
		return "incremental"
	case ActConflict:
		return "conflict"
	}
	return fmt.Sprintf("Action(%d)", int(a))
}

// Base is a snapshot both sides share (matched by GUID): the point an
// incremental stream starts from.
type Base struct {
	GUID uint64
	// Local names the base on this host as `zfs send -i` takes it: a snapshot
	// (dataset@snap) or, when that snapshot was pruned, its bookmark
	// (dataset#mark).
	Local string
	// LocalTXG is the base's createtxg on this host.
	LocalTXG uint64
	// Bookmark is true when Local is a bookmark. A bookmark can start `send -i`
	// but not `send -I`.
	Bookmark bool
	// Peer is the peer's snapshot with this GUID, under the peer's own name.
	Peer Snapshot
}

// Plan is the replication planner's decision for one dataset.
type Plan struct {
	Action Action
	// Target is our newest snapshot (ActFull, ActIncremental).
	Target Snapshot
	// Base is the common snapshot: the stream's source for ActIncremental; for
	// ActNothing the snapshot both hold (nil when neither side has any); for a
	// conflict see Conflict.Base.
	Base *Base
	// Between lists our snapshots strictly between Base and Target, oldest
	// first (ActIncremental only): what `send -I` would carry in addition.
	Between []Snapshot
	// Conflict explains ActConflict.
	Conflict *Conflict
}

func (p Plan) String() string {
	switch p.Action {
	case ActFull:
		return "full " + p.Target.Name
	case ActIncremental:
		return fmt.Sprintf("incremental %s -> %s", p.Base.Local, p.Target.Name)
	case ActConflict:
		return "conflict: " + p.Conflict.Error()
	}
	return p.Action.String()
}

// ConflictKind says why no stream can be planned.
type ConflictKind int

const (
	// ConflictNoCommonSnapshot: the peer has snapshots but none whose GUID we
	// hold (as a snapshot or a bookmark). Only a full receive over the peer's
	// data would proceed, and that is never decided automatically.
	ConflictNoCommonSnapshot ConflictKind = iota + 1
	// ConflictDiverged: the peer holds snapshots newer than the common base
	// that we do not have. `zfs receive` needs the peer's newest snapshot to be
	// the stream's source, so receiving would first mean discarding the peer's
	// newer snapshots: that is the divergence planner's call (PlanDivergence),
	// never the replication planner's. When we have nothing after the base
	// either, the peer is simply ahead of us (Conflict.PeerAhead).
	ConflictDiverged
)

func (k ConflictKind) String() string {
	switch k {
	case ConflictNoCommonSnapshot:
		return "no common snapshot"
	case ConflictDiverged:
		return "diverged"
	}
	return fmt.Sprintf("ConflictKind(%d)", int(k))
}

// Conflict is a typed replication conflict. It is an error so that callers can
// return it and match it with errors.As.
type Conflict struct {
	Kind ConflictKind
	// Base is the common snapshot (ConflictDiverged only).
	Base *Base
	// PeerAfterBase is what the peer holds beyond the base, oldest first in
	// the peer's order; with no common snapshot, all of the peer's snapshots.
	PeerAfterBase []Snapshot
	// LocalAfterBase is what we hold beyond the base, oldest first; with no
	// common snapshot, all of ours.
	LocalAfterBase []Snapshot
}

// PeerAhead reports a divergence in which only the peer moved past the base.
func (c *Conflict) PeerAhead() bool {
	return c.Kind == ConflictDiverged && len(c.LocalAfterBase) == 0
}

func (c *Conflict) Error() string {
	var b strings.Builder
	switch c.Kind {
	case ConflictNoCommonSnapshot:
		fmt.Fprintf(&b, "no common snapshot: peer holds %s; we hold %s",
			snapshotNames(c.PeerAfterBase), snapshotNames(c.LocalAfterBase))
	case ConflictDiverged:
		fmt.Fprintf(&b, "diverged after common snapshot %s (guid %d): peer only %s; we only %s",
			c.Base.Local, c.Base.GUID, snapshotNames(c.PeerAfterBase), snapshotNames(c.LocalAfterBase))
	default:
		b.WriteString(c.Kind.String())
	}
	return b.String()
}

// snapshotNames lists names compactly for messages.
func snapshotNames(s []Snapshot) string {
	if len(s) == 0 {
		return "none"
	}
	names := make([]string, len(s))
	for i, x := range s {
		names[i] = x.Name
	}
	return "[" + strings.Join(names, " ") + "]"
}

// PlanReplication decides what this host (the sender) must send so that the
// peer holds our newest snapshot. Lists may come in any order; neither is
// modified. Bookmarks are this host's bookmarks, optional (zfs-fuse has none).
//
// Rules, in order:
//  1. Each side is sorted by its own CreateTXG (see compareSnapshots); the two
//     sides' txgs are never compared with each other. Snapshots are matched
//     across sides by GUID only, so renamed snapshots and a peer dataset with
//     another path match all the same. GUID 0 means "unknown" and never matches.
//  2. The peer has no snapshots: Full of our newest, or Nothing when we have
//     none either.
//  3. The base is the peer's newest snapshot whose GUID we hold, as a snapshot
//     or else as a bookmark (its snapshot pruned while the peer was away: an
//     incremental from the bookmark still beats a full resend). It is the
//     peer's newest we hold, not ours the peer holds, because `zfs receive`
//     applies an incremental only on top of the receiver's newest snapshot.
//     No such snapshot: ConflictNoCommonSnapshot. (Only the peer's snapshots
//     count as "peer holds": a receiver's bookmark cannot take a stream.)
//  4. The peer holds snapshots after the base: ConflictDiverged, naming them
//     and ours after the base.
//  5. We hold no snapshot after the base: Nothing (the peer has our newest).
//     For a bookmark base, every snapshot with a createtxg at or after the
//     bookmark's counts as after it: the bookmark's own snapshot is gone.
//  6. Otherwise Incremental from the base to our newest snapshot.
func PlanReplication(local, peer []Snapshot, bookmarks ...Bookmark) Plan {
	local = sortedSnapshots(local)
	peer = sortedSnapshots(peer)

	if len(peer) == 0 {
		if len(local) == 0 {
			return Plan{Action: ActNothing}
		}
		return Plan{Action: ActFull, Target: local[len(local)-1]}
	}

	localIndex := make(map[uint64]int, len(local))
	for i, s := range local {
		if s.GUID != 0 {
			localIndex[s.GUID] = i
		}
	}
	bookmarkByGUID := make(map[uint64]Bookmark, len(bookmarks))
	for _, b := range bookmarks {
		if b.GUID == 0 {
			continue
		}
		// Several bookmarks of one snapshot are interchangeable; keep the
		// smallest name so the plan does not depend on input order.
		if old, ok := bookmarkByGUID[b.GUID]; !ok || b.Name < old.Name {
			bookmarkByGUID[b.GUID] = b
		}
	}

	var base *Base
	var firstAfter int // index in local of the first snapshot after the base
	peerBase := -1
	for p := len(peer) - 1; p >= 0 && base == nil; p-- {
		g := peer[p].GUID
		if g == 0 {
			continue
		}
		if i, ok := localIndex[g]; ok {
			base = &Base{GUID: g, Local: local[i].Name, LocalTXG: local[i].CreateTXG, Peer: peer[p]}
			firstAfter = i + 1
			peerBase = p
		} else if b, ok := bookmarkByGUID[g]; ok {
			base = &Base{GUID: g, Local: b.Name, LocalTXG: b.CreateTXG, Bookmark: true, Peer: peer[p]}
			firstAfter = len(local)
			for i, s := range local {
				if s.CreateTXG >= b.CreateTXG {
					firstAfter = i
					break
				}
			}
			peerBase = p
		}
	}

	if base == nil {
		return Plan{Action: ActConflict, Conflict: &Conflict{
			Kind:           ConflictNoCommonSnapshot,
			PeerAfterBase:  peer,
			LocalAfterBase: local,
		}}
	}
	localAfter := local[firstAfter:]
	if peerAfter := peer[peerBase+1:]; len(peerAfter) > 0 {
		return Plan{Action: ActConflict, Conflict: &Conflict{
			Kind:           ConflictDiverged,
			Base:           base,
			PeerAfterBase:  peerAfter,
			LocalAfterBase: localAfter,
		}}
	}
	if len(localAfter) == 0 {
		return Plan{Action: ActNothing, Base: base}
	}
	return Plan{
		Action:  ActIncremental,
		Base:    base,
		Target:  localAfter[len(localAfter)-1],
		Between: localAfter[:len(localAfter)-1],
	}
}
