package api

import (
	"net/http"
	"time"

	"github.com/flockerha/flocker/agent"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// LagBuckets are the replication lag histogram's buckets in seconds: from
// the eBPF tiers' tens of milliseconds through the timer tier's seconds to
// a stalled link's minutes.
var LagBuckets = []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300}

// Metrics is the agent's Prometheus registry. Events a scrape cannot see
// (each transfer's lag, each change, each role change) are observed as they
// happen (it is the agent's agent.Observer); counters the agent keeps
// (bytes, snapshots, transfers, the ring buffer's losses) and gauges (lag
// now, heartbeat RTT) are read from its Status at each scrape.
type Metrics struct {
	reg     *prometheus.Registry
	lag     *prometheus.HistogramVec
	changes *prometheus.CounterVec
	roles   *prometheus.CounterVec
}

var _ agent.Observer = (*Metrics)(nil)

// RingBufferStats reports the eBPF notifier's ring-buffer losses
// (agent.EBPF); nil for tiers without a ring buffer.
type RingBufferStats func() (lost uint64)

// NewMetrics registers every metric; status is read at each scrape, ring
// may be nil.
func NewMetrics(status func() agent.Status, ring RingBufferStats) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "flocker_replication_lag_seconds",
			Help:    "Time from the first change a transfer carried to the peer's acknowledgement, per completed transfer.",
			Buckets: LagBuckets,
		}, []string{"dataset"}),
		changes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flocker_change_events_total",
			Help: "Changes the notifier reported, by tier.",
		}, []string{"tier"}),
		roles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "flocker_role_changes_total",
			Help: "Role changes of this node: failover (automatic), handoff, promote, demote.",
		}, []string{"kind"}),
	}
	for _, k := range []string{"failover", "handoff", "promote", "demote"} {
		m.roles.WithLabelValues(k) // present at 0 before the first one
	}
	for _, t := range agent.Tiers {
		m.changes.WithLabelValues(t)
	}
	m.reg.MustRegister(m.lag, m.changes, m.roles, &statusCollector{status: status, ring: ring},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the exposition.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// Replicated implements agent.Observer.
func (m *Metrics) Replicated(dataset string, lag time.Duration) {
	m.lag.WithLabelValues(dataset).Observe(lag.Seconds())
}

// Changed implements agent.Observer.
func (m *Metrics) Changed(tier string) { m.changes.WithLabelValues(tier).Inc() }

// RoleChanged implements agent.Observer.
func (m *Metrics) RoleChanged(kind string) { m.roles.WithLabelValues(kind).Inc() }

// statusCollector turns a Status into metrics at scrape time. The agent's
// counters restart with the agent (and with a dataset's role), which
// Prometheus' rate() reads as a counter reset.
type statusCollector struct {
	status func() agent.Status
	ring   RingBufferStats
}

var (
	dsLabels    = []string{"dataset", "role"}
	descLagNow  = prometheus.NewDesc("flocker_replication_lag_current_seconds", "How long the oldest change the peer does not hold has waited (master; 0 when current).", dsLabels, nil)
	descSent    = prometheus.NewDesc("flocker_bytes_sent_total", "Replication stream bytes sent (acknowledged transfers).", dsLabels, nil)
	descRecv    = prometheus.NewDesc("flocker_bytes_received_total", "Replication stream bytes received.", dsLabels, nil)
	descTaken   = prometheus.NewDesc("flocker_snapshots_taken_total", "Snapshots taken.", dsLabels, nil)
	descPruned  = prometheus.NewDesc("flocker_snapshots_pruned_total", "Snapshots destroyed by retention.", dsLabels, nil)
	descXfers   = prometheus.NewDesc("flocker_transfers_total", "Transfers completed (master: acknowledged; slave: received).", dsLabels, nil)
	descFailed  = prometheus.NewDesc("flocker_transfers_failed_total", "Transfers that failed.", dsLabels, nil)
	descLocal   = prometheus.NewDesc("flocker_snapshots", "Snapshots of the dataset on this node.", dsLabels, nil)
	descRTT     = prometheus.NewDesc("flocker_heartbeat_rtt_seconds", "Last measured heartbeat round trip to the peer.", nil, nil)
	descHBAge   = prometheus.NewDesc("flocker_heartbeat_age_seconds", "Time since the peer's last heartbeat (absent before the first).", nil, nil)
	descReach   = prometheus.NewDesc("flocker_peer_reachable", "1 while a connection to the peer is up.", nil, nil)
	descMaster  = prometheus.NewDesc("flocker_master", "1 while this node is master.", nil, nil)
	descEpoch   = prometheus.NewDesc("flocker_epoch", "This node's epoch.", nil, nil)
	descRingBuf = prometheus.NewDesc("flocker_ringbuffer_drops_total", "Change events the eBPF ring buffer had no room for (each still marks its dataset dirty).", nil, nil)
)

func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLagNow, descSent, descRecv, descTaken, descPruned, descXfers, descFailed,
		descLocal, descRTT, descHBAge, descReach, descMaster, descEpoch, descRingBuf} {
		ch <- d
	}
}

func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	for _, d := range st.Datasets {
		l := []string{d.Name, d.Role}
		ch <- prometheus.MustNewConstMetric(descLagNow, prometheus.GaugeValue, d.Lag.Seconds(), l...)
		ch <- prometheus.MustNewConstMetric(descSent, prometheus.CounterValue, float64(d.Snapshots.BytesSent), l...)
		ch <- prometheus.MustNewConstMetric(descRecv, prometheus.CounterValue, float64(d.Snapshots.BytesReceived), l...)
		ch <- prometheus.MustNewConstMetric(descTaken, prometheus.CounterValue, float64(d.Snapshots.Taken), l...)
		ch <- prometheus.MustNewConstMetric(descPruned, prometheus.CounterValue, float64(d.Snapshots.Pruned), l...)
		ch <- prometheus.MustNewConstMetric(descXfers, prometheus.CounterValue, float64(d.Snapshots.Transfers), l...)
		ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(d.Snapshots.FailedTransfers), l...)
		ch <- prometheus.MustNewConstMetric(descLocal, prometheus.GaugeValue, float64(d.Snapshots.Local), l...)
	}
	ch <- prometheus.MustNewConstMetric(descRTT, prometheus.GaugeValue, st.Peer.RTT.Seconds())
	if !st.Peer.LastHeartbeat.IsZero() {
		ch <- prometheus.MustNewConstMetric(descHBAge, prometheus.GaugeValue, max(0, time.Since(st.Peer.LastHeartbeat).Seconds()))
	}
	ch <- prometheus.MustNewConstMetric(descReach, prometheus.GaugeValue, boolFloat(st.Peer.Connected))
	ch <- prometheus.MustNewConstMetric(descMaster, prometheus.GaugeValue, boolFloat(st.Role == "master"))
	ch <- prometheus.MustNewConstMetric(descEpoch, prometheus.GaugeValue, float64(st.Epoch))
	var lost uint64
	if c.ring != nil {
		lost = c.ring()
	}
	ch <- prometheus.MustNewConstMetric(descRingBuf, prometheus.CounterValue, float64(lost))
}

func boolFloat(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
