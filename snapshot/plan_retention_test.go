package snapshot

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseRetention(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []RetentionRule
		text string // String() of the result
	}{
		{"1m:all, 1h:1m, 1d:1h, 1w:1d", DefaultRetention().Rules, "1m:all, 1h:1m, 1d:1h, 1w:1d"},
		{"1m:all,1h:1m,1d:1h,1w:1d", DefaultRetention().Rules, "1m:all, 1h:1m, 1d:1h, 1w:1d"},
		{"  30s : all ,  90m : 15m ", []RetentionRule{{30 * time.Second, 0}, {90 * time.Minute, 15 * time.Minute}}, "30s:all, 90m:15m"},
		{"14d:7d", []RetentionRule{{14 * 24 * time.Hour, 7 * 24 * time.Hour}}, "2w:1w"},
		{"1h:1h", []RetentionRule{{time.Hour, time.Hour}}, "1h:1h"},
		{"120s:60s", []RetentionRule{{2 * time.Minute, time.Minute}}, "2m:1m"},
		{"1w:all", []RetentionRule{{7 * 24 * time.Hour, 0}}, "1w:all"},
	} {
		p, err := ParseRetention(tc.in)
		if err != nil {
			t.Fatalf("ParseRetention(%q): %v", tc.in, err)
		}
		if !slices.Equal(p.Rules, tc.want) {
			t.Fatalf("ParseRetention(%q) = %v, want %v", tc.in, p.Rules, tc.want)
		}
		if p.String() != tc.text {
			t.Fatalf("ParseRetention(%q).String() = %q, want %q", tc.in, p.String(), tc.text)
		}
		again, err := ParseRetention(p.String())
		if err != nil || !slices.Equal(again.Rules, p.Rules) {
			t.Fatalf("round trip of %q: %v, %v", p.String(), again.Rules, err)
		}
	}
	if got := DefaultRetention().String(); got != "1m:all, 1h:1m, 1d:1h, 1w:1d" {
		t.Fatalf("default policy formats as %q", got)
	}
	if err := DefaultRetention().Validate(); err != nil {
		t.Fatalf("default policy invalid: %v", err)
	}
}

func TestParseRetentionErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "retention: empty"},
		{"   ", "retention: empty"},
		{"1m", `retention rule 1 "1m": want PERIOD:EVERY`},
		{"1m:all,", `retention rule 2 "": empty rule`},
		{"1m:all,,1h:1m", `retention rule 2 "": empty rule`},
		{"1m:all, 1x:1m", `retention rule 2 "1x:1m": period: "1x": want a number and a unit`},
		{"1m:all, 1h:every", `retention rule 2 "1h:every": keep-every: "every": want a number and a unit`},
		{"1h:", `retention rule 1 "1h:": keep-every: empty duration`},
		{":1m", `retention rule 1 ":1m": period: empty duration`},
		{"0m:all", `retention rule 1 "0m:all": period: "0m": want a positive whole number before "m"`},
		{"-1h:all", `period: "-1h": want a positive whole number`},
		{"+1h:all", `period: "+1h": want a positive whole number`},
		{"1.5h:1m", `period: "1.5h": want a positive whole number`},
		{"h:1m", `period: "h": want a positive whole number`},
		{"1ms:all", `period: "1ms": want a positive whole number before "s"`},
		{"99999999999w:1d", `period: "99999999999w": too long`},
		{"1h:2h", `retention rule 1 "1h:2h": keep-every 2h is longer than the period 1h`},
		{"1h:1m, 1m:all", `retention rule 2 "1m:all": period 1m must be longer than the previous rule's 1h`},
		{"1h:1m, 1h:1h", `retention rule 2 "1h:1h": period 1h must be longer`},
		{"1h:1m, 1d:all", `retention rule 2 "1d:all": keep-every all is finer than the previous rule's 1m`},
		{"1h:10m, 1d:5m", `retention rule 2 "1d:5m": keep-every 5m is finer than the previous rule's 10m`},
	} {
		_, err := ParseRetention(tc.in)
		if err == nil {
			t.Errorf("ParseRetention(%q) accepted", tc.in)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseRetention(%q):\n got  %v\n want %s", tc.in, err, tc.want)
		}
	}
}

