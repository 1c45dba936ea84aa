//go:build linux

package changes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent"
)

// Expectations say what one tier reports for each operation on one kind of
// filesystem. What a tier misses is asserted like what it catches, so a
// change of behaviour in either direction fails the matrix.
type Expectations struct {
	Tier string // every Change must carry it
	// Deadline bounds the wait for a reported change: generous, since
	// zfs-fuse and the TCG guests are slow and the machine is shared.
	Deadline time.Duration
	// Quiet is how long without a Change counts as quiet, and how long a
	// missed or negative operation is watched for a Change that must not come.
	Quiet time.Duration
	// Missed names the positive operations this tier does not report, each
	// with the reason (its documented blind spots).
	Missed map[string]string
	// Spurious names negative operations this tier reports anyway, each
	// with the reason (the timer counts the atime a read writes).
	Spurious map[string]string
	// Unsupported names the operations this filesystem refuses, each with
	// the reason; any other refusal, or a listed operation that runs, fails.
	Unsupported map[string]string
	// Periodic: the tier reports at every interval whether or not anything
	// changed (the timer where ZFS cannot say what was written). It is never
	// quiet, so each operation runs just after one report and the next must
	// follow; negatives are reported too, which the matrix asserts.
	Periodic bool
	// Hook, when set, judges the hook named by each reported Change.
	Hook func(op Op, hook string) error
	// AfterChange runs after each Change the matrix consumes, as the agent's
	// snapshot would (for the timer, a snapshot resets `written`).
	AfterChange func(ctx context.Context, c agent.Change) error
}

// Outcome is what the matrix expects of one operation.
type Outcome string

const (
	Reported Outcome = "reported" // a Change within Deadline (one, unless Compound)
	Missed   Outcome = "missed"   // a blind spot: no Change within Quiet
	Silent   Outcome = "silent"   // a negative: no Change within Quiet
)

// Expect is the outcome ex sets for op.
func (ex Expectations) Expect(op Op) Outcome {
	switch {
	case ex.Periodic, op.Negative && ex.Spurious[op.Name] != "":
		return Reported
	case op.Negative:
		return Silent
	case ex.Missed[op.Name] != "":
		return Missed
	}
	return Reported
}

// RunMatrix runs every operation against notifier n watching target, each as
// a subtest: prepare, wait until n is quiet (which also absorbs what closing
// the previous operation changed), run, and check the
// outcome ex expects. A reported positive operation runs a second time to
// prove that the notifier re-armed after its first report. Unknown names in
// ex.Missed, ex.Spurious or ex.Unsupported fail the test, so the lists stay
// true.
func RunMatrix(t *testing.T, n agent.Notifier, target agent.Target, ops []Op, ex Expectations) {
	t.Helper()
	if ex.Deadline <= 0 || ex.Quiet <= 0 {
		t.Fatalf("matrix: Deadline %v and Quiet %v must be positive", ex.Deadline, ex.Quiet)
	}
	names := Names(ops)
	for _, m := range []map[string]string{ex.Missed, ex.Spurious, ex.Unsupported} {
		for name := range m {
			if !slices.Contains(names, name) {
				t.Fatalf("matrix: expectations name %q, which is not among the operations", name)
			}
		}
	}
	m := &matrix{t: t, n: n, target: target, ex: ex}
	var summary []string
	for _, op := range ops {
		outcome := ex.Expect(op)
		t.Run(op.Name, func(t *testing.T) {
			m.t = t
			got := "FAILED"
			defer func() { summary = append(summary, fmt.Sprintf("%-28s %s", op.Name, got)) }()
			got = m.run(op, outcome)
		})
		m.t = t
	}
	t.Logf("matrix for tier %s on %s:\n%s", ex.Tier, target.Mountpoint, strings.Join(summary, "\n"))
}

type matrix struct {
	t      *testing.T
	n      agent.Notifier
	target agent.Target
	ex     Expectations
	// afterDone is when the last AfterChange (the snapshot) finished.
	afterDone time.Time
}

