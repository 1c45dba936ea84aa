package bench

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/agentpair"
)

// TestVMScenarioOnlyWhenNamed: the default run leaves the VM tier out
// (it boots guests); naming it selects it.
func TestVMScenarioOnlyWhenNamed(t *testing.T) {
	all, err := selectScenarios(nil)
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(all, func(s Scenario) bool { return s.VM }) {
		t.Errorf("the default run includes a VM scenario")
	}
	if !slices.ContainsFunc(all, func(s Scenario) bool { return s.Name == "lag" }) {
		t.Errorf("the default run lacks the host lag scenario")
	}
	named, err := selectScenarios([]string{"vm"})
	if err != nil || len(named) != 1 || !named[0].VM {
		t.Errorf("--scenario vm: %v, %v", named, err)
	}
}

// TestVMDeliveries: the guests' log records become deliveries on a's
// clock (b's receive time minus the skew), each with its snapshot's start
// and, where the snapshot was read, the highest write it holds; then
// attribute charges each write to the first receive holding it.
func TestVMDeliveries(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)
	rec := func(msg string, at time.Time, kv ...any) agentpair.Record {
		r := agentpair.Record{"msg": msg, "time": at.Format(time.RFC3339Nano), "dataset": "app"}
		for i := 0; i+1 < len(kv); i += 2 {
			r[kv[i].(string)] = kv[i+1]
		}
		return r
	}
	aRecs := []agentpair.Record{
		rec("snapshot taken", t0.Add(110*time.Millisecond), "snapshot", "s1", "took", float64(10*time.Millisecond)),
		rec("snapshot taken", t0.Add(310*time.Millisecond), "snapshot", "s2", "took", float64(10*time.Millisecond)),
		rec("snapshot taken", t0.Add(time.Second), "snapshot", "other", "took", float64(0), "dataset", "big"),
	}
	// b's clock runs 500 ms ahead of a's.
	skew := vmClock{skew: 500 * time.Millisecond}
	bRecs := []agentpair.Record{
		rec("received", t0.Add(700*time.Millisecond), "target", "s1"),
		rec("received", t0.Add(900*time.Millisecond), "target", "s2"),
		rec("received", t0.Add(950*time.Millisecond), "target", "x", "dataset", "big"),
	}
	starts, recv := vmLogEvents(aRecs, bRecs, "app")
	if len(starts) != 2 || !starts["s1"].Equal(t0.Add(100*time.Millisecond)) || len(recv) != 2 {
		t.Fatalf("starts %v, receives %v", starts, recv)
	}
	// s1 was read back (holds writes 0 and 1); s2's copy was gone.
	ds := vmDeliveries(starts, recv, []int{1, -1}, []error{nil, errors.New("pruned")}, skew)
	if !ds[0].Observed || ds[0].Highest != 1 || !ds[0].Received.Equal(t0.Add(200*time.Millisecond)) {
		t.Errorf("delivery of s1: %+v", ds[0])
	}
	if ds[1].Observed || !ds[1].Start.Equal(t0.Add(300*time.Millisecond)) || !ds[1].Received.Equal(t0.Add(400*time.Millisecond)) {
		t.Errorf("delivery of s2: %+v", ds[1])
	}
	done := []time.Time{t0.Add(50 * time.Millisecond), t0.Add(90 * time.Millisecond), t0.Add(150 * time.Millisecond)}
	got := attribute(done, ds)
	want := []time.Duration{150 * time.Millisecond, 110 * time.Millisecond, 250 * time.Millisecond}
	if !slices.Equal(got.Lags, want) || got.Bounded != 1 || got.Undelivered != 0 {
		t.Errorf("attribution: %+v, want lags %v with one bounded", got, want)
	}
}

func TestParseBusy(t *testing.T) {
	got, err := parseBusy("cpu  100 5 200 9000 40 10 20 0 0 0\n")
	if err != nil || got != 3.35 {
		t.Errorf("parseBusy = %v, %v; want 3.35 s (all but idle and iowait, at 100 per second)", got, err)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5 6 7 8", "cpu 1 2 x 4 5 6 7 8"} {
		if _, err := parseBusy(bad); err == nil {
			t.Errorf("parseBusy(%q): no error", bad)
		}
	}
}

func TestSendSize(t *testing.T) {
	out := "full\ttank/big@local1\t134395712\nsize\t134395712\n"
	if n := sendSize(out); n != 134395712 {
		t.Errorf("sendSize = %d", n)
	}
	if n := sendSize("nothing here\n"); n != 0 {
		t.Errorf("sendSize of no size line = %d", n)
	}
}

// TestVMStages: the stage medians come from one snapshot's records on
// both guests, b's time put on a's clock.
func TestVMStages(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 2, 0, 0, 0, time.UTC)
	at := func(d time.Duration) string { return t0.Add(d).Format(time.RFC3339Nano) }
	aRecs := []agentpair.Record{
		{"msg": "snapshot taken", "time": at(100 * time.Millisecond), "dataset": "app", "snapshot": "s1",
			"took": float64(40 * time.Millisecond), "change_age": float64(20 * time.Millisecond)},
		{"msg": "transfer started", "time": at(130 * time.Millisecond), "dataset": "app", "target": "s1"},
	}
	bRecs := []agentpair.Record{
		// b's clock is 1 s behind a's: 1.3 s on a's clock.
		{"msg": "received", "time": at(300 * time.Millisecond), "dataset": "app", "target": "s1", "took": float64(90 * time.Millisecond)},
	}
	got := vmStages(aRecs, bRecs, "app", vmClock{skew: -time.Second})
	want := "per received snapshot (1), medians: first change seen to snapshot start 20 ms, taking it (zfs snapshot, zfs get) 40 ms, taken to transfer start 30 ms, transfer start to b's received 1170 ms (b's receive 90 ms)"
	if got != want {
		t.Errorf("vmStages:\n got %s\nwant %s", got, want)
	}
	if got := vmStages(aRecs, nil, "app", vmClock{}); got != "" {
		t.Errorf("vmStages without receives: %q", got)
	}
	warn := agentpair.Record{"msg": "syncfs failed; reporting the change anyway", "level": "WARN", "err": "syncfs /tank/app: no answer within 10s"}
	debug := agentpair.Record{"msg": "syncfs failed; reporting the change anyway", "level": "DEBUG"}
	if got, want := vmFlushWarnings(append(aRecs, warn, debug, warn)), "alpha warned 2 times about syncfs (syncfs failed; reporting the change anyway: syncfs /tank/app: no answer within 10s)"; got != want {
		t.Errorf("vmFlushWarnings:\n got %s\nwant %s", got, want)
	}
	if got := vmFlushWarnings(aRecs); got != "" {
		t.Errorf("vmFlushWarnings without warnings: %q", got)
	}
}
