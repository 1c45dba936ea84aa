package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/flockerha/flocker/internal/agentpair"
)

func init() {
	register(Scenario{Name: "scale", Order: 70, Run: runScale,
		Summary: "50 datasets on one pair, writes spread across them: lag p99, agent CPU share and RSS"})
}

func runScale(ctx context.Context, e *Env) ([]Row, error) {
	p, err := e.Pair(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := e.probe(ctx); err != nil {
		return nil, err
	}
	n := pick(e, 50, 5)
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("s%02d", i+1))
	}
	if err := e.Agents(ctx, e.BestTier(), time.Second, false); err != nil {
		return nil, err
	}
	e.progress("adding %d datasets and waiting for their first transfers", n)
	mMark, sMark := p.Master.Log.Len(), p.Slave.Log.Len()
	t0 := time.Now()
	if err := e.AddDatasets(ctx, names, true, pick(e, 3*time.Minute, time.Minute)); err != nil {
		return nil, e.scaleLogs(err)
	}
	e.progress("%d datasets in place and replicated in %v", n, time.Since(t0).Round(100*time.Millisecond))
	wMark := p.Master.Log.Len() // the agents' restart is behind
	var targets []target
	for _, name := range names {
		targets = append(targets, target{dataset: name, masterDir: p.Master.Pool.Mountpoint + "/" + name,
			replica: p.Slave.Pool.Mountpoint + "/" + name, w: &appender{}})
	}
	rate, secs := 200.0, pick(e, 8.0, 1.0)
	mon := startMonitor(p.Master, p.Slave)
	wStart := time.Now()
	res, err := e.MeasureLag(ctx, targets, steady(rate), int(rate*secs), pick(e, 45*time.Second, 20*time.Second))
	usage := mon.stop()
	if err != nil {
		return nil, e.scaleLogs(err)
	}
	row := lagRow(fmt.Sprintf("%d datasets, %.0f writes/s", n, rate), res)
	if e.Quick() {
		row.Note = joinNote("--quick scales 50 datasets down to 5", row.Note)
	}
	// What went wrong on the way, from the agents' own logs: transfers the
	// slave refused, transfers that failed, datasets never caught up.
	refused := countBy(p.Slave.Log.Records(sMark), "refused transfer", "reason")
	failed := countBy(p.Master.Log.Records(mMark), "transfer failed", "code")
	var behind []string
	for _, t := range targets {
		if res.undeliveredBy[t.dataset] > 0 {
			behind = append(behind, fmt.Sprintf("%s (%d)", t.dataset, res.undeliveredBy[t.dataset]))
		}
	}
	if len(behind) > 0 {
		row.Note = joinNote(row.Note, "writes never delivered on "+strings.Join(behind, ", "))
	}
	if len(refused) > 0 {
		row.Note = joinNote(row.Note, "transfers the slave refused: "+refused.String())
	}
	if len(failed) > 0 {
		row.Note = joinNote(row.Note, "transfers that failed: "+failed.String())
	}
	// Connections the master lost while the writes ran and settled (a
	// replacement by the peer's dial is not a loss): each one interrupts
	// the transfers in flight.
	lost := p.Master.Log.Count(wMark, func(r agentpair.Record) bool {
		return (r.Msg() == "connection down" || r.Msg() == "connection closed") && !strings.Contains(r.Str("err"), "superseded")
	})
	if lost > 0 {
		row.Note = joinNote(row.Note, fmt.Sprintf("the master lost its connection %d times", lost))
	}
	if len(behind) > 0 || len(refused) > 0 || lost > 0 {
		if dir, err := keepLogs("scale", p.Nodes()); err == nil {
			row.Note = joinNote(row.Note, "agent logs kept in "+dir)
		}
	}
	rows := []Row{row}
	// The pair's capacity: with every dataset changing all the time, lag
	// is the time to serve the queue of datasets at this rate.
	sent := p.Master.Log.Count(wMark, func(r agentpair.Record) bool { return r.Msg() == "replicated" })
	tput := value("", fmt.Sprintf("%d datasets, %.0f writes/s", n, rate), "transfers completed per second", "1/s", float64(sent)/time.Since(wStart).Seconds())
	tput.Note = fmt.Sprintf("%d incremental transfers acknowledged from the first write until the replicas caught up (or the wait ended); at most 4 sends at once per agent", sent)
	rows = append(rows, tput)
	for _, u := range usage {
		if u.err != nil {
			rows = append(rows, Row{Case: u.node, Metric: "agent CPU", Status: StatusFailed, Note: oneLine(u.err.Error())})
			continue
		}
		cpu := value("", u.node+" agent", "CPU share of one core", "%", u.cpu)
		cpu.Note = "utime+stime of the agent and its finished zfs children over the write phase, from /proc/PID/stat"
		rows = append(rows, cpu, value("", u.node+" agent", "peak RSS", "MiB", u.rssMiB))
	}
	return rows, nil
}

