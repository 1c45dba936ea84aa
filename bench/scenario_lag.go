package bench

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/flockerha/flocker/agent/config"
)

func init() {
	register(Scenario{Name: "lag", Order: 20, Run: runLag,
		Summary: "write-to-replica lag per trigger mode: each eBPF tier that loads, fanotify, timer 1 s and 100 ms, a 60 s periodic schedule (derived from the 1 s one)"})
	register(Scenario{Name: "rates", Order: 30, Run: runRates,
		Summary: "lag at 10 and at 1,000 writes per second with the best tier, against the floor (issue 4)"})
}

// lagCase is one trigger mode to measure.
type lagCase struct {
	name     string
	mode     string
	interval time.Duration
	// periodic: the 60 s periodic baseline is derived from this case's
	// run too (scenario_periodic.go).
	periodic bool
	note     string
}

func (e *Env) lagCases(ctx context.Context) ([]lagCase, []Row, error) {
	pr, err := e.probe(ctx)
	if err != nil {
		return nil, nil, err
	}
	var cases []lagCase
	var unavailable []Row
	for _, m := range ebpfModes {
		i := slices.IndexFunc(pr.Tiers, func(t probeTier) bool { return t.Name == m })
		switch {
		case i < 0:
			unavailable = append(unavailable, Row{Case: m, Metric: "write-to-replica lag", Status: StatusUnavailable, Note: "flocker probe does not list this tier"})
		case !pr.Tiers[i].Available:
			unavailable = append(unavailable, Row{Case: m, Metric: "write-to-replica lag", Status: StatusUnavailable, Note: oneLine(pr.Tiers[i].Reason)})
		default:
			cases = append(cases, lagCase{name: m, mode: m, interval: time.Second})
		}
	}
	cases = append(cases,
		lagCase{name: "fanotify", mode: config.NotifyFanotify, interval: time.Second},
		// The 60 s periodic baseline is derived from this one (scenario_periodic.go).
		lagCase{name: "timer-1s", mode: config.NotifyTimer, interval: time.Second, periodic: true},
		lagCase{name: "timer-100ms", mode: config.NotifyTimer, interval: 100 * time.Millisecond})
	return cases, unavailable, nil
}

func runLag(ctx context.Context, e *Env) ([]Row, error) {
	floor, err := e.floorP50(ctx)
	if err != nil {
		return nil, err
	}
	cases, rows, err := e.lagCases(ctx)
	if err != nil {
		return nil, err
	}
	// Measured in an order that needs the fewest agent restarts (the best
	// tier last: the next scenarios run with it), reported in case order.
	got := make([][]Row, len(cases))
	for _, i := range lagOrder(cases, e.BestTier()) {
		c := cases[i]
		if c.periodic {
			got[i], err = e.periodicRows(ctx, c)
		} else {
			var row Row
			row, err = e.lagOf(ctx, c)
			got[i] = []Row{row}
		}
		if err != nil {
			return append(rows, slices.Concat(got...)...), fmt.Errorf("%s: %w", c.name, err)
		}
		for j := range got[i] {
			againstFloor(&got[i][j], floor)
		}
	}
	return append(rows, slices.Concat(got...)...), nil
}

// lagOf measures one trigger mode with 10 small appends per second.
func (e *Env) lagOf(ctx context.Context, c lagCase) (Row, error) {
	err := e.Agents(ctx, c.mode, c.interval, false)
	if errors.Is(err, errRefused) {
		return Row{Case: c.name, Metric: "write-to-replica lag", Status: StatusUnavailable, Note: oneLine(err.Error())}, nil
	}
	if err != nil {
		return Row{}, err
	}
	rate, secs := 10.0, pick(e, 6.0, 1.0)
	settle := 2*c.interval + 30*time.Second
	sched := steady(rate)
	res, err := e.MeasureLag(ctx, e.appTarget(e.appends), sched, int(rate*secs), settle)
	if err != nil {
		return Row{}, err
	}
	row := lagRow(c.name, res)
	if c.note != "" {
		row.Note = joinNote(c.note, row.Note)
	}
	return row, nil
}

func joinNote(a, b string) string {
	if a == "" || b == "" {
		return a + b
	}
	return a + "; " + b
}

func runRates(ctx context.Context, e *Env) ([]Row, error) {
	floor, err := e.floorP50(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := e.probe(ctx); err != nil {
		return nil, err
	}
	tier := e.BestTier()
	if err := e.Agents(ctx, tier, time.Second, false); err != nil {
		return nil, err
	}
	var rows []Row
	for _, rate := range []float64{10, 1000} {
		secs := pick(e, 8.0, 2.0)
		if rate == 1000 {
			secs = pick(e, 5.0, 1.5)
		}
		res, err := e.MeasureLag(ctx, e.appTarget(e.appends), steady(rate), int(rate*secs), 30*time.Second)
		if err != nil {
			return rows, err
		}
		row := lagRow(fmt.Sprintf("%s@%.0f/s", tier, rate), res)
		againstFloor(&row, floor)
		rows = append(rows, row)
	}
	// The floor itself under the fast rate's writes: how much of the miss
	// at 1,000 writes/s is the file system's.
	const loadedRate = 1000
	loaded, err := e.FloorUnderWrites(ctx, loadedRate, pick(e, 20, 3))
	if err != nil {
		return rows, err
	}
	fr := dist("", fmt.Sprintf("floor while %d writes/s land", loadedRate), "floor", "ms", loaded)
	fr.Note = "as the floor, with a second writer appending 64 bytes at that rate to the floor's file; timed from the round's start"
	rows = append(rows, fr)
	if last := &rows[len(rows)-2]; last.Status == StatusOK {
		lp := Summarize(loaded).P50
		last.Note = joinNote(last.Note, fmt.Sprintf("against the floor under the same writes (p50 %.0f ms): p50 %.1fx, p99 %.1fx",
			lp, last.P50/lp, last.P99/lp))
	}
	return rows, nil
}
