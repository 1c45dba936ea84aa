package api

import (
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent"
)

// Sample finds one sample in a Prometheus text exposition: the metric name
// with its labels exactly as exposed ("" for none). ok is false when absent.
func Sample(text, name, labels string) (v float64, ok bool) {
	key := name
	if labels != "" {
		key += "{" + labels + "}"
	}
	for _, line := range strings.Split(text, "\n") {
		rest, found := strings.CutPrefix(line, key+" ")
		if !found {
			continue
		}
		f, err := strconv.ParseFloat(strings.Fields(rest)[0], 64)
		return f, err == nil
	}
	return 0, false
}

// TestMetricsExposition: the observed events and the status counters come
// out under their names and labels, served on /metrics of the API.
func TestMetricsExposition(t *testing.T) {
	var mu sync.Mutex
	st := agent.Status{Node: "alpha", Role: "master", Epoch: 7,
		Peer: agent.PeerStatus{Connected: true, RTT: 2 * time.Millisecond},
		Datasets: []agent.DatasetStatus{{Name: "app", Role: "master", Lag: 1500 * time.Millisecond,
			Snapshots: agent.SnapshotCounts{Local: 4, Taken: 9, Pruned: 5, Transfers: 8, FailedTransfers: 1, BytesSent: 12345}}}}
	lost := uint64(3)
	status := func() agent.Status { mu.Lock(); defer mu.Unlock(); return st }
	m := NewMetrics(status, func() uint64 { return lost })
	m.Replicated("app", 80*time.Millisecond)
	m.Replicated("app", 2*time.Second)
	m.Changed(agent.TierTracepoint)
	m.Changed(agent.TierTracepoint)
	m.Changed(agent.TierTimer)
	m.RoleChanged("handoff")

	srv, err := NewServer(Options{Status: status, Metrics: m.Handler(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := ListenTCP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Start(ln, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	scrape := func() string {
		resp, err := http.Get("http://" + ln.Addr().String() + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("/metrics: %d %s", resp.StatusCode, b)
		}
		return string(b)
	}
	text := scrape()
	ds := `dataset="app",role="master"`
	for _, c := range []struct {
		name, labels string
		want         float64
	}{
		{"flocker_replication_lag_seconds_count", `dataset="app"`, 2},
		{"flocker_replication_lag_seconds_bucket", `dataset="app",le="0.1"`, 1},
		{"flocker_replication_lag_seconds_bucket", `dataset="app",le="2.5"`, 2},
		{"flocker_replication_lag_current_seconds", ds, 1.5},
		{"flocker_bytes_sent_total", ds, 12345},
		{"flocker_bytes_received_total", ds, 0},
		{"flocker_snapshots_taken_total", ds, 9},
		{"flocker_snapshots_pruned_total", ds, 5},
		{"flocker_transfers_total", ds, 8},
		{"flocker_transfers_failed_total", ds, 1},
		{"flocker_snapshots", ds, 4},
		{"flocker_change_events_total", `tier="tracepoint"`, 2},
		{"flocker_change_events_total", `tier="timer"`, 1},
		{"flocker_change_events_total", `tier="fentry"`, 0},
		{"flocker_role_changes_total", `kind="handoff"`, 1},
		{"flocker_role_changes_total", `kind="failover"`, 0},
		{"flocker_heartbeat_rtt_seconds", "", 0.002},
		{"flocker_peer_reachable", "", 1},
		{"flocker_master", "", 1},
		{"flocker_epoch", "", 7},
		{"flocker_ringbuffer_drops_total", "", 3},
	} {
		got, ok := Sample(text, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s{%s} = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	if _, ok := Sample(text, "flocker_heartbeat_age_seconds", ""); ok {
		t.Error("heartbeat age exposed before any heartbeat")
	}
	if _, ok := Sample(text, "go_goroutines", ""); !ok {
		t.Error("no Go runtime metrics")
	}
	mu.Lock()
	st.Datasets[0].Snapshots.Taken = 10
	mu.Unlock()
	if got, _ := Sample(scrape(), "flocker_snapshots_taken_total", ds); got != 10 {
		t.Errorf("taken after a change of status: %v, want 10", got)
	}
}
