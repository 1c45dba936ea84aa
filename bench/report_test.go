package bench

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"image/png"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestWriteFiles renders a made-up report (the rows are synthetic: this
// tests the writers, not a measurement) and reads every file back.
func TestWriteFiles(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	sample := func(base float64) []float64 {
		s := make([]float64, 200)
		for i := range s {
			s[i] = base * (1 + rng.ExpFloat64())
		}
		return s
	}
	floor := dist("floor", "snapshot + incremental send|recv", "floor", "ms", sample(20))
	tp := dist("lag", "tracepoint", "write-to-replica lag", "ms", sample(40))
	againstFloor(&tp, floor.P50)
	rep := &Report{Machine: Machine{CPU: "test cpu", Cores: 2, Kernel: "6.18", ZFS: "zfs-fuse", Go: "go1.26", Commit: "abc"},
		Rows: []Row{floor, tp,
			dist("lag", "periodic-1m0s", "write-to-replica lag", "ms", sample(30000)),
			dist("workloads", "small-appends", "write-to-replica lag", "ms", sample(45)),
			value("throughput", "local", "full-sync throughput", "MB/s", 123.4),
			{Scenario: "failover", Case: "master killed", Metric: "failover time", Status: StatusNotYet, Note: "not wired, yet"},
		}}
	dir := t.TempDir()
	if err := rep.WriteFiles(dir); err != nil {
		t.Fatal(err)
	}
	want := []string{"bench.csv", "bench.json", "lag-by-mode.png", "lag-by-mode-cdf.png", "lag-by-workload.png", "lag-by-workload-cdf.png"}
	if strings.Join(rep.Files, " ") != strings.Join(want, " ") {
		t.Errorf("files %v, want %v", rep.Files, want)
	}
	for _, f := range rep.Files {
		if !strings.HasSuffix(f, ".png") {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := png.Decode(bytes.NewReader(b)); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	b, _ := os.ReadFile(filepath.Join(dir, "bench.csv"))
	recs, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(recs) != len(rep.Rows)+1 || recs[2][1] != "tracepoint" || recs[6][13] != "not wired, yet" {
		t.Errorf("csv: %v %q", err, recs)
	}
	var back Report
	b, _ = os.ReadFile(filepath.Join(dir, "bench.json"))
	if err := json.Unmarshal(b, &back); err != nil || len(back.Rows) != len(rep.Rows) || back.Rows[1].Target == "" {
		t.Errorf("json: %v %+v", err, back.Rows)
	}
	var tbl strings.Builder
	if err := rep.WriteTable(&tbl); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"tracepoint", "NOT YET", "test cpu, 2 cores", "failover/master killed: not wired, yet"} {
		if !strings.Contains(tbl.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, tbl.String())
		}
	}
}
