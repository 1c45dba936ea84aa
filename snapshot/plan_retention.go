package snapshot

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// RetentionRule keeps, among flocker's snapshots whose age lies in this rule's
// period, one snapshot per Every. A rule's period runs from the previous rule's
// Period (exclusive; zero for the first rule) to its own Period (inclusive).
type RetentionRule struct {
	Period time.Duration
	// Every is the spacing of the survivors; 0 keeps every snapshot.
	Every time.Duration
}

// RetentionPolicy is an ordered list of rules, shortest period first.
// Snapshots older than the last rule's Period are destroyed (flocker's own
// only, and never the newest or a kept one: see PlanRetention).
type RetentionPolicy struct {
	Rules []RetentionRule
}

// DefaultRetention is "1m:all, 1h:1m, 1d:1h, 1w:1d": every snapshot of the last
// minute, one per minute for an hour, one per hour for a day, one per day for a
// week. Why: flocker snapshots on every burst of changes, so a busy dataset
// makes many per minute. The last minute is kept whole because it holds the
// snapshots in flight to the peer and the finest undo an operator can ask for;
// beyond it the resolution falls geometrically, so the count stays bounded at
// about 60+24+7 plus one minute's worth, however busy the dataset. Older history
// belongs to the operator's own snapshots and backups, which flocker never
// touches; every snapshot kept pins space and slows `zfs list`.
func DefaultRetention() RetentionPolicy {
	return RetentionPolicy{Rules: []RetentionRule{
		{Period: time.Minute, Every: 0},
		{Period: time.Hour, Every: time.Minute},
		{Period: 24 * time.Hour, Every: time.Hour},
		{Period: 7 * 24 * time.Hour, Every: 24 * time.Hour},
	}}
}

// Validate checks that the policy can be applied: at least one rule, periods
// positive and strictly increasing, each Every between 0 and its Period, and no
// rule keeping finer than a rule before it (older snapshots finer than newer
// ones is almost certainly a typo).
func (p RetentionPolicy) Validate() error {
	if len(p.Rules) == 0 {
		return errors.New("retention: no rules (want e.g. \"1m:all, 1h:1m\")")
	}
	for i, r := range p.Rules {
		where := fmt.Sprintf("retention rule %d %q", i+1, r.String())
		switch {
		case r.Period <= 0:
			return fmt.Errorf("%s: period must be positive", where)
		case r.Every < 0:
			return fmt.Errorf("%s: keep-every must not be negative", where)
		case r.Every > r.Period:
			return fmt.Errorf("%s: keep-every %s is longer than the period %s",
				where, formatRetentionDuration(r.Every), formatRetentionDuration(r.Period))
		}
		if i == 0 {
			continue
		}
		prev := p.Rules[i-1]
		if r.Period <= prev.Period {
			return fmt.Errorf("%s: period %s must be longer than the previous rule's %s",
				where, formatRetentionDuration(r.Period), formatRetentionDuration(prev.Period))
		}
		if r.Every < prev.Every {
			return fmt.Errorf("%s: keep-every %s is finer than the previous rule's %s",
				where, formatRetentionEvery(r.Every), formatRetentionEvery(prev.Every))
		}
	}
	return nil
}

// String formats the policy in the form ParseRetention reads.
func (p RetentionPolicy) String() string {
	parts := make([]string, len(p.Rules))
	for i, r := range p.Rules {
		parts[i] = r.String()
	}
	return strings.Join(parts, ", ")
}

// String formats the rule as PERIOD:EVERY, e.g. "1h:1m" or "1m:all".
func (r RetentionRule) String() string {
	return formatRetentionDuration(r.Period) + ":" + formatRetentionEvery(r.Every)
}

// ParseRetention reads the config form: comma-separated PERIOD:EVERY rules,
// shortest period first, e.g. "1m:all, 1h:1m, 1d:1h, 1w:1d". A duration is a
// positive whole number and one unit: s, m (minutes), h, d (24h) or w (7d).
// EVERY may be "all". The result is validated; errors name the bad rule.
func ParseRetention(s string) (RetentionPolicy, error) {
	if strings.TrimSpace(s) == "" {
		return RetentionPolicy{}, errors.New("retention: empty (want e.g. \"1m:all, 1h:1m\")")
	}
	var p RetentionPolicy
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		where := fmt.Sprintf("retention rule %d %q", i+1, part)
		if part == "" {
			return RetentionPolicy{}, fmt.Errorf("%s: empty rule", where)
		}
		periodText, everyText, ok := strings.Cut(part, ":")
		if !ok {
			return RetentionPolicy{}, fmt.Errorf("%s: want PERIOD:EVERY, e.g. 1h:1m", where)
		}
		period, err := parseRetentionDuration(strings.TrimSpace(periodText))
		if err != nil {
			return RetentionPolicy{}, fmt.Errorf("%s: period: %w", where, err)
		}
		var every time.Duration
		if everyText = strings.TrimSpace(everyText); everyText != "all" {
			if every, err = parseRetentionDuration(everyText); err != nil {
				return RetentionPolicy{}, fmt.Errorf("%s: keep-every: %w", where, err)
			}
		}
		p.Rules = append(p.Rules, RetentionRule{Period: period, Every: every})
	}
	if err := p.Validate(); err != nil {
		return RetentionPolicy{}, err
	}
	return p, nil
}

