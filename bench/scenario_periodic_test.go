package bench

import (
	"slices"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent/config"
)

// The derived 60 s distribution is the period's even spread of waits plus
// the measured snapshot-to-replica times: its median near half the period
// plus a typical cost, its extremes the period's ends plus the costs.
func TestDerivePeriodic(t *testing.T) {
	costs := []time.Duration{300 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond}
	lags := derivePeriodic(time.Minute, 10, costs)
	if len(lags) != 600 {
		t.Fatalf("%d lags, want 600 (10/s over 60 s)", len(lags))
	}
	if got, want := slices.Min(lags), 50*time.Millisecond+100*time.Millisecond; got < want {
		t.Errorf("shortest lag %v, want at least %v (last write's wait plus the cheapest send)", got, want)
	}
	if got, want := slices.Max(lags), time.Minute-50*time.Millisecond+300*time.Millisecond; got > want {
		t.Errorf("longest lag %v, want at most %v", got, want)
	}
	s := Summarize(millis(lags))
	if s.P50 < 30000 || s.P50 > 30400 {
		t.Errorf("p50 %.0f ms, want 30 s plus a send time", s.P50)
	}
	// Log order does not change the result.
	again := derivePeriodic(time.Minute, 10, []time.Duration{costs[2], costs[0], costs[1]})
	if !slices.Equal(lags, again) {
		t.Error("the result depends on the order of the costs")
	}
	if derivePeriodic(time.Minute, 10, nil) != nil {
		t.Error("lags derived from no costs")
	}
}

// Only snapshots begun after the run's first write, with both ends logged,
// give a snapshot-to-replica time.
func TestSnapshotToReplica(t *testing.T) {
	t0 := time.Unix(1000, 0)
	ds := []delivery{
		{Snapshot: "before", Start: t0.Add(-time.Second), Received: t0.Add(100 * time.Millisecond)},
		{Snapshot: "unknown start", Received: t0.Add(2 * time.Second)},
		{Snapshot: "a", Start: t0.Add(2 * time.Second), Received: t0.Add(2*time.Second + 80*time.Millisecond)},
		{Snapshot: "b", Start: t0.Add(4 * time.Second), Received: t0.Add(4*time.Second + 120*time.Millisecond)},
		{Snapshot: "clock went back", Start: t0.Add(6 * time.Second), Received: t0.Add(5 * time.Second)},
	}
	got := snapshotToReplica(ds, t0)
	if want := []time.Duration{80 * time.Millisecond, 120 * time.Millisecond}; !slices.Equal(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// The lag cases are measured timer first and the best tier last, each case
// once.
func TestLagOrder(t *testing.T) {
	cases := []lagCase{{mode: config.NotifyTracepoint}, {mode: config.NotifyBlock}, {mode: config.NotifyFanotify},
		{mode: config.NotifyTimer}, {mode: config.NotifyTimer, periodic: true}}
	order := lagOrder(cases, config.NotifyTracepoint)
	var modes []string
	for _, i := range order {
		modes = append(modes, cases[i].mode)
	}
	want := []string{config.NotifyTimer, config.NotifyTimer, config.NotifyFanotify, config.NotifyBlock, config.NotifyTracepoint}
	if !slices.Equal(modes, want) {
		t.Fatalf("order %v, want %v", modes, want)
	}
	sorted := slices.Sorted(slices.Values(order))
	if !slices.Equal(sorted, []int{0, 1, 2, 3, 4}) {
		t.Fatalf("order %v is not a permutation", order)
	}
}
