package agent

import (
	"testing"
	"time"

	"github.com/flockerha/flocker/snapshot"
)

func TestTrigger(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// A step is one call: a change, a snapshot taken, or a decision with
	// whether a snapshot waits for a transfer.
	type step struct {
		change, taken, decide bool
		ms                    int
		waiting               bool
		wantTake              bool
		wantWake              int // ms; -1: no wake time
	}
	change := func(ms int) step { return step{change: true, ms: ms} }
	taken := func(ms int) step { return step{taken: true, ms: ms} }
	decide := func(ms int, waiting, take bool, wake int) step {
		return step{decide: true, ms: ms, waiting: waiting, wantTake: take, wantWake: wake}
	}
	for _, tc := range []struct {
		name  string
		min   time.Duration
		steps []step
	}{
		{"clean: nothing to do", 0, []step{decide(0, false, false, -1)}},
		{"a change is snapshotted at once", 0, []step{change(5), decide(5, false, true, -1)}},
		{"a taken snapshot clears the change", 0, []step{change(5), decide(5, false, true, -1), taken(5), decide(6, false, false, -1)}},
		{"a change after the snapshot is a new one", 0, []step{change(5), taken(6), change(7), decide(7, false, true, -1)}},
		{"a waiting snapshot holds later changes back", 0, []step{
			change(5), taken(5), change(6), decide(6, true, false, -1), change(8), decide(9, true, false, -1),
			// the transfer ended: the waiting one is now in flight, nothing waits
			decide(20, false, true, -1),
		}},
		{"a burst of changes is one snapshot", 0, []step{
			change(1), change(2), change(3), decide(3, false, true, -1), taken(3), decide(4, false, false, -1),
		}},
		{"min interval defers the next snapshot", 100 * time.Millisecond, []step{
			change(0), decide(0, false, true, -1), taken(0),
			change(30), decide(30, false, false, 100), decide(99, false, false, 100), decide(100, false, true, -1),
		}},
		{"min interval does not delay the first snapshot", time.Second, []step{change(0), decide(0, false, true, -1)}},
		{"min interval with a waiting snapshot: wait for the transfer", 100 * time.Millisecond, []step{
			change(0), taken(0), change(10), decide(200, true, false, -1), decide(201, false, true, -1),
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := Trigger{MinInterval: tc.min}
			for i, s := range tc.steps {
				switch {
				case s.change:
					g.Change(at(s.ms))
				case s.taken:
					g.Taken(at(s.ms))
				case s.decide:
					take, wake := g.Decide(at(s.ms), s.waiting)
					want := time.Time{}
					if s.wantWake >= 0 {
						want = at(s.wantWake)
					}
					if take != s.wantTake || !wake.Equal(want) {
						t.Errorf("step %d: Decide(%dms, waiting=%v) = %v, %v; want %v, %v",
							i, s.ms, s.waiting, take, wake, s.wantTake, want)
					}
				}
			}
		})
	}
}

func TestTriggerDirtySince(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var g Trigger
	if d, _ := g.Dirty(); d {
		t.Fatal("new trigger is dirty")
	}
	g.Change(t0)
	g.Change(t0.Add(time.Second))
	if d, since := g.Dirty(); !d || !since.Equal(t0) {
		t.Errorf("Dirty() = %v, %v; want true since the first change %v", d, since, t0)
	}
	g.Taken(t0.Add(2 * time.Second))
	if d, since := g.Dirty(); d || !since.IsZero() {
		t.Errorf("after Taken: Dirty() = %v, %v", d, since)
	}
}

func TestNextSeq(t *testing.T) {
	snap := func(short string) snapshot.Snapshot { return snapshot.Snapshot{Name: "tank/app@" + short} }
	for _, tc := range []struct {
		name  string
		snaps []snapshot.Snapshot
		epoch uint64
		want  uint64
	}{
		{"none", nil, 3, 1},
		{"continues the epoch", []snapshot.Snapshot{snap("flocker-3-1"), snap("flocker-3-41"), snap("flocker-3-7")}, 3, 42},
		{"other epochs do not count", []snapshot.Snapshot{snap("flocker-2-90"), snap("flocker-4-5"), snap("flocker-3-2")}, 3, 3},
		{"a new epoch starts at 1", []snapshot.Snapshot{snap("flocker-2-90")}, 3, 1},
		{"operator snapshots do not count", []snapshot.Snapshot{snap("flocker-3-09"), snap("flocker-3-5-manual"), snap("before-upgrade")}, 3, 1},
	} {
		if got := nextSeq(tc.snaps, tc.epoch); got != tc.want {
			t.Errorf("%s: nextSeq = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestRetryDelay(t *testing.T) {
	for _, tc := range []struct {
		attempt int
		r       float64
		want    time.Duration
	}{
		{0, 0.5, 250 * time.Millisecond},
		{1, 0.5, 250 * time.Millisecond},
		{2, 0.5, 500 * time.Millisecond},
		{3, 0.5, time.Second},
		{7, 0.5, 10 * time.Second}, // 16 s capped
		{1000, 0.5, 10 * time.Second},
		{1, 0, 200 * time.Millisecond},
		{1, 0.999999, 300 * time.Millisecond},
	} {
		got := retryDelay(tc.attempt, tc.r)
		if d := got - tc.want; d < -time.Millisecond || d > time.Millisecond {
			t.Errorf("retryDelay(%d, %v) = %v, want %v", tc.attempt, tc.r, got, tc.want)
		}
	}
}
