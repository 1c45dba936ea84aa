package bench

import (
	"context"
	"time"
)

func init() {
	register(Scenario{Name: "workloads", Order: 40, Run: runWorkloads,
		Summary: "lag with the best tier under small appends, random 4 KiB overwrites, bursts, an mmap writer, many small files, 1,000 writes/s"})
}

func runWorkloads(ctx context.Context, e *Env) ([]Row, error) {
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
	for _, w := range e.workloads() {
		res, err := e.MeasureLag(ctx, e.appTarget(w.w), w.sched, w.count, pick(e, 10*time.Second, 6*time.Second))
		if err != nil {
			return rows, err
		}
		row := lagRow(w.name, res)
		row.Note = joinNote(w.desc+", "+tier+" tier", row.Note)
		againstFloor(&row, floor)
		rows = append(rows, row)
	}
	return rows, nil
}
