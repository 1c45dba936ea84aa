package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/flockerha/flocker/agent/config"
)

// The periodic-snapshot baseline (zrepl, sanoid/syncoid every minute) is a
// 60 s schedule, and one period of it alone would take a fifth of the run's
// five minutes. The timer tier at 1 s is the same schedule scaled down 60x
// (with writes coming all the time, every tick finds a change: a snapshot
// and a send every period), so the run derives the 60 s distribution from
// that run instead of waiting a minute:
//
//	lag = wait for the next scheduled snapshot + that snapshot's time to the replica
//
// A write at a random moment waits a uniform share of the period; the
// second term does not depend on the period (a minute of 64-byte appends at
// 10/s is still a small incremental, 38 KiB) and is measured per snapshot
// of the 1 s run, from the master beginning to take it to the slave's
// receive. The derived row says so, and how many snapshots it rests on.

// baselinePeriod is the periodic tools' schedule the derived row stands for.
const baselinePeriod = time.Minute

// periodicRate is the writes per second of the lag runs (lagOf's rate).
const periodicRate = 10.0

// periodicRows measures c (the 1 s timer) as lagOf does and derives the
// baseline's 60 s distribution from its snapshots: two rows.
func (e *Env) periodicRows(ctx context.Context, c lagCase) ([]Row, error) {
	err := e.Agents(ctx, c.mode, c.interval, false)
	if errors.Is(err, errRefused) {
		return []Row{{Case: c.name, Metric: "write-to-replica lag", Status: StatusUnavailable, Note: oneLine(err.Error())}}, nil
	}
	if err != nil {
		return nil, err
	}
	secs := pick(e, 6.0, 1.0)
	res, err := e.MeasureLag(ctx, e.appTarget(e.appends), steady(periodicRate), int(periodicRate*secs), 2*c.interval+30*time.Second)
	if err != nil {
		return nil, err
	}
	measured := lagRow(c.name, res)
	name := "periodic-" + baselinePeriod.String() + "-derived"
	costs := snapshotToReplica(res.deliveries, res.First)
	if len(costs) == 0 {
		return []Row{measured, {Case: name, Metric: "write-to-replica lag", Status: StatusFailed,
			Note: "no snapshot of the " + c.name + " run has both its start and its receive logged"}}, nil
	}
	derived := dist("", name, "write-to-replica lag", "ms", millis(derivePeriodic(baselinePeriod, periodicRate, costs)))
	cs := Summarize(millis(costs))
	derived.Note = fmt.Sprintf("derived, not run for a minute: the periodic-snapshot baseline (zrepl, sanoid/syncoid every minute); "+
		"each of %d writes (%.0f/s over one %v period) waits for the next snapshot, plus a snapshot-to-replica time measured on the %s run, "+
		"the same schedule scaled down %.0fx (%d snapshots, p50 %s ms, max %s ms)",
		derived.N, periodicRate, baselinePeriod, c.name, baselinePeriod.Seconds()/c.interval.Seconds(), cs.N, fnum(cs.P50), fnum(cs.Max))
	return []Row{measured, derived}, nil
}

// snapshotToReplica is, per delivery of a snapshot begun after first (so
// holding writes of the run), the time from the master beginning to take
// it to the slave logging its receive.
func snapshotToReplica(ds []delivery, first time.Time) []time.Duration {
	var out []time.Duration
	for _, d := range ds {
		if d.Start.IsZero() || d.Start.Before(first) || !d.Received.After(d.Start) {
			continue
		}
		out = append(out, d.Received.Sub(d.Start))
	}
	return out
}

// derivePeriodic is the lag distribution of writes at rate per second over
// one period of a schedule that snapshots every period: write i returns at
// (i+1/2)/rate into the period, waits for the snapshot at its end, and
// reaches the replica costs[i mod len] after that snapshot began. Pure.
func derivePeriodic(period time.Duration, rate float64, costs []time.Duration) []time.Duration {
	if len(costs) == 0 || rate <= 0 {
		return nil
	}
	costs = slices.Clone(costs)
	slices.Sort(costs) // a fixed pairing: the result does not depend on log order
	n := int(rate * period.Seconds())
	out := make([]time.Duration, n)
	for i := range n {
		at := time.Duration((float64(i) + 0.5) / rate * float64(time.Second))
		out[i] = period - at + costs[i%len(costs)]
	}
	return out
}

// lagOrder is the order to measure cases in: each restart of the agents
// costs seconds (stop, start, the first sync, a warm-up), so the timer
// cases come first, then the other tiers, and best last, which the rates
// and workloads scenarios run with next.
func lagOrder(cases []lagCase, best string) []int {
	rank := func(c lagCase) int {
		switch {
		case c.mode == best:
			return 3
		case c.mode == config.NotifyTimer:
			return 0
		case c.mode == config.NotifyFanotify:
			return 1
		}
		return 2
	}
	order := make([]int, len(cases))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return rank(cases[a]) - rank(cases[b]) })
	return order
}