func TestRetentionValidate(t *testing.T) {
	for _, tc := range []struct {
		p    RetentionPolicy
		want string
	}{
		{RetentionPolicy{}, "retention: no rules"},
		{RetentionPolicy{Rules: []RetentionRule{{Period: 0}}}, "period must be positive"},
		{RetentionPolicy{Rules: []RetentionRule{{Period: time.Hour, Every: -time.Minute}}}, "keep-every must not be negative"},
	} {
		if err := tc.p.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%v) = %v, want %q", tc.p.Rules, err, tc.want)
		}
	}
}

// retentionNow is minute-aligned plus 30 s, so that ages in the tables map to
// known wall-clock buckets.
var retentionNow = time.Date(2026, 11, 21, 12, 0, 30, 0, time.UTC)

// aged is one of flocker's snapshots created age before retentionNow.
func aged(seq, txg uint64, age time.Duration) Snapshot {
	return Snapshot{
		Name:      fmt.Sprintf("tank/app@%s", FlockerName{Epoch: 1, Seq: seq}),
		GUID:      1000 + seq,
		CreateTXG: txg,
		Creation:  retentionNow.Add(-age),
	}
}

func operator(name string, txg uint64, age time.Duration) Snapshot {
	return Snapshot{Name: "tank/app@" + name, GUID: 5000 + txg, CreateTXG: txg, Creation: retentionNow.Add(-age)}
}

func shortNames(s []Snapshot) string {
	names := make([]string, len(s))
	for i, x := range s {
		names[i] = x.ShortName()
	}
	return strings.Join(names, " ")
}

