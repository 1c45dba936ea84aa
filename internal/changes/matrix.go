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
			if extra := m.drain(m.ex.Quiet); len(extra) > 0 {
				t.Errorf("round %d: %s made %d more Change(s) after the first (%s): want exactly one per dirty period",
					round, op.Name, len(extra), hooksOf(extra))
			}
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
