package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/internal/agentpair"
)

// Env is what scenarios share: the options, one agent pair built on first
// use (host A master, host B slave, zfs-fuse pools), the floor, and the
// kernel's tier list.
type Env struct {
	opts Options
	log  *slog.Logger

	pair     *agentpair.Pair
	settings string // notify mode and interval the running agents use
	run      uint32 // last workload run id
	floor    []float64
	floorSet *floorSet
	probed   *probeReport

	appends *appender // the lag scenarios' shared append workload

	fo *foRig // the failover scenarios' pair (scenario_failover.go)
}

func newEnv(opts Options) *Env { return &Env{opts: opts, log: opts.Logger} }

// Quick reports --quick.
func (e *Env) Quick() bool { return e.opts.Quick }

func (e *Env) progress(format string, args ...any) {
	fmt.Fprintf(e.opts.Progress, "[%s] %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// named reports whether the run selected scenario s by name (a dedicated
// run, which may take longer than its share of the default run).
func (e *Env) named(s string) bool { return slices.Contains(e.opts.Scenarios, s) }

// pick returns quick under --quick, else def.
func pick[T any](e *Env, def, quick T) T {
	if e.opts.Quick {
		return quick
	}
	return def
}

// throughputBytes is the full-sync size: 1 GiB (issue 4), 32 MiB quick.
func (e *Env) throughputBytes() int64 { return pick[int64](e, 1<<30, 32<<20) }

func (e *Env) close() error {
	err := e.closeFailover()
	if e.pair == nil {
		return err
	}
	if e.opts.AgentLogs != "" {
		err = errors.Join(err, e.copyAgentLogs(e.opts.AgentLogs))
	}
	err = errors.Join(err, e.pair.Close())
	e.pair = nil
	return err
}

func (e *Env) agentLogLevel() string {
	if e.opts.AgentLogs != "" {
		return "debug"
	}
	return "info"
}

// copyAgentLogs copies every run's log of both agents into dir, as
// alpha-agent-N.log and beta-agent-N.log.
func (e *Env) copyAgentLogs(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("agent logs: %w", err)
	}
	var errs []error
	for _, n := range []*agentpair.Node{e.pair.Master, e.pair.Slave} {
		logs, err := filepath.Glob(filepath.Join(n.Dir, "agent-*.log"))
		if err != nil {
			return err
		}
		for _, src := range logs {
			b, err := os.ReadFile(src)
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, n.Name+"-"+filepath.Base(src)), b, 0o644)
			}
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("agent logs: %w", err)
	}
	return nil
}