func TestPlanRetention(t *testing.T) {
	const (
		sec  = time.Second
		min  = time.Minute
		hour = time.Hour
		day  = 24 * time.Hour
	)
	for _, tc := range []struct {
		name  string
		snaps []Snapshot
		now   time.Time
		keep  []uint64
		want  string // short names destroyed, oldest first
	}{
		{"empty", nil, retentionNow, nil, ""},
		{"everything in the last minute survives",
			[]Snapshot{aged(1, 1, 59*sec), aged(2, 2, 30*sec), aged(3, 3, 1*sec), aged(4, 4, 0)}, retentionNow, nil, ""},
		{"one per minute: the oldest of the minute survives",
			// 11:55:05, 11:55:25, 11:55:40 share the minute 11:55; 11:56:10 is alone in its minute.
			[]Snapshot{aged(1, 1, 5*min+25*sec), aged(2, 2, 5*min+5*sec), aged(3, 3, 4*min+50*sec), aged(4, 4, 4*min+20*sec), aged(5, 5, sec)},
			retentionNow, nil, "flocker-1-2 flocker-1-3"},
		{"one per hour: the oldest of the hour survives",
			// 09:10:30, 09:40:30, 09:59:30 share the hour 09; 08:59:30 is in hour 08.
			[]Snapshot{aged(1, 1, 3*hour+60*sec), aged(2, 2, 2*hour+50*min), aged(3, 3, 2*hour+20*min), aged(4, 4, 2*hour+60*sec), aged(5, 5, sec)},
			retentionNow, nil, "flocker-1-3 flocker-1-4"},
		{"one per day: the oldest of the day survives",
			[]Snapshot{aged(1, 1, 3*day+11*hour), aged(2, 2, 3*day+2*hour), aged(3, 3, 2*day+11*hour), aged(4, 4, sec)},
			retentionNow, nil, "flocker-1-2"},
		{"older than a week is destroyed",
			[]Snapshot{aged(1, 1, 8*day), aged(2, 2, 7*day+sec), aged(3, 3, 7*day), aged(4, 4, sec)},
			retentionNow, nil, "flocker-1-1 flocker-1-2"},
		{"the newest survives even past every rule",
			[]Snapshot{aged(1, 1, 30*day), aged(2, 2, 20*day)}, retentionNow, nil, "flocker-1-1"},
		{"keep GUIDs survive: expired, and second in a bucket",
			[]Snapshot{aged(1, 1, 30*day), aged(2, 2, 20*day), aged(3, 3, 5*min+5*sec), aged(4, 4, 5*min+3*sec), aged(5, 5, sec)},
			retentionNow, []uint64{1001, 1004}, "flocker-1-2"},
		{"operator snapshots are never touched and hold no bucket",
			[]Snapshot{operator("before-upgrade", 1, 90*day), operator("manual", 2, 5*min+29*sec),
				aged(3, 3, 5*min+25*sec), aged(4, 4, 5*min+5*sec), operator("flocker-01-1", 5, 30*day), aged(6, 6, sec)},
			retentionNow, nil, "flocker-1-4"},
		{"operator snapshot newest: our newest still survives",
			[]Snapshot{aged(1, 1, 30*day), aged(2, 2, 20*day), operator("manual", 3, sec)}, retentionNow, nil, "flocker-1-1"},
		{"newest by txg, not by the clock", // the clock was 9 days behind when txg 2 was made
			[]Snapshot{aged(1, 1, hour), aged(2, 2, 9*day)}, retentionNow, nil, ""},
		{"clock stepped back: snapshots from the future are never destroyed",
			// At retentionNow the second of the 11:55 minute would go; five days
			// earlier all of them lie in the future.
			[]Snapshot{aged(1, 1, 4*day), aged(2, 2, 5*min+5*sec), aged(3, 3, 5*min+3*sec), aged(4, 4, 3*day), aged(5, 5, sec)},
			retentionNow.Add(-5 * day), nil, ""},
		{"clock stepped back part way: past ones pruned, future ones kept",
			[]Snapshot{aged(1, 1, 30*day), aged(2, 2, 20*day), aged(3, 3, 30*min+5*sec), aged(4, 4, 30*min+3*sec), aged(5, 5, sec)},
			retentionNow.Add(-hour), nil, "flocker-1-1 flocker-1-2"},
		{"clock stepped forward a year: all of ours but the newest and kept go",
			[]Snapshot{aged(1, 1, 30*day), operator("manual", 2, 20*day), aged(3, 3, 2*hour), aged(4, 4, 5*min), aged(5, 5, sec)},
			retentionNow.Add(365 * day), []uint64{1003}, "flocker-1-1 flocker-1-4"},
		{"unknown creation time is never a reason to destroy",
			[]Snapshot{{Name: "tank/app@flocker-1-1", GUID: 1, CreateTXG: 1}, aged(2, 2, 30*day), aged(3, 3, sec)},
			retentionNow, nil, "flocker-1-2"},
		{"unsorted input, result oldest first",
			[]Snapshot{aged(5, 5, sec), aged(2, 2, 20*day), aged(4, 4, 5*min+3*sec), aged(1, 1, 30*day), aged(3, 3, 5*min+5*sec)},
			retentionNow, nil, "flocker-1-1 flocker-1-2 flocker-1-4"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := slices.Clone(tc.snaps)
			destroy := PlanRetention(tc.snaps, tc.now, DefaultRetention(), tc.keep...)
			if got := shortNames(destroy); got != tc.want {
				t.Fatalf("destroyed %q, want %q", got, tc.want)
			}
			if !slices.Equal(in, tc.snaps) {
				t.Fatal("planner reordered the caller's slice")
			}
		})
	}
}

func TestPlanRetentionInvalidPolicyDestroysNothing(t *testing.T) {
	snaps := []Snapshot{aged(1, 1, 30*24*time.Hour), aged(2, 2, time.Second)}
	for _, p := range []RetentionPolicy{{}, {Rules: []RetentionRule{{Period: time.Hour, Every: 2 * time.Hour}}}} {
		if d := PlanRetention(snaps, retentionNow, p); len(d) != 0 {
			t.Fatalf("policy %v destroyed %s", p.Rules, shortNames(d))
		}
	}
	// The same snapshots under a valid policy do lose the old one, so the
	// check above is not vacuous.
	if d := PlanRetention(snaps, retentionNow, DefaultRetention()); shortNames(d) != "flocker-1-1" {
		t.Fatalf("default policy destroyed %q", shortNames(d))
	}
}

