package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/flockerha/flocker/internal/rig"
)

// Options configures Run.
type Options struct {
	// Bin is the flocker binary the rig's agents run (required).
	Bin string
	// Quick shrinks every scenario so the whole run takes under a minute
	// (CI); the report says what was scaled down.
	Quick bool
	// Scenarios selects scenarios by name; empty runs all.
	Scenarios []string
	// Seed seeds every random choice (overwrite offsets, data).
	Seed uint64
	// Duration overrides the length of the scenarios that run for a set
	// time (false-failovers); zero keeps each one's default.
	Duration time.Duration
	// AgentLogs, when set, runs the rig's agents at debug level and copies
	// their JSON logs into this directory before the rig is torn down
	// (timelines of each cycle: snapshot, stream sent, ack).
	AgentLogs string
	// Command is recorded in the report (how it was produced).
	Command string
	// Progress receives one line per step; nil discards.
	Progress io.Writer
	Logger   *slog.Logger
}

// Scenario is one part of the benchmark. Adding a scenario is one file
// whose init calls register; Order places it in the run (scenarios that
// add datasets to the shared pair run late, so they do not disturb the
// lag measurements).
type Scenario struct {
	Name, Summary string
	Order         int
	Run           func(ctx context.Context, e *Env) ([]Row, error)
	// VM scenarios boot the VM tier's guests: they run only when named
	// (make bench VM=1), not in the default run.
	VM bool
	// OptIn scenarios run only when named (too long for the default run).
	OptIn bool
}

var scenarios []Scenario

func register(s Scenario) {
	if slices.ContainsFunc(scenarios, func(o Scenario) bool { return o.Name == s.Name }) {
		panic("bench: duplicate scenario " + s.Name)
	}
	scenarios = append(scenarios, s)
	slices.SortStableFunc(scenarios, func(a, b Scenario) int { return a.Order - b.Order })
}

// Scenarios lists the scenarios in run order.
func Scenarios() []Scenario { return slices.Clone(scenarios) }

// Run runs the selected scenarios and returns the report. A scenario that
// fails becomes a failed row and the others still run; only bad options
// and a rig that cannot be built end the run early.
func Run(ctx context.Context, opts Options) (rep *Report, err error) {
	selected, err := selectScenarios(opts.Scenarios)
	if err != nil {
		return nil, err
	}
	if opts.Bin == "" {
		return nil, errors.New("no flocker binary")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	start := time.Now()
	rep = &Report{Command: opts.Command, Quick: opts.Quick, Seed: opts.Seed, Started: start}
	if err := rig.EnsureKernelFS(); err != nil {
		return nil, err
	}
	z, err := rig.EnsureZFS(ctx, rig.ZFSOptions{Logger: opts.Logger})
	if err != nil {
		return nil, err
	}
	e := newEnv(opts)
	defer func() {
		if cerr := errors.Join(e.close(), z.Close()); cerr != nil {
			// The figures stand; a teardown failure (a busy pool) is
			// still an error the operator must see.
			err = errors.Join(err, fmt.Errorf("tearing the rig down: %w", cerr))
		}
		if rep != nil {
			// The total is what the operator waits for: teardown included.
			rep.Duration = time.Since(start).Round(100 * time.Millisecond).String()
			rep.Load = loadAvg()
			e.progress("total wall time %s (load %s at the end)", rep.Duration, rep.Load)
		}
	}()
	rep.Machine = describeMachine(ctx, e.zfsVersion(ctx))
	for _, s := range selected {
		e.progress("scenario %s: %s", s.Name, s.Summary)
		t0 := time.Now()
		rows, err := s.Run(ctx, e)
		for i := range rows {
			rows[i].Scenario = s.Name
		}
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			rows = append(rows, Row{Scenario: s.Name, Case: "-", Metric: "-", Status: StatusFailed, Note: oneLine(err.Error())})
		}
		took := time.Since(t0).Round(100 * time.Millisecond)
		st := ScenarioTime{Name: s.Name, Took: took.String()}
		if b := budgetOf(s.Name, opts.Quick); b > 0 {
			st.Budget, st.Over = b.String(), took > b
		}
		e.progress("scenario %s done in %v (budget %s)", s.Name, took, st.Budget)
		rep.Times = append(rep.Times, st)
		rep.Rows = append(rep.Rows, rows...)
	}
	return rep, nil
}

// ErrUnknownScenario is returned for a scenario name nobody registered.
var ErrUnknownScenario = errors.New("unknown scenario")

// CheckScenarios validates names without running anything.
func CheckScenarios(names []string) error {
	_, err := selectScenarios(names)
	return err
}

func selectScenarios(names []string) ([]Scenario, error) {
	if len(names) == 0 {
		return slices.DeleteFunc(Scenarios(), func(s Scenario) bool { return s.VM || s.OptIn }), nil
	}
	var out []Scenario
	for _, s := range scenarios {
		if slices.Contains(names, s.Name) {
			out = append(out, s)
		}
	}
	for _, n := range names {
		if !slices.ContainsFunc(scenarios, func(s Scenario) bool { return s.Name == n }) {
			var all []string
			for _, s := range scenarios {
				all = append(all, s.Name)
			}
			return nil, fmt.Errorf("%w %q (have %s)", ErrUnknownScenario, n, strings.Join(all, ", "))
		}
	}
	return out, nil
}

func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 300 {
		s = s[:300] + "..."
	}
	return s
}
