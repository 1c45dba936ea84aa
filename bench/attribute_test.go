package bench

import (
	"testing"
	"time"
)

func TestAttribute(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// Writes return at 0, 10, 20, 30 ms.
	done := []time.Time{at(0), at(10), at(20), at(30)}
	for _, tc := range []struct {
		name                           string
		ds                             []delivery
		want                           []int // lag ms per delivered write
		bnd, undelivered, inconsistent int
	}{
		{
			name: "observed",
			ds: []delivery{
				{Snapshot: "s2", Received: at(60), Observed: true, Highest: 3, Start: at(35)},
				{Snapshot: "s1", Received: at(25), Observed: true, Highest: 1, Start: at(15)},
			},
			want: []int{25, 15, 40, 30},
		},
		{
			name: "bounded: a write during the snapshot goes to the next one",
			ds: []delivery{
				{Snapshot: "s1", Start: at(10), Received: at(40)}, // write at 10 not before start
				{Snapshot: "s2", Start: at(50), Received: at(80)},
			},
			want: []int{40, 70, 60, 50}, bnd: 4,
		},
		{
			name: "undelivered tail",
			ds:   []delivery{{Snapshot: "s1", Received: at(25), Observed: true, Highest: 1}},
			want: []int{25, 15}, undelivered: 2,
		},
		{
			name: "observation contradicting the bound is counted",
			ds: []delivery{
				{Snapshot: "s1", Start: at(25), Received: at(40), Observed: true, Highest: 0},
				{Snapshot: "s2", Start: at(45), Received: at(70), Observed: true, Highest: 3},
			},
			want: []int{40, 60, 50, 40}, inconsistent: 1,
		},
		{
			name: "a delivery received before the write returned is not a lag",
			ds:   []delivery{{Snapshot: "s1", Received: at(15), Observed: true, Highest: 3}},
			want: []int{15, 5}, undelivered: 2, inconsistent: 2,
		},
	} {
		got := attribute(done, tc.ds)
		var ms []int
		for _, l := range got.Lags {
			ms = append(ms, int(l/time.Millisecond))
		}
		if len(ms) != len(tc.want) {
			t.Errorf("%s: lags %v, want %v", tc.name, ms, tc.want)
			continue
		}
		for i := range ms {
			if ms[i] != tc.want[i] {
				t.Errorf("%s: lags %v, want %v", tc.name, ms, tc.want)
				break
			}
		}
		if got.Bounded != tc.bnd || got.Undelivered != tc.undelivered || got.Inconsistent != tc.inconsistent {
			t.Errorf("%s: bounded %d undelivered %d inconsistent %d, want %d %d %d", tc.name,
				got.Bounded, got.Undelivered, got.Inconsistent, tc.bnd, tc.undelivered, tc.inconsistent)
		}
	}
}