// run checks one operation and returns what happened, for the summary.
func (m *matrix) run(op Op, outcome Outcome) string {
	t := m.t
	err := op.Supported()
	why, listed := m.ex.Unsupported[op.Name]
	switch {
	case err != nil && !errors.Is(err, ErrUnsupported):
		t.Fatalf("asking whether %s is supported: %v", op.Name, err)
	case err != nil && !listed:
		t.Fatalf("%s is refused here (%v) but the expectations say it runs", op.Name, err)
	case err != nil:
		t.Logf("not supported here, as expected (%s): %v", why, err)
		return "unsupported: " + why
	case listed:
		t.Fatalf("%s runs here but the expectations say it is unsupported (%s)", op.Name, why)
	}

	rounds := 1
	if outcome == Reported && !op.Negative {
		rounds = 2 // the second proves the notifier re-armed
	}
	var hooks []string
	for round := 1; round <= rounds; round++ {
		hook, ok := m.round(op, outcome, round)
		if !ok {
			return "FAILED"
		}
		hooks = append(hooks, hook)
	}
	switch {
	case outcome == Reported && op.Negative && !m.ex.Periodic:
		return "reported although nothing changed (as documented: " + m.ex.Spurious[op.Name] + ")"
	case outcome == Reported:
		return "reported by " + strings.Join(hooks, ", ")
	case outcome == Missed:
		return "missed (as documented: " + m.ex.Missed[op.Name] + ")"
	}

	return "silent"
}

// round runs op once and checks outcome; it returns the reporting hook.
func (m *matrix) round(op Op, outcome Outcome, round int) (string, bool) {
	t := m.t
	step, err := op.Prepare()
	if err != nil {
		t.Fatalf("round %d: preparing %s: %v", round, op.Name, err)
	}
	defer func() {
		if err := step.close(); err != nil {
			t.Errorf("round %d: closing %s: %v", round, op.Name, err)
		}
	}()
	if m.ex.Periodic {
		// A report marks an interval's start; the op runs inside the next.
		if _, ok := m.next(m.ex.Deadline); !ok {
			t.Fatalf("round %d: periodic tier gave no report within %v", round, m.ex.Deadline)
		}
	} else {
		m.settle("after preparing")
	}

	start := time.Now()
	if err := step.Run(); err != nil {
		t.Fatalf("round %d: running %s: %v", round, op.Name, err)
	}
	end := time.Now()
	switch outcome {
	case Reported:
		c, ok := m.next(m.ex.Deadline)
		if !ok {
			what := "first"
			if round > 1 {
				what = "second (the notifier did not re-arm)"
			}
			t.Fatalf("round %d: no %s Change within %v of %s", round, what, m.ex.Deadline, op.Name)
		}
		m.check(op, c)
		t.Logf("round %d: reported after %v by %s/%s", round, time.Since(start).Round(time.Millisecond), c.Tier, c.Hook)
		if !m.ex.Periodic && !op.Compound {
			m.checkExtra(op, round, c, end)
		}
		return c.Hook, !t.Failed()
	default:
		if got := m.drain(m.ex.Quiet); len(got) > 0 {
			why := "a negative operation"
			if outcome == Missed {
				why = "a documented blind spot (" + m.ex.Missed[op.Name] + "); if the tier now sees it, update its expectations"
			}
			t.Errorf("round %d: %s gave %d Change(s) (%s) within %v, but it is %s", round, op.Name, len(got), hooksOf(got), m.ex.Quiet, why)
			return "", false
		}
		return "", true
	}
}

// reArmSlack bounds how long after an operation returned a Change from a
// second hook it passed may still be sampled (the reader's delay under a
// loaded TCG guest is milliseconds; a second is ample).
const reArmSlack = time.Second

// checkExtra drains the Changes after an operation's first one. A system
// call that passes two hooks (open with O_TRUNC: notify_change, then
// do_filp_open's return) spans two dirty periods when the notifier
// re-armed between them: a guest that was preempted mid-call did so in 1
// of 25 runs. That second Change is right (the snapshot on the first may
// lack the rest of the call) and is accepted once per further hook, sampled
// by the op's end plus reArmSlack; a hook reported twice, or a Change
// after that, is a dirty period reported twice or a change from nowhere.
func (m *matrix) checkExtra(op Op, round int, first agent.Change, end time.Time) {
	t := m.t
	rearmed, bad := judgeExtra(first, m.drain(m.ex.Quiet), end)
	for _, c := range rearmed {
		t.Logf("round %d: %s passed %s after the notifier re-armed: a second dirty period, sampled %v after the op ended",
			round, op.Name, c.Hook, c.Time.Sub(end).Round(time.Millisecond))
	}
	if len(bad) > 0 {
		t.Errorf("round %d: %s made %d more Change(s) after the first (%s): want one per dirty period, and a further one only from another hook the call passed",
			round, op.Name, len(bad), hooksOf(bad))
	}
}

