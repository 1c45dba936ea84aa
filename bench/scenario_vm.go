package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/internal/vmdemo"
	"github.com/flockerha/flocker/internal/vmtest"
)

func init() {
	register(Scenario{Name: "vm", Order: 95, VM: true, Run: runVM,
		Summary: "the VM tier (make bench VM=1): on two OpenZFS guests, the floor (also while 1,000 writes/s land), lag per tier (fentry, kprobe, tracepoint, fanotify), lag at 10 and 1,000 writes/s with the best tier, full-sync throughput over QUIC beside a local zfs send | zfs receive"})
}

// vmNote is on every row of the VM tier.
const vmNote = "tier vm: OpenZFS 2.3 on Debian's 6.1 kernel in qemu software emulation (TCG), two guests on one bridge"

// vmModes are the trigger modes measured in the guests, where every
// eBPF tier loads.
var vmModes = []string{config.NotifyFentry, config.NotifyKprobe, config.NotifyTracepoint, config.NotifyFanotify}

// runVM boots the VM demo's two guests and measures, inside them, the
// floor (snapshot and incremental send|recv on a's pool, timed in the
// guest) and the write-to-replica lag of each trigger mode: the agents
// run with [notify] mode forced, a write lands on a through guestexec
// and b's guestexec reports the file; both ends are timed here.
func runVM(ctx context.Context, e *Env) ([]Row, error) {
	img, err := vmtest.FindImages()
	if err != nil {
		return []Row{{Case: "-", Metric: "-", Status: StatusUnavailable, Note: oneLine(err.Error())}}, nil
	}
	e.progress("vm: booting two guests (%s, OpenZFS %s)", img.KernelRelease, img.ZFSVersion)
	c, err := vmdemo.Boot(ctx, vmdemo.Options{Images: img, Log: e.log}, progressWriter{e})
	if err != nil {
		return nil, err
	}
	var rows []Row
	failed := true
	if e.opts.AgentLogs != "" {
		for _, g := range []*vmdemo.Guest{c.A, c.B} {
			g.SetAgentLevel("debug")
		}
	}
	defer func() {
		if e.opts.AgentLogs != "" {
			if err := copyVMAgentLogs(ctx, c, e.opts.AgentLogs); err != nil {
				e.log.Warn("vm tier: copying the agents' logs", "err", err)
			}
		}
		if cerr := c.Close(failed); cerr != nil {
			e.log.Warn("vm tier teardown", "err", cerr)
		}
	}()
	rows = append(rows, value("", "boot", "boot to ZFS loaded", "s", c.BootTime.Seconds()))
	if err := c.Configure(ctx, map[string][]string{
		// Emulated guests on a busy machine stall now and then: no
		// failover business here, only replication.
		"failover": {"heartbeat", "500ms", "timeout", "8s"},
		// The rate runs read each received snapshot back after the run
		// (scenario_vm_rates.go): keep them all meanwhile.
		"snapshot": {"retention", "1h:all"},
	}); err != nil {
		return rows, err
	}
	floorN := pick(e, 20, 5)
	floor, err := vmFloor(ctx, e, c.A, floorN)
	if err != nil {
		return rows, err
	}
	fr := dist("", "floor", "floor", "ms", floor)
	fr.Note = vmNote + "; in guest a: zfs snapshot + incremental send|recv into a second dataset, timed in the guest"
	rows = append(rows, fr)
	floorP50 := Summarize(floor).P50
	loadSecs := pick(e, 10.0, 2.0)
	last := fmt.Sprintf("f%d", floorN)
	for _, syncLoop := range []bool{false, true} {
		cas, prefix := "floor while 1,000 writes/s land", "l"
		what := "no agent running: what ZFS alone takes under that load"
		if syncLoop {
			cas, prefix = "floor while 1,000 writes/s land and syncfs loops", "s"
			what = "and a shell loop runs syncfs on the dataset back to back, as an event tier's notifier does while events keep coming; no agent running"
		}
		e.progress("vm: %s, %.0f s", cas, loadSecs)
		var loaded []float64
		var ap vmdemo.Appends
		loaded, ap, last, err = vmFloorLoaded(ctx, c.A, last, prefix, 1000, loadSecs, syncLoop)
		if err != nil {
			rows = append(rows, Row{Case: cas, Metric: "floor", Unit: "ms", Status: StatusFailed, Note: oneLine(err.Error())})
			continue
		}
		lr := dist("", cas, "floor", "ms", loaded)
		lr.Note = fmt.Sprintf("%s; as the floor, while a writer in guest a appends 64-byte records to the same dataset at 1,000/s (%d in %v: %.0f/s achieved), %s (the targets stay against the plain floor)",
			vmNote, len(ap.Done), ap.Elapsed.Round(time.Millisecond), float64(len(ap.Done))/ap.Elapsed.Seconds(), what)
		rows = append(rows, lr)
	}
	// syncfs, which the notifiers run before reporting a change, idle and
	// under the same load.
	quiet, busy, sap, err := vmSyncfs(ctx, c.A, pick(e, 5, 2), 1000, pick(e, 5.0, 1.5))
	if err != nil {
		rows = append(rows, Row{Case: "syncfs", Metric: "syncfs", Unit: "ms", Status: StatusFailed, Note: oneLine(err.Error())})
	} else {
		qr := dist("", "syncfs, idle", "syncfs", "ms", quiet)
		qr.Note = vmNote + "; busybox sync -f (syncfs(2)) on the floor dataset in guest a, timed in the guest, no agent running: the flush every notifier tier runs before it reports a change"
		br := dist("", "syncfs while 1,000 writes/s land", "syncfs", "ms", busy)
		br.Note = fmt.Sprintf("%s; as syncfs, idle, while a writer in guest a appends to that dataset at 1,000/s (%d in %v: %.0f/s achieved); a call still running when the writer stops is timed to its end",
			vmNote, len(sap.Done), sap.Elapsed.Round(time.Millisecond), float64(len(sap.Done))/max(sap.Elapsed.Seconds(), 1e-9))
		rows = append(rows, qr, br)
	}
	n := pick(e, 10, 4)
	// Measured best tier last (vmModes is best first), so that the rate
	// runs below find the agents running with it; reported in vmModes order.
	lagRows := make([]Row, len(vmModes))
	best := ""
	for i := len(vmModes) - 1; i >= 0; i-- {
		mode := vmModes[i]
		r, err := vmLag(ctx, e, c, mode, n)
		if err != nil {
			lagRows[i] = Row{Case: mode, Metric: "write-to-replica lag", Unit: "ms", Status: StatusFailed, Note: oneLine(err.Error())}
			continue
		}
		if r.Status == StatusOK {
			best = mode
		}
		againstFloor(&r, floorP50)
		lagRows[i] = r
	}
	rows = append(rows, lagRows...)
	if best == "" {
		rows = append(rows, Row{Case: "rates", Metric: "write-to-replica lag", Status: StatusFailed, Note: "no tier measured its lag"})
	} else {
		if best != vmModes[0] {
			// The agents run with the tier measured last: restart them with the best.
			if _, err := vmAgents(ctx, c, best); err != nil {
				return rows, err
			}
		}
		rr, err := vmRates(ctx, e, c, best, []float64{10, 1000}, 100, floorP50)
		if err != nil {
			rows = append(rows, Row{Case: best + "@rates", Metric: "write-to-replica lag", Unit: "ms", Status: StatusFailed, Note: oneLine(err.Error())})
		}
		rows = append(rows, rr...)
		// The 1 s timer at 1,000 writes/s beside it: one syncfs per tick
		// instead of an event tier's flush loop (the syncfs-loop floor row
		// shows what back-to-back flushes cost ZFS under that load).
		if tier, err := vmAgents(ctx, c, config.NotifyTimer); err != nil || tier != config.NotifyTimer {
			rows = append(rows, Row{Case: "timer-1s@1000/s", Metric: "write-to-replica lag", Unit: "ms", Status: StatusFailed, Note: fmt.Sprintf("agents with the timer tier: watching with %q, %v", tier, err)})
		} else {
			tr, err := vmRates(ctx, e, c, "timer-1s", []float64{1000}, 110, floorP50)
			if err != nil {
				tr = append(tr, Row{Case: "timer-1s@1000/s", Metric: "write-to-replica lag", Unit: "ms", Status: StatusFailed, Note: oneLine(err.Error())})
			}
			rows = append(rows, tr...)
		}
	}
	tr, err := vmThroughput(ctx, e, c, pick[int64](e, 128<<20, 16<<20))
	if err != nil {
		tr = append(tr, Row{Case: "full sync over QUIC (agents)", Metric: "full-sync throughput", Unit: "MB/s", Status: StatusFailed, Note: oneLine(err.Error())})
	}
	rows = append(rows, tr...)
	failed = false
	return rows, nil
}