// TestPlanRetentionFutureUnderThinningPolicy: with a first rule that thins
// out (not "all"), snapshots from the future would share buckets; they are
// still never destroyed because of a clock stepped back.
func TestPlanRetentionFutureUnderThinningPolicy(t *testing.T) {
	p, err := ParseRetention("1m:1m, 1h:10m")
	if err != nil {
		t.Fatal(err)
	}
	snaps := []Snapshot{aged(1, 1, 5*time.Minute+5*time.Second), aged(2, 2, 5*time.Minute+3*time.Second), aged(3, 3, time.Second)}
	if d := PlanRetention(snaps, retentionNow.Add(-time.Hour), p); len(d) != 0 {
		t.Fatalf("clock an hour back: destroyed %s", shortNames(d))
	}
	// Control: at the true time the second of the 11:55 minute is thinned out.
	if d := PlanRetention(snaps, retentionNow, p); shortNames(d) != "flocker-1-2" {
		t.Fatalf("at the true time destroyed %q, want flocker-1-2", shortNames(d))
	}
}

// TestPlanRetentionOverTime runs an agent's life: a snapshot every 13 s for
// nine days, pruned after each one with the default policy, as the agent
// would. At the end every minute of the last hour, every hour of the last day
// and every day of the last week (away from the rule boundaries) holds exactly
// one snapshot, and it is the first one ever taken in that bucket: survivors
// are chosen once and stay chosen.
func TestPlanRetentionOverTime(t *testing.T) {
	const step = 13 * time.Second
	start := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	end := start.Add(9 * 24 * time.Hour)
	p := DefaultRetention()
	var live []Snapshot
	first := map[string]time.Time{} // bucket -> creation of the first snapshot taken in it
	var seq uint64
	var now time.Time
	for now = start; now.Before(end); now = now.Add(step) {
		seq++
		s := Snapshot{Name: fmt.Sprintf("tank/app@flocker-1-%d", seq), GUID: seq, CreateTXG: seq, Creation: now}
		live = append(live, s)
		for _, unit := range []time.Duration{time.Minute, time.Hour, 24 * time.Hour} {
			k := fmt.Sprint(unit, now.Truncate(unit))
			if _, ok := first[k]; !ok {
				first[k] = now
			}
		}
		destroy := PlanRetention(live, now, p)
		live = slices.DeleteFunc(live, func(s Snapshot) bool { return slices.Contains(destroy, s) })
	}
	now = now.Add(-step) // the last planning time

	if again := PlanRetention(live, now, p); len(again) != 0 {
		t.Fatalf("re-planning destroyed %d more", len(again))
	}
	if len(live) > 5+60+24+7+3 {
		t.Fatalf("%d snapshots survive, want about 5+60+24+7", len(live))
	}
	check := func(unit time.Duration, from, to time.Duration) {
		t.Helper()
		for age := from; age <= to; age += unit {
			b := now.Add(-age).Truncate(unit)
			var in []Snapshot
			for _, s := range live {
				if !s.Creation.Before(b) && s.Creation.Before(b.Add(unit)) {
					in = append(in, s)
				}
			}
			if len(in) != 1 {
				t.Fatalf("%s bucket %s holds %d snapshots (%s), want 1", unit, b, len(in), shortNames(in))
			}
			if want := first[fmt.Sprint(unit, b)]; !in[0].Creation.Equal(want) {
				t.Fatalf("%s bucket %s kept the snapshot of %s, want the first one, of %s", unit, b, in[0].Creation, want)
			}
		}
	}
	check(time.Minute, 2*time.Minute, 58*time.Minute)
	check(time.Hour, 2*time.Hour, 22*time.Hour)
	check(24*time.Hour, 2*24*time.Hour, 6*24*time.Hour)
	for _, s := range live {
		if now.Sub(s.Creation) > 7*24*time.Hour {
			t.Fatalf("%s from %s survived past the last rule", s.Name, s.Creation)
		}
	}
	var lastMinute int
	for _, s := range live {
		if now.Sub(s.Creation) <= time.Minute {
			lastMinute++
		}
	}
	if want := int(time.Minute/step) + 1; lastMinute != want {
		t.Fatalf("%d snapshots from the last minute survive, want every one (%d)", lastMinute, want)
	}
}

