package bench

import (
	"context"
	"encoding/json"
	"image/png"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/testutil"
)

// TestQuickRun runs `flocker bench --quick` as CI does, with a freshly built
// binary on the real rig, and checks that the results are sane and
// complete: every scenario reported, every measured number finite (and
// positive where it is a time, rate or size), plots that decode as PNG.
// It does not hold the figures to targets: speed is the benchmark's
// business, and this machine is shared.
func TestQuickRun(t *testing.T) {
	testutil.RequireRoot(t)
	bin := filepath.Join(t.TempDir(), "flocker")
	build := exec.Command("go", "build", "-o", bin, "github.com/flockerha/flocker/cmd/flocker")
	build.Env = append(build.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building flocker: %v\n%s", err, out)
	}
	out := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "bench", "--quick", "--out", out)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	start := time.Now()
	err := cmd.Run()
	t.Logf("flocker bench --quick took %v\n%s", time.Since(start).Round(time.Second), stdout.String())
	if err != nil {
		t.Fatalf("flocker bench --quick: %v\n%s", err, stderr.String())
	}
	checkResults(t, out)
}

func checkResults(t *testing.T, dir string) {
	b, err := os.ReadFile(filepath.Join(dir, "bench.json"))
	testutil.RequireNoError(t, "reading bench.json", err)
	var rep Report
	testutil.RequireNoError(t, "decoding bench.json", json.Unmarshal(b, &rep))
	if rep.Machine.Kernel == "" || rep.Machine.Cores <= 0 || rep.Machine.ZFS == "" || rep.Machine.Go == "" {
		t.Errorf("machine details incomplete: %+v", rep.Machine)
	}
	if !rep.Quick {
		t.Errorf("report does not say --quick")
	}
	seen := map[string]int{}
	for _, r := range rep.Rows {
		name := r.Scenario + "/" + r.Case + "/" + r.Metric
		switch r.Status {
		case StatusOK:
			seen[r.Scenario]++
			nums := []float64{r.Value}
			if r.N > 0 {
				nums = []float64{r.P50, r.P95, r.P99, r.Max}
				if !(r.P50 <= r.P95 && r.P95 <= r.P99 && r.P99 <= r.Max) {
					t.Errorf("%s: percentiles out of order: %+v", name, r)
				}
				if len(r.Samples) != r.N {
					t.Errorf("%s: %d samples for n=%d", name, len(r.Samples), r.N)
				}
			}
			for _, v := range nums {
				if math.IsNaN(v) || math.IsInf(v, 0) {
					t.Errorf("%s: non-finite %v", name, v)
				}
				// Overheads are differences and may dip below zero in noise;
				// counts (false failovers) are zero when all is well.
				if r.Scenario != "overhead" && r.Unit != "count" && v <= 0 {
					t.Errorf("%s: %v, want > 0", name, v)
				}
			}
		case StatusUnavailable, StatusNotYet:
			seen[r.Scenario] += 0 // present, nothing measured
			if r.Note == "" {
				t.Errorf("%s: %s without a reason", name, r.Status)
			}
		default:
			t.Errorf("%s: status %q: %s", name, r.Status, r.Note)
		}
	}
	for _, s := range Scenarios() {
		if s.VM { // runs only when named (make bench VM=1)
			continue
		}
		n, ok := seen[s.Name]
		switch {
		case s.OptIn:
			if ok {
				t.Errorf("opt-in scenario %s ran without being named", s.Name)
			}
		case !ok:
			t.Errorf("scenario %s missing from the report", s.Name)
		case n == 0:
			t.Errorf("scenario %s has no measured row", s.Name)
		}
	}
	// The failover figures are whole: a time per kill and per handoff,
	// each within the scenario's own wait (sanity, not a target).
	for _, want := range []struct{ scenario, metric string }{{"failover", "failover time"}, {"failover", "back to current slave"}, {"handoff", "handoff downtime"}} {
		i := slices.IndexFunc(rep.Rows, func(r Row) bool { return r.Scenario == want.scenario && r.Metric == want.metric })
		if i < 0 {
			t.Errorf("no %s row in %s", want.metric, want.scenario)
			continue
		}
		if r := rep.Rows[i]; r.Status != StatusOK || r.N < 1 || r.Unit != "ms" || r.Max > float64(foSyncWait/time.Millisecond) {
			t.Errorf("%s/%s: %+v", want.scenario, want.metric, r)
		}
	}
	// The run's clock: a total, and each scenario's time beside its budget
	// (reported, not held to it: this machine is shared).
	if d, err := time.ParseDuration(rep.Duration); err != nil || d <= 0 {
		t.Errorf("total wall time %q: %v", rep.Duration, err)
	}
	for _, s := range Scenarios() {
		if s.VM || s.OptIn {
			continue
		}
		i := slices.IndexFunc(rep.Times, func(st ScenarioTime) bool { return st.Name == s.Name })
		if i < 0 {
			t.Errorf("no wall time for scenario %s", s.Name)
			continue
		}
		took, err := time.ParseDuration(rep.Times[i].Took)
		b, berr := time.ParseDuration(rep.Times[i].Budget)
		if err != nil || berr != nil || took <= 0 || b != budgetOf(s.Name, true) {
			t.Errorf("scenario %s: wall time %+v (errors %v, %v), want a positive time and its quick budget %v", s.Name, rep.Times[i], err, berr, budgetOf(s.Name, true))
		}
	}
	// The 60 s periodic baseline is derived from the 1 s timer's run: the
	// wait alone averages half a minute.
	if i := slices.IndexFunc(rep.Rows, func(r Row) bool { return r.Scenario == "lag" && r.Case == "periodic-1m0s-derived" }); i < 0 {
		t.Error("no derived periodic baseline row")
	} else if r := rep.Rows[i]; r.Status != StatusOK || r.P50 < 29000 || r.Max > 120000 || !strings.Contains(r.Note, "derived") {
		t.Errorf("derived periodic baseline: %+v", r)
	}
	csv, err := os.ReadFile(filepath.Join(dir, "bench.csv"))
	testutil.RequireNoError(t, "reading bench.csv", err)
	if lines := strings.Count(string(csv), "\n"); lines != len(rep.Rows)+1 {
		t.Errorf("bench.csv has %d lines for %d rows", lines, len(rep.Rows))
	}
	plots := 0
	for _, f := range rep.Files {
		if !strings.HasSuffix(f, ".png") {
			continue
		}
		plots++
		fh, err := os.Open(filepath.Join(dir, f))
		testutil.RequireNoError(t, "opening "+f, err)
		cfg, err := png.DecodeConfig(fh)
		fh.Close()
		if err != nil || cfg.Width < 200 || cfg.Height < 200 {
			t.Errorf("%s: not a readable PNG: %v %+v", f, err, cfg)
		}
	}
	if plots < 6 {
		t.Errorf("%d plots, want 6 (lag by mode, lag by workload, failover: each with a CDF): %v", plots, rep.Files)
	}
}
