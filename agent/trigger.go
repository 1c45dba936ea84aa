package agent

import (
	"time"

	"github.com/flockerha/flocker/snapshot"
)

// Trigger decides when the master snapshots a dataset. It is pure: every
// method takes the time it acts at, so its rules are table-tested.
//
// Rules:
//   - A change makes the dataset dirty; a snapshot taken afterwards holds it
//     (the notifier cleared its flag and ran syncfs before reporting).
//   - A dirty dataset is snapshotted at once, unless
//   - a snapshot already waits for the transfer in flight: then later
//     changes fold into the next snapshot, taken when that transfer ends.
//     So at most one snapshot waits, and however fast writes come, a burst
//     costs about one snapshot per transfer;
//   - or the last snapshot is younger than MinInterval: then the snapshot
//     is due at last + MinInterval.
type Trigger struct {
	MinInterval time.Duration

	dirty      bool
	dirtySince time.Time // the first change not yet in a snapshot
	last       time.Time // when the last snapshot was taken
}

// Change records a change reported at t.
func (g *Trigger) Change(t time.Time) {
	if !g.dirty {
		g.dirty, g.dirtySince = true, t
	}
}

// Dirty reports whether a change waits for a snapshot, and since when.
func (g *Trigger) Dirty() (bool, time.Time) { return g.dirty, g.dirtySince }

// Taken records a snapshot taken at t. It holds every change recorded
// before it: the caller records changes and snapshots in the order they
// happen.
func (g *Trigger) Taken(t time.Time) {
	g.dirty, g.dirtySince, g.last = false, time.Time{}, t
}

// Decide says whether to snapshot at now. waiting is true when a snapshot
// taken since the transfer in flight started still waits for that transfer
// to end. When the answer is no but a snapshot will be due at a known time,
// wake is that time (zero otherwise: nothing is due until an event).
func (g *Trigger) Decide(now time.Time, waiting bool) (take bool, wake time.Time) {
	switch {
	case !g.dirty:
		return false, time.Time{}
	case waiting:
		return false, time.Time{}
	case !g.last.IsZero() && now.Before(g.last.Add(g.MinInterval)):
		return false, g.last.Add(g.MinInterval)
	}
	return true, time.Time{}
}

// nextSeq is the sequence number for the next snapshot in epoch: one more
// than the highest of flocker's own snapshots of that epoch in snaps, so
// numbering continues after a restart; 1 when there is none.
func nextSeq(snaps []snapshot.Snapshot, epoch uint64) uint64 {
	var high uint64
	for _, s := range snaps {
		n, err := snapshot.ParseFlockerName(s.ShortName())
		if err == nil && n.Epoch == epoch && n.Seq > high {
			high = n.Seq
		}
	}
	return high + 1
}

// Retry timing for failed transfers and snapshots. The first retry comes
// quickly (a dropped connection or a raced snapshot list is usually
// transient); the cap keeps a peer that fails for good (pool full) from
// being hammered while still noticing within seconds that it recovered.
const (
	retryFirst = 250 * time.Millisecond
	retryCap   = 10 * time.Second
)

// retryDelay is the wait before retry number attempt (1 for the first):
// retryFirst doubling up to retryCap, spread by +-20% with r in [0, 1) so
// that datasets failing together do not retry in lockstep.
func retryDelay(attempt int, r float64) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	d := retryFirst
	for i := 1; i < attempt && d < retryCap; i++ {
		d *= 2
	}
	d = min(d, retryCap)
	return time.Duration(float64(d) * (0.8 + 0.4*r))
}