// monitor samples the agents' /proc entries during a run.
type monitor struct {
	nodes []*agentpair.Node
	stopc chan struct{}
	wg    sync.WaitGroup
	mu    sync.Mutex
	peak  map[string]float64
	start map[string]cpuMark
}

type usage struct {
	node        string
	cpu, rssMiB float64
	err         error
}

type cpuMark struct {
	ticks float64
	at    time.Time
	err   error
}

func startMonitor(nodes ...*agentpair.Node) *monitor {
	m := &monitor{nodes: nodes, stopc: make(chan struct{}), peak: map[string]float64{}, start: map[string]cpuMark{}}
	for _, n := range nodes {
		t, err := cpuTicks(n.PID())
		m.start[n.Name] = cpuMark{t, time.Now(), err}
	}
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		for {
			m.sample()
			select {
			case <-m.stopc:
				return
			case <-time.After(250 * time.Millisecond):
			}
		}
	}()
	return m
}

func (m *monitor) sample() {
	for _, n := range m.nodes {
		if rss, err := rssMiB(n.PID()); err == nil {
			m.mu.Lock()
			m.peak[n.Name] = max(m.peak[n.Name], rss)
			m.mu.Unlock()
		}
	}
}

func (m *monitor) stop() []usage {
	close(m.stopc)
	m.wg.Wait()
	m.sample()
	var out []usage
	for _, n := range m.nodes {
		s := m.start[n.Name]
		t, err := cpuTicks(n.PID())
		u := usage{node: n.Name, err: errors.Join(s.err, err), rssMiB: m.peak[n.Name]}
		if u.err == nil {
			// Ticks are USER_HZ, 100 per second on every common build: ticks
			// per second of wall time are percent of one core.
			u.cpu = (t - s.ticks) / time.Since(s.at).Seconds()
		}
		out = append(out, u)
	}
	return out
}

// cpuTicks is utime+stime+cutime+cstime of pid (fields 14-17 of stat).
func cpuTicks(pid int) (float64, error) {
	if pid == 0 {
		return 0, errors.New("agent not running")
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces: fields start after the last ')'.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: no command field", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 15 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var sum float64
	for _, x := range f[11:15] { // utime stime cutime cstime: fields 14..17
		v, err := strconv.ParseFloat(x, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		sum += v
	}
	return sum, nil
}

func rssMiB(pid int) (float64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
}

// scaleLogs names in err where the agents' logs were kept.
func (e *Env) scaleLogs(err error) error {
	if e.pair == nil {
		return err
	}
	dir, kerr := keepLogs("scale", e.pair.Nodes())
	if kerr != nil {
		return errors.Join(err, fmt.Errorf("keeping the agent logs: %w", kerr))
	}
	return fmt.Errorf("(agent logs in %s) %w", dir, err)
}

// counts is how often each value of a field occurred.
type counts map[string]int

// countBy counts the records with message msg by their field key.
func countBy(recs []agentpair.Record, msg, key string) counts {
	c := counts{}
	for _, r := range recs {
		if r.Msg() == msg {
			c[oneLine(r.Str(key))]++
		}
	}
	return c
}

func (c counts) total() int {
	n := 0
	for _, v := range c {
		n += v
	}
	return n
}

func (c counts) String() string {
	keys := slices.Sorted(maps.Keys(c))
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%dx %q", c[k], k)
	}
	return strings.Join(parts, ", ")
}