// vmFloor times, in guest a, a snapshot and an incremental send|recv of
// a 64-byte write into another dataset of the same pool.
func vmFloor(ctx context.Context, e *Env, a *vmdemo.Guest, n int) ([]float64, error) {
	pool := a.Pool()
	if _, err := a.Sh(ctx, fmt.Sprintf("zfs create %[1]s/floor && echo 0 >/%[1]s/floor/append.log && zfs snapshot %[1]s/floor@f0 && zfs send %[1]s/floor@f0 | zfs receive %[1]s/floorcopy && zfs set readonly=on %[1]s/floorcopy", pool)); err != nil {
		return nil, err
	}
	var out []float64
	for i := 1; i <= n; i++ {
		if err := a.Write(ctx, fmt.Sprintf("/%s/floor/append.log", pool), fmt.Sprintf("%064d", i)); err != nil {
			return nil, err
		}
		_, took, err := a.ShTimed(ctx, fmt.Sprintf("zfs snapshot %[1]s/floor@f%[2]d && zfs send -i @f%[3]d %[1]s/floor@f%[2]d | zfs receive %[1]s/floorcopy", pool, i, i-1))
		if err != nil {
			return nil, err
		}
		out = append(out, float64(took)/float64(time.Millisecond))
	}
	return out, nil
}

