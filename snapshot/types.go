// Package snapshot holds flocker's ZFS side: the adapter around the zfs CLI,
// snapshot naming, and the pure planners (replication, retention, divergence)
// that turn snapshot lists into typed decisions without touching ZFS.
package snapshot

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Snapshot is one ZFS snapshot as listed on one host.
//
// Identity across hosts is GUID: a received snapshot keeps the sender's GUID,
// while the dataset part of Name may differ between hosts (each host names its
// own dataset in the config) and an operator may rename a snapshot. CreateTXG is
// the pool's transaction group at creation: it orders the snapshots of one host
// exactly, but it is per pool, so it is never compared across hosts.
type Snapshot struct {
	Name      string // full name, dataset@snap
	GUID      uint64
	CreateTXG uint64
	Creation  time.Time
}

// ShortName is the part after '@' (the whole name when there is no '@').
func (s Snapshot) ShortName() string {
	if i := strings.IndexByte(s.Name, '@'); i >= 0 {
		return s.Name[i+1:]
	}
	return s.Name
}

// Ours reports whether the snapshot carries one of flocker's own names
// (see FlockerName). Only those are ever pruned by flocker.
func (s Snapshot) Ours() bool {
	i := strings.IndexByte(s.Name, '@')
	return i > 0 && IsFlockerName(s.Name[i+1:])
}

// Bookmark is one ZFS bookmark (dataset#mark). It keeps the GUID and createtxg
// of the snapshot it was made from, which is enough to be the source of an
// incremental send after that snapshot was destroyed.
type Bookmark struct {
	Name      string // full name, dataset#mark
	GUID      uint64
	CreateTXG uint64
}

// flockerNamePrefix starts every snapshot name flocker creates.
const flockerNamePrefix = "flocker-"

// FlockerName is the short name of a snapshot flocker created:
// flocker-<epoch>-<seq>, both decimal. The epoch is the role epoch the
// snapshot was taken in; the sequence counts snapshots within that epoch.
type FlockerName struct {
	Epoch uint64
	Seq   uint64
}

// String formats the short name, e.g. "flocker-7-42".
func (n FlockerName) String() string {
	return flockerNamePrefix + strconv.FormatUint(n.Epoch, 10) + "-" + strconv.FormatUint(n.Seq, 10)
}

// ParseFlockerName parses a short snapshot name (the part after '@').
//
// It accepts only the canonical form String produces: no sign, no leading
// zeros, nothing after the sequence. The strictness is deliberate: whatever
// parses is treated as flocker's own and may be pruned, so an operator's
// "flocker-01-2" or "flocker-1-2-before-upgrade" must never qualify.
func ParseFlockerName(short string) (FlockerName, error) {
	rest, ok := strings.CutPrefix(short, flockerNamePrefix)
	if !ok {
		return FlockerName{}, fmt.Errorf("snapshot name %q: does not start with %q", short, flockerNamePrefix)
	}
	epochText, seqText, ok := strings.Cut(rest, "-")
	if !ok {
		return FlockerName{}, fmt.Errorf("snapshot name %q: want %s<epoch>-<seq>", short, flockerNamePrefix)
	}
	epoch, err := parseCanonicalUint(epochText)
	if err != nil {
		return FlockerName{}, fmt.Errorf("snapshot name %q: epoch: %w", short, err)
	}
	seq, err := parseCanonicalUint(seqText)
	if err != nil {
		return FlockerName{}, fmt.Errorf("snapshot name %q: sequence: %w", short, err)
	}
	return FlockerName{Epoch: epoch, Seq: seq}, nil
}

// IsFlockerName reports whether a short snapshot name is one flocker creates.
func IsFlockerName(short string) bool {
	_, err := ParseFlockerName(short)
	return err == nil
}

// parseCanonicalUint parses a decimal uint64 written without sign or leading zeros.
func parseCanonicalUint(s string) (uint64, error) {
	if s == "" {
		return 0, fmt.Errorf("empty number")
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("%q is not a decimal number", s)
		}
	}
	if len(s) > 1 && s[0] == '0' {
		return 0, fmt.Errorf("%q has a leading zero", s)
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%q out of range", s)
	}
	return n, nil
}

// compareSnapshots orders the snapshots of one host oldest first: by CreateTXG,
// which is the pool's true order even when the clock jumped; snapshots taken in
// the same transaction group (same content) by Creation, then Name, then GUID,
// only so that the order is total and the planners deterministic.
func compareSnapshots(a, b Snapshot) int {
	return cmp.Or(
		cmp.Compare(a.CreateTXG, b.CreateTXG),
		a.Creation.Compare(b.Creation),
		strings.Compare(a.Name, b.Name),
		cmp.Compare(a.GUID, b.GUID),
	)
}

// sortedSnapshots returns a sorted copy; callers' slices are never reordered.
func sortedSnapshots(in []Snapshot) []Snapshot {
	out := slices.Clone(in)
	slices.SortFunc(out, compareSnapshots)
	return out
}