// retentionUnits are the duration units of the config form, largest first so
// that formatting picks the largest exact one.
var retentionUnits = []struct {
	suffix string
	unit   time.Duration
}{
	{"w", 7 * 24 * time.Hour},
	{"d", 24 * time.Hour},
	{"h", time.Hour},
	{"m", time.Minute},
	{"s", time.Second},
}

func parseRetentionDuration(s string) (time.Duration, error) {
	if s == "" {
		return 0, errors.New("empty duration")
	}
	for _, u := range retentionUnits {
		digits, ok := strings.CutSuffix(s, u.suffix)
		if !ok {
			continue
		}
		n, err := strconv.ParseInt(digits, 10, 64)
		if err != nil || n <= 0 || digits[0] == '+' {
			return 0, fmt.Errorf("%q: want a positive whole number before %q", s, u.suffix)
		}
		if n > int64(1<<63-1)/int64(u.unit) {
			return 0, fmt.Errorf("%q: too long", s)
		}
		return time.Duration(n) * u.unit, nil
	}
	return 0, fmt.Errorf("%q: want a number and a unit (s, m, h, d, w), e.g. 1h", s)
}

func formatRetentionDuration(d time.Duration) string {
	if d > 0 {
		for _, u := range retentionUnits {
			if d%u.unit == 0 {
				return strconv.FormatInt(int64(d/u.unit), 10) + u.suffix
			}
		}
	}
	return d.String() // not expressible in the config form; Validate or the caller says why
}

func formatRetentionEvery(d time.Duration) string {
	if d == 0 {
		return "all"
	}
	return formatRetentionDuration(d)
}

// PlanRetention returns which snapshots to destroy, oldest first. It never
// modifies snaps (one dataset's snapshots on one host, any order).
//
// Rules:
//   - Only flocker's own snapshots (Snapshot.Ours) are candidates; operator
//     snapshots are never destroyed and do not count toward any rule.
//   - Never destroyed: our newest snapshot (by CreateTXG, the pool's true
//     order, whatever the clock said), any snapshot whose GUID is in keep (the
//     caller passes the replication base, anything held, the peer's newest),
//     a snapshot with a zero Creation (unknown age is no reason to destroy),
//     and a snapshot created after now: a clock stepped back must not make
//     "future" snapshots look expired. A clock stepped forward prunes as if that
//     time had passed; the newest and kept snapshots still survive, so
//     replication continues incrementally.
//   - A snapshot's age (now - Creation) picks the first rule whose Period
//     covers it; older than every rule: destroyed.
//   - Within a rule, snapshots fall into buckets of Every aligned to the Unix
//     epoch (not to now), and the oldest of each bucket survives. Aligned
//     buckets never change membership as time passes, and new snapshots land
//     in newer buckets, so a survivor is chosen once and stays chosen: nothing
//     kept a minute ago is dropped for a newer one (no churn, and the snapshots
//     the peer already holds are the ones kept). With each rule's Every a
//     multiple of the previous one (as in the default), a bucket's oldest is
//     also the oldest of the coarser bucket it ages into. A bucket cut by a
//     rule's boundary keeps the oldest on each side until it ages through.
//   - An invalid policy (see Validate) destroys nothing.
//
// Re-planning on the survivors with the same now destroys nothing more.
func PlanRetention(snaps []Snapshot, now time.Time, p RetentionPolicy, keep ...uint64) (destroy []Snapshot) {
	if p.Validate() != nil {
		return nil
	}
	ours := make([]Snapshot, 0, len(snaps))
	for _, s := range snaps {
		if s.Ours() {
			ours = append(ours, s)
		}
	}
	if len(ours) == 0 {
		return nil
	}
	ours = sortedSnapshots(ours)

	kept := make(map[uint64]bool, len(keep)+1)
	for _, g := range keep {
		kept[g] = true
	}
	newest := len(ours) - 1

	type bucket struct {
		rule int
		slot int64
	}
	taken := make(map[bucket]bool)
	// Oldest first, so the first snapshot seen in a bucket is its survivor.
	for i, s := range ours {
		age := now.Sub(s.Creation)
		if s.Creation.IsZero() || age < 0 {
			continue
		}
		rule := -1
		for r, rr := range p.Rules {
			if age <= rr.Period {
				rule = r
				break
			}
		}
		survives := false
		switch {
		case rule < 0:
			// older than every rule
		case p.Rules[rule].Every == 0:
			survives = true
		default:
			b := bucket{rule, floorDiv(s.Creation.UnixNano(), int64(p.Rules[rule].Every))}
			if !taken[b] {
				taken[b] = true
				survives = true
			}
		}
		if survives || i == newest || kept[s.GUID] {
			continue
		}
		destroy = append(destroy, s)
	}
	return destroy
}

// floorDiv divides rounding toward negative infinity, so buckets before 1970
// are as wide as the others.
func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}