// Pair returns the agent pair, building it on first use: pools sized for
// the full-sync scenario, the workloads' files and the floor's datasets
// in place before the agents' first sync.
func (e *Env) Pair(ctx context.Context) (*agentpair.Pair, error) {
	if e.pair != nil {
		return e.pair, nil
	}
	e.progress("building the rig: two zfs-fuse pools, netns hosts a and b, flocker init and trust")
	size := e.throughputBytes()
	p, err := agentpair.New(ctx, agentpair.Options{
		Bin: e.opts.Bin, Logger: e.log, LogLevel: e.agentLogLevel(),
		MasterPoolSize: size + 768<<20,
		SlavePoolSize:  2*size + 768<<20, // the agents' copy and the local send|recv's
		Settings:       map[string]map[string]string{"notify": {"mode": "timer", "interval": "1s"}},
	})
	if err != nil {
		return nil, err
	}
	e.pair = p
	for _, w := range e.workloads() {
		if err := w.w.Start(p.Master.Mountpoint, 0); err != nil {
			return nil, fmt.Errorf("workload %s: %w", w.name, err)
		}
		if err := w.w.Stop(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// namedWorkload is a workload with its schedule and size.
type namedWorkload struct {
	name, desc string
	w          workload
	sched      schedule
	count      int
}

// workloads are built once per Env so their files exist before the
// first sync; the lag and rate scenarios share the appender.
func (e *Env) workloads() []namedWorkload {
	if e.appends == nil {
		e.appends = &appender{}
	}
	d := pick(e, 3.0, 1.0) // seconds per workload
	return []namedWorkload{
		{"small-appends", "64-byte appends, 50/s", e.appends, steady(50), int(50 * d)},
		{"random-4k-overwrites", "4 KiB pwrite at random offsets of a 256 KiB file, 50/s", newOverwriter(e.opts.Seed), steady(50), int(50 * d)},
		{"bursts", "bursts of 100 appends back to back, one every 500 ms", e.appends, bursts(100, 500*time.Millisecond), int(200 * d)},
		{"mmap-writer", "8-byte stores into a shared writable mapping, 50/s, no msync", newMmapper(e.opts.Seed), steady(50), int(50 * d)},
		{"many-small-files", "one new 100-byte file per write, 50/s", &smallFiles{}, steady(50), int(50 * d)},
		{"steady-1000", "64-byte appends, 1,000/s", e.appends, steady(1000), int(1000 * d)},
	}
}

// Agents makes both agents run with [notify] mode and interval, restarting
// them when they run with other settings (or force is set). A mode the
// agent refuses returns errRefused with the agent's own reason.
func (e *Env) Agents(ctx context.Context, mode string, interval time.Duration, force bool) error {
	p, err := e.Pair(ctx)
	if err != nil {
		return err
	}
	want := fmt.Sprintf("%s/%v", mode, interval)
	if !force && e.settings == want && p.Master.Running() && p.Slave.Running() {
		return nil
	}
	if err := e.stopAgents(); err != nil {
		return err
	}
	for _, n := range p.Nodes() {
		if err := config.SetKeys(n.Config, "notify", "mode", mode, "interval", interval.String()); err != nil {
			return err
		}
	}
	e.progress("agents: [notify] mode = %s, interval = %v", mode, interval)
	if err := e.startAgents(ctx, mode); err != nil {
		return err
	}
	e.settings = want
	if interval <= time.Second && !e.Quick() {
		// One short run first, thrown away: right after a start the tier
		// is still attaching and the peers still exchanging their lists,
		// which is start-up cost, not lag. (Not under --quick, whose
		// minute holds no second per restart for it: its first writes
		// carry that cost, and its figures are for sanity only.)
		if _, err := e.MeasureLag(ctx, e.appTarget(e.appends), steady(10), 3, 30*time.Second); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
		// Then let the start-up chores finish (releasing stale holds,
		// pruning what the last mode left): measured, they stall the first
		// seconds of a run by up to 3 s. Not with the timer, whose ticks
		// log every interval: it would never look quiet.
		if mode != config.NotifyTimer {
			e.waitQuiet(ctx, p.Master, 500*time.Millisecond, 20*time.Second)
		}
	}
	return nil
}

// waitQuiet waits until n's agent logged nothing for quiet, at most max.
func (e *Env) waitQuiet(ctx context.Context, n *agentpair.Node, quiet, max time.Duration) {
	deadline := time.Now().Add(max)
	for time.Now().Before(deadline) {
		mark := n.Log.Len()
		qctx, cancel := context.WithTimeout(ctx, quiet)
		_, err := n.Log.Wait(qctx, mark, func(agentpair.Record) bool { return true })
		cancel()
		if err != nil {
			return // quiet (or ctx ended: the caller sees that next)
		}
	}
}

// errRefused marks an agent that exited at start: the mode is not usable.
var errRefused = errors.New("the agent refused to start")

func (e *Env) stopAgents() error {
	var errs []error
	for _, n := range []*agentpair.Node{e.pair.Master, e.pair.Slave} {
		if err := n.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("stopping %s: %w", n.Name, err))
		}
	}
	e.settings = ""
	return errors.Join(errs...)
}

func (e *Env) startAgents(ctx context.Context, mode string) error {
	p := e.pair
	mark := p.Master.Log.Len()
	if err := p.Slave.Start(); err != nil {
		return err
	}
	if err := p.Master.Start(); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	r, err := p.Master.Log.Wait(wctx, mark, func(r agentpair.Record) bool {
		return r.Msg() == "peer connected" || r.Msg() == "(agent exited)"
	})
	if err != nil {
		return fmt.Errorf("master did not connect to its peer: %w\n%s", err, p.Master.Log.Tail(10))
	}
	if r.Msg() == "(agent exited)" {
		// The agent's last words: an error record, or the plain line
		// `flocker agent: ...` that main prints before exiting.
		reason := r.Str("how")
		for _, rec := range p.Master.Log.Records(mark) {
			switch {
			case rec.Str("level") == "ERROR":
				reason = rec.Msg() + ": " + rec.Str("err")
			case rec.Msg() == "(not json)" && strings.HasPrefix(rec.Str("line"), "flocker agent: "):
				reason = strings.TrimPrefix(rec.Str("line"), "flocker agent: ")
			}
		}
		_ = p.Slave.Stop()
		return fmt.Errorf("%w: %s", errRefused, reason)
	}
	// A running agent may still refuse the mode: the master's dataset loop
	// starts once the roles are settled, and a forced tier that cannot
	// attach leaves it without one (the agent keeps serving, and retrying).
	r, err = p.Master.Log.Wait(wctx, mark, func(r agentpair.Record) bool {
		return r.Msg() == "dataset notifier" || r.Msg() == "notifier tier refused" && r.Str("tier") == mode
	})
	if err != nil {
		return fmt.Errorf("master started no dataset notifier: %w\n%s", err, p.Master.Log.Tail(10))
	}
	if r.Msg() == "notifier tier refused" {
		_ = p.Master.Stop()
		_ = p.Slave.Stop()
		return fmt.Errorf("%w: %s: %s", errRefused, r.Str("tier"), r.Str("reason"))
	}
	return nil
}

// AddDatasets creates datasets on the master's pool (unless they exist:
// create false), adds them to both
// configs (agents stopped meanwhile: the agent rewrites its file) and
// restarts the agents; it waits for each one's first full transfer.
func (e *Env) AddDatasets(ctx context.Context, names []string, create bool, timeout time.Duration) error {
	p, err := e.Pair(ctx)
	if err != nil {
		return err
	}
	mode, interval := e.settingsNow()
	if err := e.stopAgents(); err != nil {
		return err
	}
	for _, name := range names {
		if create {
			if _, err := p.Master.Pool.CreateDataset(ctx, name, nil); err != nil {
				return err
			}
		}
		for _, n := range p.Nodes() {
			if err := config.SetKeys(n.Config, config.DatasetSection(name), "zfs", n.Pool.Name+"/"+name); err != nil {
				return err
			}
		}
	}
	mark := p.Slave.Log.Len()
	for _, n := range p.Nodes() {
		if err := config.SetKeys(n.Config, "notify", "mode", mode, "interval", interval.String()); err != nil {
			return err
		}
	}
	if err := e.startAgents(ctx, mode); err != nil {
		return err
	}
	e.settings = fmt.Sprintf("%s/%v", mode, interval)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for _, name := range names {
		if _, err := p.Slave.Log.Wait(wctx, mark, func(r agentpair.Record) bool {
			return r.Msg() == "received" && r.Str("dataset") == name
		}); err != nil {
			return fmt.Errorf("first transfer of %s: %w\n%s", name, err, p.Master.Log.Tail(5))
		}
	}
	return nil
}

func (e *Env) settingsNow() (string, time.Duration) {
	mode, iv, ok := strings.Cut(e.settings, "/")
	if !ok {
		return e.BestTier(), time.Second
	}
	d, _ := time.ParseDuration(iv)
	return mode, d
}

// probeReport is the part of `flocker probe --json` the harness reads.
type probeReport struct {
	Tiers []probeTier `json:"tiers"`
	ZFS   struct {
		Dialect string `json:"dialect"`
		Version string `json:"version"`
	} `json:"zfs"`
}

type probeTier struct {
	Name      string `json:"name"`
	Available bool   `json:"available"`
	Reason    string `json:"reason"`
}

// probe runs `flocker probe --json` once.
func (e *Env) probe(ctx context.Context) (*probeReport, error) {
	if e.probed != nil {
		return e.probed, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, e.opts.Bin, "probe", "--json").Output()
	if err != nil && len(out) == 0 {
		return nil, fmt.Errorf("flocker probe: %w", err)
	}
	var r probeReport
	if err := json.Unmarshal(out, &r); err != nil {
		return nil, fmt.Errorf("flocker probe --json: %w", err)
	}
	e.probed = &r
	return &r, nil
}

func (e *Env) zfsVersion(ctx context.Context) string {
	r, err := e.probe(ctx)
	if err != nil {
		return "unknown (" + oneLine(err.Error()) + ")"
	}
	v := r.ZFS.Dialect
	if r.ZFS.Version != "" {
		v += " " + r.ZFS.Version
	}
	return v
}

// ebpfModes are the [notify] modes that load an eBPF tier, best first.
var ebpfModes = []string{config.NotifyFentry, config.NotifyKprobe, config.NotifyTracepoint, config.NotifyBlock}

// BestTier is the best eBPF tier the probe found, or the timer.
func (e *Env) BestTier() string {
	if e.probed != nil {
		for _, m := range ebpfModes {
			for _, t := range e.probed.Tiers {
				if t.Name == m && t.Available {
					return m
				}
			}
		}
	}
	return config.NotifyTimer
}

// target is one dataset a lag run writes to.
type target struct {
	dataset            string // logical name in the agents' logs
	masterDir, replica string
	w                  workload
}

// boundHolds reports whether the time bound of attribute.go holds for w:
// not for mmap stores, which reach ZFS only when the kernel writes the
// dirty pages back (the eBPF tier's syncfs does that before its snapshot,
// the timer tier's snapshot may come first).
func boundHolds(w workload) bool {
	_, mm := w.(*mmapper)
	return !mm
}

// lagResult is a lag run's outcome over all its targets.
type lagResult struct {
	attribution
	writes int
	// Elapsed is how long the writes took to issue (the achieved rate).
	Elapsed time.Duration
	// First is when the first write returned; deliveries are what the
	// slave received for the targets since the run began.
	First      time.Time
	deliveries []delivery
	// undeliveredBy counts the undelivered writes per dataset.
	undeliveredBy map[string]int
}

// MeasureLag issues count writes by sched, spread round robin over
// targets, and attributes each to the snapshot that brought it to B (see
// attribute.go). It waits up to settle after the last write for the
// replica to catch up; writes still missing then are Undelivered.
func (e *Env) MeasureLag(ctx context.Context, targets []target, sched schedule, count int, settle time.Duration) (lagResult, error) {
	p := e.pair
	e.run++
	run := e.run
	for i, t := range targets {
		if err := t.w.Start(t.masterDir, run); err != nil {
			for _, s := range targets[:i] {
				_ = s.w.Stop()
			}
			return lagResult{}, err
		}
	}
	stopped := false
	stopAll := func() error {
		if stopped {
			return nil
		}
		stopped = true
		var errs []error
		for _, t := range targets {
			errs = append(errs, t.w.Stop())
		}
		return errors.Join(errs...)
	}
	defer stopAll()

	obs := newObserver(p, targets, run, e.log)
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); obs.follow(wctx) }()
	defer func() { cancel(); wg.Wait() }()

	done := make([][]time.Time, len(targets))
	start := time.Now()
	for i := range count {
		if d := time.Until(start.Add(sched(i))); d > 0 {
			select {
			case <-ctx.Done():
				return lagResult{}, ctx.Err()
			case <-time.After(d):
			}
		}
		k := i % len(targets)
		if err := targets[k].w.Write(len(done[k])); err != nil {
			return lagResult{}, fmt.Errorf("write %d to %s: %w", i, targets[k].dataset, err)
		}
		done[k] = append(done[k], time.Now())
	}
	elapsed := time.Since(start)
	// The mapping and files close now: a store after this point would not
	// be one of the counted writes, and nothing stays open in the pool.
	if err := stopAll(); err != nil {
		return lagResult{}, err
	}
	deadline := time.Now().Add(settle)
	var res lagResult
	for {
		res = lagResult{writes: count, Elapsed: elapsed, undeliveredBy: map[string]int{}}
		if len(done[0]) > 0 {
			res.First = done[0][0]
		}
		for k, t := range targets {
			ds := obs.deliveries(t.dataset, boundHolds(t.w))
			res.deliveries = append(res.deliveries, ds...)
			a := attribute(done[k], ds)
			res.Lags = append(res.Lags, a.Lags...)
			res.Bounded += a.Bounded
			res.Undelivered += a.Undelivered
			res.undeliveredBy[t.dataset] += a.Undelivered
			res.Inconsistent += a.Inconsistent
		}
		if res.Undelivered == 0 || time.Now().After(deadline) {
			return res, nil
		}
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// observer follows both agents' logs during a lag run: snapshot start
// times from the master, receive times from the slave, and the replica's
// content read right after each acknowledged transfer.
type observer struct {
	p       *agentpair.Pair
	log     *slog.Logger
	run     uint32
	targets map[string]target
	mMark   int
	sMark   int
	// sLook is where searches for the slave's receive of an acked
	// snapshot start: a little before sMark, since a transfer in flight
	// when the run began was received before sMark and acked after mMark.
	sLook int

	mu       sync.Mutex
	starts   map[string]time.Time // dataset@snapshot -> master began taking it
	observed map[string]int       // dataset@snapshot -> highest seq read
}

func newObserver(p *agentpair.Pair, ts []target, run uint32, log *slog.Logger) *observer {
	o := &observer{p: p, log: log, run: run, targets: map[string]target{}, mMark: p.Master.Log.Len(), sMark: p.Slave.Log.Len(),
		sLook: max(0, p.Slave.Log.Len()-200), starts: map[string]time.Time{}, observed: map[string]int{}}
	for _, t := range ts {
		o.targets[t.dataset] = t
	}
	return o
}

func recordTime(r agentpair.Record) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, r.Str("time"))
	return t
}

