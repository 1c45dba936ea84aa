package bench

import "testing"

func TestParseOverhead(t *testing.T) {
	out := `goos: linux
BenchmarkPwriteOverhead/tracepoint-2         	       1	9876543 ns/op	       1.000 bpf-runs/pwrite-tracked	        48.50 ns-added/pwrite-tracked	        12.00 ns-added/pwrite-untracked	       250.0 ns/pwrite-no-probe
BenchmarkPwriteOverhead/empty-tp_btf-sys_exit-2  1	100 ns/op	-3.5 ns-added/pwrite-tracked
PASS`
	rows := parseOverhead(out, "the note")
	want := []struct {
		cas, metric string
		v           float64
	}{
		{"tracepoint", "ns per write, no probe", 250},
		{"tracepoint", "ns added per write, tracked fs", 48.5},
		{"tracepoint", "ns added per write, untracked fs", 12},
		{"empty-tp_btf-sys_exit", "ns added per write, tracked fs", -3.5},
	}
	if len(rows) != len(want) {
		t.Fatalf("got %d rows %+v, want %d", len(rows), rows, len(want))
	}
	for i, w := range want {
		if rows[i].Case != w.cas || rows[i].Metric != w.metric || rows[i].Value != w.v {
			t.Errorf("row %d: %s/%s=%v, want %s/%s=%v", i, rows[i].Case, rows[i].Metric, rows[i].Value, w.cas, w.metric, w.v)
		}
		if wantNote := w.metric == "ns per write, no probe"; (rows[i].Note == "the note") != wantNote {
			t.Errorf("row %d: note %q", i, rows[i].Note)
		}
	}
}
