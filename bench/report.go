package bench

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Status of a row.
const (
	StatusOK          = "ok"
	StatusUnavailable = "unavailable" // cannot run on this machine; Note says why
	StatusNotYet      = "not yet"     // the feature is not built yet; Note says what is missing
	StatusFailed      = "failed"      // ran and failed; Note holds the error
)

// Row is one line of the report: a distribution (N > 0: P50..Max) or a
// single Value, in Unit.
type Row struct {
	Scenario string  `json:"scenario"`
	Case     string  `json:"case"`
	Metric   string  `json:"metric"`
	Unit     string  `json:"unit"`
	Status   string  `json:"status"`
	N        int     `json:"n,omitempty"`
	P50      float64 `json:"p50,omitempty"`
	P95      float64 `json:"p95,omitempty"`
	P99      float64 `json:"p99,omitempty"`
	Max      float64 `json:"max,omitempty"`
	Value    float64 `json:"value,omitempty"`
	// Target states the goal this row is held to, Verdict "met" or
	// "missed" (empty without a target).
	Target  string `json:"target,omitempty"`
	Verdict string `json:"verdict,omitempty"`
	Note    string `json:"note,omitempty"`
	// Samples are the raw values behind a distribution (for plots).
	Samples []float64 `json:"samples,omitempty"`
}

// dist makes a distribution row from samples.
func dist(scenario, cas, metric, unit string, samples []float64) Row {
	s := Summarize(samples)
	r := Row{Scenario: scenario, Case: cas, Metric: metric, Unit: unit, Status: StatusOK,
		N: s.N, P50: s.P50, P95: s.P95, P99: s.P99, Max: s.Max, Samples: samples}
	if s.N == 0 {
		r.Status = StatusFailed
		r.Note = "no samples"
	}
	return r
}

// value makes a single-value row.
func value(scenario, cas, metric, unit string, v float64) Row {
	return Row{Scenario: scenario, Case: cas, Metric: metric, Unit: unit, Status: StatusOK, Value: v}
}

// ScenarioTime is one scenario's wall time in a run.
type ScenarioTime struct {
	Name   string `json:"name"`
	Took   string `json:"took"`
	Budget string `json:"budget"`
	Over   bool   `json:"over_budget,omitempty"`
}

// Report is one run of the harness.
type Report struct {
	Machine  Machine   `json:"machine"`
	Command  string    `json:"command"`
	Quick    bool      `json:"quick"`
	Seed     uint64    `json:"seed"`
	Started  time.Time `json:"started"`
	Duration string    `json:"duration"` // total wall time, rig set-up and teardown's start included
	Load     string    `json:"load"`     // 1-minute load average at the end (Machine.Load is at the start)
	// Times is each scenario's wall time beside its budget.
	Times []ScenarioTime `json:"times"`
	Rows  []Row          `json:"rows"`
	// Files written next to the report (CSV, JSON, plots).
	Files []string `json:"files,omitempty"`
}

func fnum(v float64) string {
	switch {
	case v == 0:
		return "0"
	case math.Abs(v) >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	default:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
}

// WriteTable prints the report for a terminal.
func (r *Report) WriteTable(w io.Writer) error {
	m := r.Machine
	fmt.Fprintf(w, "flocker bench%s  %s\n", map[bool]string{true: " --quick", false: ""}[r.Quick], r.Started.UTC().Format(time.RFC3339))
	fmt.Fprintf(w, "machine: %s, %d cores; kernel %s; zfs %s; %s; commit %s\n\n", m.CPU, m.Cores, m.Kernel, m.ZFS, m.Go, m.Commit)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tCASE\tMETRIC\tN\tP50\tP95\tP99\tMAX|VALUE\tUNIT\tTARGET\tVERDICT")
	for _, row := range r.Rows {
		if row.Status != StatusOK {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\t\t\t\t%s\t\t\t\n", row.Scenario, row.Case, row.Metric, strings.ToUpper(row.Status))
			continue
		}
		if row.N > 0 {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", row.Scenario, row.Case, row.Metric, row.N,
				fnum(row.P50), fnum(row.P95), fnum(row.P99), fnum(row.Max), row.Unit, row.Target, row.Verdict)
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t\t\t\t\t%s\t%s\t%s\t%s\n", row.Scenario, row.Case, row.Metric, fnum(row.Value), row.Unit, row.Target, row.Verdict)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var notes []string
	for _, row := range r.Rows {
		if row.Note != "" {
			notes = append(notes, fmt.Sprintf("  %s/%s: %s", row.Scenario, row.Case, row.Note))
		}
	}
	if len(notes) > 0 {
		fmt.Fprintf(w, "\nnotes:\n%s\n", strings.Join(notes, "\n"))
	}
	if len(r.Times) > 0 {
		var parts []string
		for _, t := range r.Times {
			over := ""
			if t.Over {
				over = " OVER"
			}
			parts = append(parts, fmt.Sprintf("%s %s/%s%s", t.Name, t.Took, t.Budget, over))
		}
		fmt.Fprintf(w, "\nscenario wall time/budget: %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "\ntotal wall time %s (load %s at the start, %s at the end)\n", r.Duration, r.Machine.Load, r.Load)
	return nil
}

var csvHeader = []string{"scenario", "case", "metric", "unit", "status", "n", "p50", "p95", "p99", "max", "value", "target", "verdict", "note",
	"cpu", "cores", "kernel", "zfs", "go", "commit"}

// WriteCSV writes one line per row, each carrying the machine details so
// a line copied elsewhere still says where it was measured.
func (r *Report) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }
	m := r.Machine
	for _, row := range r.Rows {
		rec := []string{row.Scenario, row.Case, row.Metric, row.Unit, row.Status, strconv.Itoa(row.N),
			f(row.P50), f(row.P95), f(row.P99), f(row.Max), f(row.Value), row.Target, row.Verdict, row.Note,
			m.CPU, strconv.Itoa(m.Cores), m.Kernel, m.ZFS, m.Go, m.Commit}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteFiles writes bench.csv, bench.json and the plots into dir and
// records their names in r.Files.
func (r *Report) WriteFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	plots, err := writePlots(r, dir)
	if err != nil {
		return fmt.Errorf("plots: %w", err)
	}
	r.Files = append([]string{"bench.csv", "bench.json"}, plots...)
	var csvb strings.Builder
	if err := r.WriteCSV(&csvb); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "bench.csv"), []byte(csvb.String()), 0o644); err != nil {
		return err
	}
	j, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "bench.json"), append(j, '\n'), 0o644)
}