// judgeExtra splits the Changes after an operation's first one (which
// ended at end) into those from a further hook the call passed after a
// re-arm and those that fail the matrix.
func judgeExtra(first agent.Change, extra []agent.Change, end time.Time) (rearmed, bad []agent.Change) {
	seen := map[string]bool{first.Hook: true}
	for _, c := range extra {
		if seen[c.Hook] || c.Time.After(end.Add(reArmSlack)) {
			bad = append(bad, c)
			continue
		}
		seen[c.Hook] = true
		rearmed = append(rearmed, c)
	}
	return rearmed, bad
}

// check judges one reported Change.
func (m *matrix) check(op Op, c agent.Change) {
	t := m.t
	if c.Dataset != m.target.Name {
		t.Errorf("%s: Change for dataset %q, want %q", op.Name, c.Dataset, m.target.Name)
	}
	if c.Tier != m.ex.Tier {
		t.Errorf("%s: Change from tier %q, want %q", op.Name, c.Tier, m.ex.Tier)
	}
	if c.Hook == "" {
		t.Errorf("%s: Change names no hook", op.Name)
	}
	if c.Time.IsZero() {
		t.Errorf("%s: Change has no time", op.Name)
	}
	if m.ex.Hook != nil {
		if err := m.ex.Hook(op, c.Hook); err != nil {
			t.Errorf("%s: hook %q: %v", op.Name, c.Hook, err)
		}
	}
}

// next waits up to d for one Change and consumes it. A Change sampled
// before the last AfterChange finished belongs to the dirty period that
// snapshot ended (a slow snapshot under TCG outlasts a timer tick, as the
// agent's would: it then takes one more, empty, snapshot); it is logged
// and not counted.
func (m *matrix) next(d time.Duration) (agent.Change, bool) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case c, ok := <-m.n.Changes():
			if !ok {
				m.t.Fatalf("the notifier closed its Changes channel")
			}
			if m.ex.AfterChange != nil && c.Time.Before(m.afterDone) {
				m.t.Logf("a %s/%s report sampled %v before the last snapshot ended: same dirty period",
					c.Tier, c.Hook, m.afterDone.Sub(c.Time).Round(time.Millisecond))
				continue
			}
			m.after(c)
			return c, true
		case <-timer.C:
			return agent.Change{}, false
		}
	}
}

// drain consumes every Change until none came for d, and returns them.
func (m *matrix) drain(d time.Duration) []agent.Change {
	var got []agent.Change
	for {
		c, ok := m.next(d)
		if !ok {
			return got
		}
		got = append(got, c)
	}
}

// settle waits until the notifier is quiet: changes made by preparing or
// closing an operation are not what the next step measures.
func (m *matrix) settle(when string) {
	limit := time.Now().Add(m.ex.Deadline + 10*m.ex.Quiet)
	for {
		c, ok := m.next(m.ex.Quiet)
		if !ok {
			return
		}
		if time.Now().After(limit) {
			m.t.Fatalf("the notifier never went quiet %s (last: %s/%s)", when, c.Tier, c.Hook)
		}
	}
}

func (m *matrix) after(c agent.Change) {
	if m.ex.AfterChange == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.ex.Deadline)
	defer cancel()
	if err := m.ex.AfterChange(ctx, c); err != nil {
		m.t.Fatalf("after the change from %s/%s: %v", c.Tier, c.Hook, err)
	}
	m.afterDone = time.Now()
}

func hooksOf(cs []agent.Change) string {
	hooks := make([]string, len(cs))
	for i, c := range cs {
		hooks[i] = c.Tier + "/" + c.Hook
	}
	return strings.Join(hooks, ", ")
}
