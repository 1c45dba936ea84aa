package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

func init() {
	register(Scenario{Name: "overhead", Order: 50, Run: runOverhead,
		Summary: "probe overhead per eBPF tier: ns added per 16-byte pwrite on a tracked and an untracked filesystem (bpf's BenchmarkPwriteOverhead)"})
}

// module is this source tree's module path: the overhead scenario runs
// the bpf package's own benchmark, so it needs the source and a Go
// toolchain (make bench has both; an installed binary may not).
const module = "github.com/flockerha/flocker"

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && strings.Contains(string(b), "module "+module+"\n") {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("not run inside the flocker source tree (the benchmark is bpf's Go benchmark)")
		}
		dir = parent
	}
}

func runOverhead(ctx context.Context, e *Env) ([]Row, error) {
	unavailable := func(why string) []Row {
		return []Row{{Case: "ebpf tiers", Metric: "ns added per write", Status: StatusUnavailable, Note: why}}
	}
	root, err := moduleRoot()
	if err != nil {
		return unavailable(err.Error()), nil
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return unavailable("no go toolchain on PATH to run bpf's benchmark"), nil
	}
	// A running agent's tier would tax every write of the baseline too.
	if e.pair != nil {
		if err := e.stopAgents(); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 4*time.Minute)
	defer cancel()
	// --quick measures the tier the agent runs here and the bare hook
	// only; the default run measures every configuration.
	bench := pick(e, "^BenchmarkPwriteOverhead$", "^BenchmarkPwriteOverhead$/^(tracepoint|empty-tp_btf-sys_exit)$")
	cmd := exec.CommandContext(ctx, goBin, "test", "-count=1", "-run", "^$", "-bench", bench, "-benchtime", "1x", "./bpf")
	cmd.Dir = root
	// Sized for the run's budget (budget.go): 50,000 writes per round is
	// 50-100 ms of writing, long against the timer's resolution and the
	// rounds' median absorbs a busy machine's bursts.
	writes, rounds := pick(e, 50000, 20000), pick(e, 5, 3)
	cmd.Env = append(os.Environ(),
		fmt.Sprintf("FLOCKER_BENCH_WRITES=%d", writes),
		fmt.Sprintf("FLOCKER_BENCH_ROUNDS=%d", rounds),
		"FLOCKER_BENCH_EVENT_WRITES="+pick(e, "100000", "20000"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("go test -bench BenchmarkPwriteOverhead ./bpf: %w\n%s", err, tail(string(out), 20))
	}
	rows := parseOverhead(string(out), fmt.Sprintf("16-byte pwrite on tmpfs, median of %d rounds of %d writes", rounds, writes))
	if len(rows) == 0 {
		return nil, fmt.Errorf("no BenchmarkPwriteOverhead results in:\n%s", tail(string(out), 20))
	}
	rows = append(rows,
		Row{Case: "fanotify", Metric: "ns added per write", Status: StatusUnavailable, Note: "not measured: bpf's benchmark covers the eBPF tiers only (the fanotify tier's lag is in the lag scenario)"},
		Row{Case: "timer", Metric: "ns added per write", Status: StatusUnavailable, Note: "nothing to measure: the timer tier adds no work to a write (it polls zfs)"})
	return rows, nil
}

// overheadMetrics maps the benchmark's units to report metrics.
var overheadMetrics = []struct{ unit, metric string }{
	{"ns/pwrite-no-probe", "ns per write, no probe"},
	{"ns-added/pwrite-tracked", "ns added per write, tracked fs"},
	{"ns-added/pwrite-untracked", "ns added per write, untracked fs"},
	{"ns-in-bpf/pwrite-tracked", "ns inside BPF per write, tracked fs"},
}

// parseOverhead reads "BenchmarkPwriteOverhead/NAME-P  1  V unit  V unit ...".
func parseOverhead(out, baseNote string) []Row {
	var rows []Row
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "BenchmarkPwriteOverhead/") {
			continue
		}
		name := strings.TrimPrefix(f[0], "BenchmarkPwriteOverhead/")
		if i := strings.LastIndex(name, "-"); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		vals := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			if v, err := strconv.ParseFloat(f[i], 64); err == nil {
				vals[f[i+1]] = v
			}
		}
		for _, m := range overheadMetrics {
			if v, ok := vals[m.unit]; ok {
				r := value("", name, m.metric, "ns", v)
				if m.unit == "ns/pwrite-no-probe" {
					r.Note = baseNote
				}
				rows = append(rows, r)
			}
		}
	}
	return rows
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