// TestPlanRetentionRandom checks the promises over random inputs and policies:
// only ours are destroyed, never our newest nor a kept GUID nor a snapshot from
// the future, every destroyed snapshot comes from the input once, and planning
// again on the survivors destroys nothing more.
func TestPlanRetentionRandom(t *testing.T) {
	policies := []RetentionPolicy{DefaultRetention()}
	for _, s := range []string{"1m:1m", "30s:all, 5m:1m, 1h:10m", "1h:all, 1d:1h, 2w:1w", "10s:5s, 1m:20s, 10m:1m"} {
		p, err := ParseRetention(s)
		if err != nil {
			t.Fatal(err)
		}
		policies = append(policies, p)
	}
	var destroyedTotal int
	for seed := uint64(0); seed < 2000; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		p := policies[rng.IntN(len(policies))]
		now := retentionNow
		var snaps []Snapshot
		n := rng.IntN(60)
		for i := range n {
			// Ages spread from the future to beyond two weeks; txg order is not
			// creation order when the clock jumped.
			age := time.Duration(rng.Int64N(int64(16*24*time.Hour))) - 24*time.Hour
			if rng.IntN(4) == 0 {
				age = time.Duration(rng.Int64N(int64(2 * time.Hour)))
			}
			name := fmt.Sprintf("tank/app@flocker-1-%d", i)
			if rng.IntN(5) == 0 {
				name = fmt.Sprintf("tank/app@manual-%d", i)
			}
			snaps = append(snaps, Snapshot{Name: name, GUID: uint64(i + 1), CreateTXG: rng.Uint64N(1000), Creation: now.Add(-age)})
		}
		var keep []uint64
		for range rng.IntN(4) {
			keep = append(keep, uint64(rng.IntN(n+1)+1))
		}
		rng.Shuffle(len(snaps), func(i, j int) { snaps[i], snaps[j] = snaps[j], snaps[i] })

		destroy := PlanRetention(snaps, now, p, keep...)
		destroyedTotal += len(destroy)
		ctx := fmt.Sprintf("seed %d policy %s", seed, p)
		var newestOurs Snapshot
		for _, s := range sortedSnapshots(snaps) {
			if s.Ours() {
				newestOurs = s
			}
		}
		seen := map[uint64]bool{}
		for _, d := range destroy {
			switch {
			case !d.Ours():
				t.Fatalf("%s: destroyed operator snapshot %s", ctx, d.Name)
			case d.GUID == newestOurs.GUID:
				t.Fatalf("%s: destroyed our newest %s", ctx, d.Name)
			case slices.Contains(keep, d.GUID):
				t.Fatalf("%s: destroyed kept %s", ctx, d.Name)
			case d.Creation.After(now):
				t.Fatalf("%s: destroyed %s from the future", ctx, d.Name)
			case seen[d.GUID] || !slices.Contains(snaps, d):
				t.Fatalf("%s: destroyed %s twice or not from the input", ctx, d.Name)
			}
			seen[d.GUID] = true
		}
		survivors := slices.DeleteFunc(slices.Clone(snaps), func(s Snapshot) bool { return seen[s.GUID] })
		if again := PlanRetention(survivors, now, p, keep...); len(again) != 0 {
			t.Fatalf("%s: re-planning on the survivors destroyed %s", ctx, shortNames(again))
		}
	}
	if destroyedTotal == 0 {
		t.Fatal("no random input destroyed anything: the checks above proved nothing")
	}
}
