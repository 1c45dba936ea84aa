package bench

import (
	"slices"
	"time"
)

// How lag is measured (the definition the report uses):
//
//	lag(w) = the time the slave logged "received" for the first snapshot
//	         holding write w  -  the time write() (or the mmap store) for w
//	         returned on A
//
// Which snapshot holds a write is learned two ways. Observed: right after
// the master logs "replicated" for snapshot S (the slave acks only after
// its zfs-fuse remount, so the replica then shows S), the harness reads
// the replica and finds the highest write sequence number in it; the
// reading counts only if the slave has logged no newer receive by the
// time it finished. Bounded, when no observation counts: S holds every
// write that returned before the master started taking S (its "snapshot
// taken" record's time minus its "took"); a write that returned while S
// was being taken is charged to a later snapshot, so a bounded lag can
// only be too long, never too short. Both clocks are this machine's
// wall clock, and the agents' JSON logs carry nanosecond times.

// delivery is one snapshot that reached the slave.
type delivery struct {
	Snapshot string
	Start    time.Time // the master began taking it; zero when unknown
	Received time.Time // the slave logged "received"
	Observed bool      // Highest was read from the replica right after
	Highest  int       // highest write seq the replica held (-1: none)
}

// holds reports whether d carries write seq that returned at done.
func (d delivery) holds(seq int, done time.Time) bool {
	if d.Observed {
		return seq <= d.Highest
	}
	return !d.Start.IsZero() && done.Before(d.Start)
}

// attribution is the result of attribute.
type attribution struct {
	Lags        []time.Duration // per write that was delivered, in seq order
	Bounded     int             // of them, attributed by the time bound only
	Undelivered int             // writes no delivery holds
	// Inconsistent counts observations that contradict the time bound
	// (the replica lacked a write that returned before the snapshot
	// began): a sign of a stale replica mount or a harness bug.
	Inconsistent int
}

// attribute assigns each write (done[i] is when write i returned) the
// earliest-received delivery that holds it.
func attribute(done []time.Time, ds []delivery) attribution {
	ds = slices.Clone(ds)
	slices.SortStableFunc(ds, func(a, b delivery) int { return a.Received.Compare(b.Received) })
	var r attribution
	for _, d := range ds {
		if !d.Observed || d.Start.IsZero() {
			continue
		}
		for i := d.Highest + 1; i < len(done); i++ {
			if done[i].Before(d.Start) {
				r.Inconsistent++
				break
			}
		}
	}
	j := 0 // deliveries before j hold none of the writes still unattributed
	for i, t := range done {
		found := false
		for k := j; k < len(ds); k++ {
			if ds[k].holds(i, t) {
				lag := ds[k].Received.Sub(t)
				if lag <= 0 {
					// Received before the write returned: the observation
					// read a later write's data; impossible unless clocks
					// or the harness are wrong. Count it, do not report it.
					r.Inconsistent++
					continue
				}
				r.Lags = append(r.Lags, lag)
				if !ds[k].Observed {
					r.Bounded++
				}
				found = true
				j = k
				break
			}
		}
		if !found {
			r.Undelivered++
		}
	}
	return r
}

// millis converts durations to float milliseconds for the report.
func millis(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}