func (o *observer) follow(ctx context.Context) {
	i := o.mMark
	for {
		recs := o.p.Master.Log.Records(i)
		if len(recs) == 0 {
			if _, err := o.p.Master.Log.Wait(ctx, i, func(agentpair.Record) bool { return true }); err != nil {
				return
			}
			continue
		}
		i += len(recs)
		for _, r := range recs {
			ds := r.Str("dataset")
			t, ok := o.targets[ds]
			if !ok {
				continue
			}
			switch r.Msg() {
			case "snapshot taken":
				took := time.Duration(r.Num("took")) // slog writes durations as nanoseconds
				o.mu.Lock()
				o.starts[ds+"@"+r.Str("snapshot")] = recordTime(r).Add(-took)
				o.mu.Unlock()
			case "replicated":
				snap := r.Str("target")
				// The slave logged "received" before it acked, but its log
				// reaches this process through another pipe: wait for it.
				t0 := time.Now()
				rctx, cancel := context.WithTimeout(ctx, time.Second)
				_, _ = o.p.Slave.Log.Wait(rctx, o.sLook, func(r agentpair.Record) bool {
					return r.Msg() == "received" && r.Str("dataset") == ds && r.Str("target") == snap
				})
				cancel()
				t1 := time.Now()
				h, err := t.w.Highest(t.replica, o.run)
				t2 := time.Now()
				// Counts only if no newer receive landed while reading.
				newest := o.newestReceived(ds)
				if err == nil && newest == snap {
					o.mu.Lock()
					o.observed[ds+"@"+snap] = h
					o.mu.Unlock()
				} else {
					o.log.Debug("replica reading not used", "dataset", ds, "snapshot", snap, "newest_received", newest, "err", err,
						"behind", t0.Sub(recordTime(r)), "waited", t1.Sub(t0), "read", t2.Sub(t1))
				}
			}
		}
	}
}