// vmLag restarts both agents with [notify] mode forced and measures n
// writes on alpha until they are visible on beta's replica.
func vmLag(ctx context.Context, e *Env, c *vmdemo.Cluster, mode string, n int) (Row, error) {
	e.progress("vm: lag with [notify] mode = %s", mode)
	a, b := c.A, c.B
	tier, err := vmAgents(ctx, c, mode)
	if err != nil {
		return Row{}, err
	}
	if tier != mode {
		return Row{Case: mode, Metric: "write-to-replica lag", Status: StatusUnavailable,
			Note: fmt.Sprintf("%s; the agent watches with %s instead", vmNote, tier)}, nil
	}
	// A first write, not counted, waits out the first transfer after the
	// start (a full send the first time).
	warm := a.Mountpoint() + "/warm-" + mode + ".txt"
	if err := a.Write(ctx, warm, mode+"\n"); err != nil {
		return Row{}, err
	}
	if err := b.Wait(ctx, b.Mountpoint()+"/warm-"+mode+".txt", mode+"\n", 3*time.Minute); err != nil {
		return Row{}, err
	}
	var lags []float64
	for i := range n {
		name := fmt.Sprintf("lag-%s-%d.txt", mode, i)
		content := fmt.Sprintf("%s %d %s\n", mode, i, time.Now().Format(time.RFC3339Nano))
		seen := make(chan error, 1)
		var seenAt time.Time
		go func() {
			err := b.Wait(ctx, b.Mountpoint()+"/"+name, content, 2*time.Minute)
			seenAt = time.Now()
			seen <- err
		}()
		if err := a.Write(ctx, a.Mountpoint()+"/"+name, content); err != nil {
			return Row{}, err
		}
		wrote := time.Now()
		if err := <-seen; err != nil {
			return Row{}, err
		}
		lags = append(lags, float64(seenAt.Sub(wrote))/float64(time.Millisecond))
		time.Sleep(300 * time.Millisecond)
	}
	r := dist("", mode, "write-to-replica lag", "ms", lags)
	r.Note = vmNote + "; from write() on a returning (guestexec) to b's guestexec seeing the file, both timed on this machine"
	return r, nil
}

// vmAgents restarts both agents with [notify] mode forced and returns the
// tier alpha watches with once it started.
func vmAgents(ctx context.Context, c *vmdemo.Cluster, mode string) (string, error) {
	a, b := c.A, c.B
	for _, g := range []*vmdemo.Guest{a, b} {
		if err := g.StopAgent(ctx); err != nil {
			return "", err
		}
		if err := g.SetKeys(ctx, "notify", "mode", mode); err != nil {
			return "", err
		}
	}
	from := 0
	if recs, err := a.AgentLog(ctx); err == nil {
		from = len(recs)
	}
	for _, g := range []*vmdemo.Guest{b, a} {
		if err := g.StartAgent(ctx); err != nil {
			return "", err
		}
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		recs, err := a.AgentLog(ctx)
		if err != nil {
			return "", err
		}
		for _, r := range recs[min(from, len(recs)):] {
			if r.Msg() == "watching" {
				return r.Str("tier"), nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("alpha did not start watching with %s within 3 min", mode)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// copyVMAgentLogs copies both guests' agent logs (every run, JSON) into
// dir as alpha-vm-agent.log and beta-vm-agent.log.
func copyVMAgentLogs(ctx context.Context, c *vmdemo.Cluster, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var errs []error
	for _, g := range []*vmdemo.Guest{c.A, c.B} {
		text, err := g.AgentLogText(ctx)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, g.Node()+"-vm-agent.log"), []byte(text), 0o644)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// progressWriter turns the VM cluster's notes into progress lines.
type progressWriter struct{ e *Env }

func (p progressWriter) Write(b []byte) (int, error) {
	p.e.progress("vm: %s", oneLine(string(b)))
	return len(b), nil
}