func (o *observer) newestReceived(ds string) string {
	newest := ""
	for _, r := range o.p.Slave.Log.Records(o.sLook) {
		if r.Msg() == "received" && r.Str("dataset") == ds {
			newest = r.Str("target")
		}
	}
	return newest
}

// deliveries lists what the slave received for ds since the run began.
func (o *observer) deliveries(ds string, bound bool) []delivery {
	o.mu.Lock()
	defer o.mu.Unlock()
	var out []delivery
	for _, r := range o.p.Slave.Log.Records(o.sMark) {
		if r.Msg() != "received" || r.Str("dataset") != ds {
			continue
		}
		snap := r.Str("target")
		d := delivery{Snapshot: snap, Received: recordTime(r)}
		if bound {
			d.Start = o.starts[ds+"@"+snap]
		}
		if h, ok := o.observed[ds+"@"+snap]; ok {
			d.Observed, d.Highest = true, h
		}
		out = append(out, d)
	}
	return out
}

// appTarget is the main dataset with workload w.
func (e *Env) appTarget(w workload) []target {
	return []target{{dataset: agentpair.DatasetName, masterDir: e.pair.Master.Mountpoint, replica: e.pair.Slave.Mountpoint, w: w}}
}

// lagRows turns a lag run into its distribution row plus notes.
func lagRow(cas string, r lagResult) Row {
	row := dist("", cas, "write-to-replica lag", "ms", millis(r.Lags))
	var notes []string
	if r.Undelivered > 0 {
		notes = append(notes, fmt.Sprintf("%d of %d writes never reached the replica within the wait", r.Undelivered, r.writes))
		if row.N == 0 {
			row.Status = StatusFailed
		}
	}
	if r.Bounded > 0 {
		notes = append(notes, fmt.Sprintf("%d lags from the time bound (upper bounds)", r.Bounded))
	}
	if r.Inconsistent > 0 {
		notes = append(notes, fmt.Sprintf("%d replica readings contradicted the time bound", r.Inconsistent))
	}
	if r.Elapsed > 0 && r.writes > 1 {
		notes = append(notes, fmt.Sprintf("issued %d writes in %v", r.writes, r.Elapsed.Round(time.Millisecond)))
	}
	row.Note = strings.Join(notes, "; ")
	return row
}
