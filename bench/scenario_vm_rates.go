package bench

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/vmdemo"
)

// The VM tier's rates, loaded floor and full-sync throughput: issue 4's
// targets measured on OpenZFS.
//
// Clocks. The writer runs in guest a and times each write on a's clock;
// the time b's agent logged "received" is on b's clock. The guests' wall
// clocks start from the emulated RTC (whole seconds) and run no NTP, so
// they differ by up to a second: too much to subtract naively, and this
// machine cannot see either event itself. Every time is therefore put on
// a's clock: the offset b - a is estimated through guestexec (GET /time,
// the reading with the shortest round trip of several, taken at the
// trip's midpoint, so its error is at most half of each round trip),
// before and after the runs; the mean is used and both readings, the
// drift between them and the error bound are in the rows' notes. Which
// snapshot holds a write is read exactly after the run, from the received
// snapshot's own copy of the file on b (.zfs/snapshot/NAME), and
// attributed as on the host tier (attribute.go); retention keeps every
// snapshot of the last hour meanwhile (Configure in runVM).

// vmClock is b's wall clock minus a's, as estimated.
type vmClock struct {
	skew  time.Duration // b - a
	bound time.Duration // the estimate's error is at most this
}

func measureVMClock(ctx context.Context, c *vmdemo.Cluster) (vmClock, error) {
	offA, rttA, err := c.A.ClockOffset(ctx, 8)
	if err != nil {
		return vmClock{}, err
	}
	offB, rttB, err := c.B.ClockOffset(ctx, 8)
	if err != nil {
		return vmClock{}, err
	}
	return vmClock{skew: offB - offA, bound: (rttA + rttB) / 2}, nil
}

// onA puts a time read on b's clock onto a's.
func (k vmClock) onA(t time.Time) time.Time { return t.Add(-k.skew) }

// vmMark is where a rate run's records begin in each guest's agent log.
type vmMark struct{ a, b int }

func markVMLogs(ctx context.Context, c *vmdemo.Cluster) (vmMark, error) {
	ra, err := c.A.AgentLog(ctx)
	if err != nil {
		return vmMark{}, err
	}
	rb, err := c.B.AgentLog(ctx)
	if err != nil {
		return vmMark{}, err
	}
	return vmMark{len(ra), len(rb)}, nil
}

// vmReceived is one "received" record of b's for dataset app.
type vmReceived struct {
	target string
	at     time.Time // b's clock
}

// vmLogEvents picks from the agents' records since the marks: when a
// began taking each snapshot of ds (a's clock) and b's receives of ds.
func vmLogEvents(aRecs, bRecs []agentpair.Record, ds string) (map[string]time.Time, []vmReceived) {
	starts := map[string]time.Time{}
	for _, r := range aRecs {
		if r.Msg() == "snapshot taken" && r.Str("dataset") == ds {
			starts[r.Str("snapshot")] = recordTime(r).Add(-time.Duration(r.Num("took")))
		}
	}
	var recv []vmReceived
	for _, r := range bRecs {
		if r.Msg() == "received" && r.Str("dataset") == ds {
			recv = append(recv, vmReceived{target: r.Str("target"), at: recordTime(r)})
		}
	}
	return starts, recv
}

// vmDeliveries builds attribute's input: each receive on a's clock, its
// snapshot's start, and the highest write it holds where that was read
// (seqs[i], errs[i] for recv[i]).
func vmDeliveries(starts map[string]time.Time, recv []vmReceived, seqs []int, errs []error, k vmClock) []delivery {
	out := make([]delivery, len(recv))
	for i, r := range recv {
		d := delivery{Snapshot: r.target, Start: starts[r.target], Received: k.onA(r.at), Highest: -1}
		if i < len(seqs) && errs[i] == nil {
			d.Observed, d.Highest = true, seqs[i]
		}
		out[i] = d
	}
	return out
}

// vmRun is what a rate run saw, before the clocks are put together.
type vmRun struct {
	ap     vmdemo.Appends
	starts map[string]time.Time
	recv   []vmReceived
	seqs   []int
	errs   []error
	// unread counts receives whose snapshot could not be read back.
	unread   int
	firstErr error
	// The agents' records of the run, for the stage medians.
	aRecs, bRecs []agentpair.Record
}

// result attributes the run's writes with b's clock put on a's by k.
func (r vmRun) result(k vmClock) lagResult {
	res := lagResult{attribution: attribute(r.ap.Done, vmDeliveries(r.starts, r.recv, r.seqs, r.errs, k)),
		writes: len(r.ap.Done), Elapsed: r.ap.Elapsed}
	if len(r.ap.Done) > 0 {
		res.First = r.ap.Done[0]
	}
	return res
}

// vmRate has guest a append count records at rate into the protected
// dataset while the agents run, and attributes each write to the first
// snapshot b received that holds it.
func vmRate(ctx context.Context, e *Env, c *vmdemo.Cluster, run uint32, rate float64, count int) (vmRun, error) {
	a, b := c.A, c.B
	mark, err := markVMLogs(ctx, c)
	if err != nil {
		return vmRun{}, err
	}
	const file = "append.log"
	ap, err := a.Appends(ctx, a.Mountpoint()+"/"+file, run, rate, count)
	if err != nil {
		return vmRun{}, err
	}
	// Settle: until b's replica holds the last write, at most 2 minutes.
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		seqs, errs, err := b.Highest(ctx, run, []string{b.Mountpoint() + "/" + file})
		if err != nil {
			return vmRun{}, err
		}
		if errs[0] == nil && seqs[0] >= count-1 {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	aRecs, err := a.AgentLog(ctx)
	if err != nil {
		return vmRun{}, err
	}
	bRecs, err := b.AgentLog(ctx)
	if err != nil {
		return vmRun{}, err
	}
	aRecs, bRecs = aRecs[min(mark.a, len(aRecs)):], bRecs[min(mark.b, len(bRecs)):]
	starts, recv := vmLogEvents(aRecs, bRecs, agentpair.DatasetName)
	paths := make([]string, len(recv))
	for i, r := range recv {
		paths[i] = fmt.Sprintf("%s/.zfs/snapshot/%s/%s", b.Mountpoint(), r.target, file)
	}
	seqs, errs, err := b.Highest(ctx, run, paths)
	if err != nil {
		return vmRun{}, err
	}
	out := vmRun{ap: ap, starts: starts, recv: recv, seqs: seqs, errs: errs, aRecs: aRecs, bRecs: bRecs}
	for i, err := range errs {
		if err != nil {
			e.log.Debug("vm: snapshot not read back", "snapshot", recv[i].target, "err", err)
			if out.unread++; out.firstErr == nil {
				out.firstErr = err
			}
		}
	}
	return out, nil
}

// vmStages says where a snapshot's time went, as medians over the
// snapshots of ds that b received: the master's wait from the first change
// it saw to starting the snapshot (its change_age), taking it (the
// master's took: zfs snapshot, then zfs get of its guid), the snapshot
// taken to its transfer starting, and the transfer's start to
// b's "received" (b's zfs receive alone in brackets).
func vmStages(aRecs, bRecs []agentpair.Record, ds string, k vmClock) string {
	taken := map[string]agentpair.Record{}
	started := map[string]time.Time{}
	for _, r := range aRecs {
		if r.Str("dataset") != ds {
			continue
		}
		switch r.Msg() {
		case "snapshot taken":
			taken[r.Str("snapshot")] = r
		case "transfer started":
			started[r.Str("target")] = recordTime(r)
		}
	}
	var age, snap, queue, xfer, recv []float64
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for _, r := range bRecs {
		if r.Msg() != "received" || r.Str("dataset") != ds {
			continue
		}
		t, ok1 := taken[r.Str("target")]
		st, ok2 := started[r.Str("target")]
		if !ok1 || !ok2 {
			continue
		}
		age = append(age, ms(time.Duration(t.Num("change_age"))))
		snap = append(snap, ms(time.Duration(t.Num("took"))))
		queue = append(queue, ms(st.Sub(recordTime(t))))
		xfer = append(xfer, ms(k.onA(recordTime(r)).Sub(st)))
		recv = append(recv, ms(time.Duration(r.Num("took"))))
	}
	if len(snap) == 0 {
		return ""
	}
	p50 := func(v []float64) float64 { return Summarize(v).P50 }
	return fmt.Sprintf("per received snapshot (%d), medians: first change seen to snapshot start %.0f ms, taking it (zfs snapshot, zfs get) %.0f ms, taken to transfer start %.0f ms, transfer start to b's received %.0f ms (b's receive %.0f ms)",
		len(snap), p50(age), p50(snap), p50(queue), p50(xfer), p50(recv))
}

// vmFlushWarnings counts a's warnings about a syncfs that failed or did
// not return in time (the notifiers' flush before reporting a change).
func vmFlushWarnings(aRecs []agentpair.Record) string {
	n, first := 0, ""
	for _, r := range aRecs {
		if r.Str("level") == "WARN" && strings.Contains(r.Msg(), "syncfs") {
			if n++; first == "" {
				first = r.Msg() + ": " + r.Str("err")
			}
		}
	}
	if n == 0 {
		return ""
	}
	return fmt.Sprintf("alpha warned %d times about syncfs (%s)", n, first)
}

// vmSyncfs times syncfs(2) on the floor dataset in guest a (busybox sync
// -f), the flush every notifier tier runs before reporting a change: idle
// rounds, then rounds for as long as a writer in guest a appends at rate
// into that dataset. No agent runs.
func vmSyncfs(ctx context.Context, a *vmdemo.Guest, idle int, rate, secs float64) (quiet, loaded []float64, ap vmdemo.Appends, err error) {
	script := fmt.Sprintf("sync -f /%s/floor", a.Pool())
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	for range idle {
		_, took, err := a.ShTimed(ctx, script)
		if err != nil {
			return nil, nil, ap, err
		}
		quiet = append(quiet, ms(took))
	}
	type done struct {
		ap  vmdemo.Appends
		err error
	}
	wrote := make(chan done, 1)
	go func() {
		ap, err := a.Appends(ctx, fmt.Sprintf("/%s/floor/load.log", a.Pool()), 201, rate, int(rate*secs))
		wrote <- done{ap, err}
	}()
	time.Sleep(300 * time.Millisecond) // the writer under way first
	for {
		select {
		case d := <-wrote:
			return quiet, loaded, d.ap, d.err
		default:
		}
		_, took, err := a.ShTimed(ctx, script)
		if err != nil {
			return nil, nil, ap, err
		}
		loaded = append(loaded, ms(took))
	}
}

// vmRates measures lag at each rate with the agents already running (with
// the tier label names), against the floor; run ids start at firstRun.
func vmRates(ctx context.Context, e *Env, c *vmdemo.Cluster, label string, rates []float64, firstRun uint32, floorP50 float64) ([]Row, error) {
	before, err := measureVMClock(ctx, c)
	if err != nil {
		return nil, err
	}
	type result struct {
		rate float64
		run  vmRun
	}
	var got []result
	for i, rate := range rates {
		secs := pick(e, 8.0, 2.0)
		if rate == 1000 {
			secs = pick(e, 5.0, 1.5)
		}
		e.progress("vm: lag at %.0f writes/s with %s, %.0f s, the writer in guest a", rate, label, secs)
		run, err := vmRate(ctx, e, c, firstRun+uint32(i), rate, int(rate*secs))
		if err != nil {
			return nil, fmt.Errorf("%.0f writes/s: %w", rate, err)
		}
		got = append(got, result{rate, run})
	}
	after, err := measureVMClock(ctx, c)
	if err != nil {
		return nil, err
	}
	// The mean of the two estimates.
	k := vmClock{skew: (before.skew + after.skew) / 2, bound: max(before.bound, after.bound) + (after.skew-before.skew).Abs()/2}
	clockNote := fmt.Sprintf("b's clock - a's: %v before, %v after (each +-%v); times on a's clock with the mean, error <= %v",
		before.skew.Round(time.Microsecond), after.skew.Round(time.Microsecond), max(before.bound, after.bound).Round(time.Microsecond), k.bound.Round(time.Microsecond))
	var rows []Row
	for _, g := range got {
		row := lagRow(fmt.Sprintf("%s@%.0f/s", label, g.rate), g.run.result(k))
		row.Note = joinNote(vmNote+"; writer in guest a, lag from write() returning to b's agent logging received", row.Note)
		if el := g.run.ap.Elapsed; el > 0 {
			row.Note += fmt.Sprintf(" (%.0f writes/s achieved)", float64(len(g.run.ap.Done))/el.Seconds())
		}
		if g.run.unread > 0 {
			row.Note = joinNote(row.Note, fmt.Sprintf("%d of %d received snapshots not read back (%v)", g.run.unread, len(g.run.recv), g.run.firstErr))
		}
		row.Note = joinNote(row.Note, vmStages(g.run.aRecs, g.run.bRecs, agentpair.DatasetName, k))
		row.Note = joinNote(row.Note, vmFlushWarnings(g.run.aRecs))
		row.Note = joinNote(row.Note, clockNote)
		againstFloor(&row, floorP50)
		rows = append(rows, row)
	}
	return rows, nil
}

// vmFloorLoaded is the floor while guest a appends at rate into the floor
// dataset: rounds of snapshot + incremental send|recv (timed in the
// guest) for as long as the writer runs, the first from snapshot @prev,
// the others named prefix1, prefix2, ... With syncLoop a shell loop runs
// syncfs on the dataset back to back meanwhile, as an event tier's
// notifier does while events keep coming (agent/ebpf.go's flush loop).
// It returns the samples, what the writer did and the last snapshot.
func vmFloorLoaded(ctx context.Context, a *vmdemo.Guest, prev, prefix string, rate, secs float64, syncLoop bool) ([]float64, vmdemo.Appends, string, error) {
	pool := a.Pool()
	stop := "/run/flocker-bench-syncloop-" + prefix
	if syncLoop {
		if _, err := a.Sh(ctx, fmt.Sprintf("rm -f %[1]s; (while [ ! -e %[1]s ]; do sync -f /%[2]s/floor; done) </dev/null >/dev/null 2>&1 &", stop, pool)); err != nil {
			return nil, vmdemo.Appends{}, prev, err
		}
		defer func() { _, _ = a.Sh(context.WithoutCancel(ctx), "touch "+stop) }()
	}
	type done struct {
		ap  vmdemo.Appends
		err error
	}
	wrote := make(chan done, 1)
	go func() {
		ap, err := a.Appends(ctx, fmt.Sprintf("/%s/floor/load.log", pool), 200, rate, int(rate*secs))
		wrote <- done{ap, err}
	}()
	var out []float64
	time.Sleep(300 * time.Millisecond) // the writer under way first
	for i := 1; ; i++ {
		select {
		case d := <-wrote:
			if d.err != nil {
				return nil, d.ap, prev, d.err
			}
			if len(out) == 0 {
				return nil, d.ap, prev, fmt.Errorf("no round finished while %d writes landed in %v", len(d.ap.Done), d.ap.Elapsed)
			}
			return out, d.ap, prev, nil
		default:
		}
		cur := fmt.Sprintf("%s%d", prefix, i)
		_, took, err := a.ShTimed(ctx, fmt.Sprintf("zfs snapshot %[1]s/floor@%[2]s && zfs send -i @%[3]s %[1]s/floor@%[2]s | zfs receive %[1]s/floorcopy", pool, cur, prev))
		if err != nil {
			return nil, vmdemo.Appends{}, prev, err
		}
		out = append(out, float64(took)/float64(time.Millisecond))
		prev = cur
	}
}

// vmThroughput times a full send of size bytes of random data: a local
// zfs send | zfs receive in guest a, then the agents' full sync of the
// same data over QUIC (the dataset added to both configs). The agents are
// stopped on entry and running with the new dataset on return.
func vmThroughput(ctx context.Context, e *Env, c *vmdemo.Cluster, size int64) ([]Row, error) {
	a, b := c.A, c.B
	for _, g := range []*vmdemo.Guest{a, b} {
		if err := g.StopAgent(ctx); err != nil {
			return nil, err
		}
	}
	e.progress("vm: writing %d MiB of random data into %s/big", size>>20, a.Pool())
	if _, err := a.Sh(ctx, fmt.Sprintf("zfs create %[1]s/big && head -c %[2]d /dev/urandom >/%[1]s/big/data && sync", a.Pool(), size)); err != nil {
		return nil, err
	}
	snap := a.Pool() + "/big@local1"
	cpu0, err := guestBusy(ctx, a)
	if err != nil {
		return nil, err
	}
	_, took, err := a.ShTimed(ctx, fmt.Sprintf("zfs snapshot %[1]s && zfs send %[1]s | zfs receive %[2]s/bigcopy", snap, a.Pool()))
	if err != nil {
		return nil, err
	}
	cpu1, err := guestBusy(ctx, a)
	if err != nil {
		return nil, err
	}
	est, err := a.Sh(ctx, "zfs send -nP "+snap)
	if err != nil {
		return nil, err
	}
	n := sendSize(est)
	if n <= 0 {
		return nil, fmt.Errorf("zfs send -nP %s: no size in %q", snap, est)
	}
	local := float64(n) / took.Seconds() / 1e6
	lrow := value("", "local zfs send | zfs receive", "full-sync throughput", "MB/s", local)
	lrow.Note = fmt.Sprintf("%s; in guest a, into another dataset of its pool, timed in the guest; %d MiB written, %d stream bytes (zfs send -nP); guest a busy %.1f CPU-s (%.1f per GiB)",
		vmNote, size>>20, n, cpu1-cpu0, (cpu1-cpu0)/(float64(n)/(1<<30)))

	mark, err := markVMLogs(ctx, c)
	if err != nil {
		return []Row{lrow}, err
	}
	for _, g := range []*vmdemo.Guest{a, b} {
		if err := g.SetKeys(ctx, `dataset "big"`, "zfs", g.Pool()+"/big"); err != nil {
			return []Row{lrow}, err
		}
	}
	busy0 := map[*vmdemo.Guest]float64{}
	for _, g := range []*vmdemo.Guest{a, b} {
		if busy0[g], err = guestBusy(ctx, g); err != nil {
			return []Row{lrow}, err
		}
	}
	for _, g := range []*vmdemo.Guest{b, a} {
		if err := g.StartAgent(ctx); err != nil {
			return []Row{lrow}, err
		}
	}
	e.progress("vm: full sync of big over QUIC")
	var recv agentpair.Record
	for deadline := time.Now().Add(5 * time.Minute); recv == nil; {
		recs, err := b.AgentLog(ctx)
		if err != nil {
			return []Row{lrow}, err
		}
		for _, r := range recs[min(mark.b, len(recs)):] {
			if r.Msg() == "received" && r.Str("dataset") == "big" {
				recv = r
				break
			}
		}
		if recv == nil {
			if time.Now().After(deadline) {
				return []Row{lrow}, fmt.Errorf("b received no full sync of big within 5 min")
			}
			time.Sleep(time.Second)
		}
	}
	busy := map[*vmdemo.Guest]float64{}
	for _, g := range []*vmdemo.Guest{a, b} {
		v, err := guestBusy(ctx, g)
		if err != nil {
			return []Row{lrow}, err
		}
		busy[g] = v - busy0[g]
	}
	aRecs, err := a.AgentLog(ctx)
	if err != nil {
		return []Row{lrow}, err
	}
	var started agentpair.Record
	for _, r := range aRecs[min(mark.a, len(aRecs)):] {
		if r.Msg() == "transfer started" && r.Str("dataset") == "big" && r.Str("kind") == "full" {
			started = r
		}
	}
	if started == nil {
		return []Row{lrow}, fmt.Errorf("alpha logged no full transfer of big")
	}
	k, err := measureVMClock(ctx, c)
	if err != nil {
		return []Row{lrow}, err
	}
	dur := k.onA(recordTime(recv)).Sub(recordTime(started))
	bytes := recv.Num("bytes")
	if dur <= 0 || bytes <= 0 {
		return []Row{lrow}, fmt.Errorf("full sync: %v bytes in %v: bad log records", bytes, dur)
	}
	quic := bytes / dur.Seconds() / 1e6
	row := value("", "full sync over QUIC (agents)", "full-sync throughput", "MB/s", quic)
	gib := bytes / (1 << 30)
	row.Note = fmt.Sprintf("%s; %.0f stream bytes from a's transfer start to b's receive end (b's clock put on a's, error <= %v; b's own receive took %v); %.0f%% of local; from the agents' start to the receive, guest a busy %.1f CPU-s (%.1f per GiB), b %.1f (%.1f per GiB)",
		vmNote, bytes, k.bound.Round(time.Microsecond), time.Duration(recv.Num("took")).Round(time.Millisecond), 100*quic/local,
		busy[a], busy[a]/gib, busy[b], busy[b]/gib)
	row.Target = fmt.Sprintf(">=%.1f (80%% of local)", 0.8*local)
	row.Verdict = "met"
	if quic < 0.8*local {
		row.Verdict = "missed"
	}
	return []Row{lrow, row}, nil
}

// guestBusy is the CPU time the guest spent busy since it booted, in
// seconds: every CPU's time in /proc/stat but idle and iowait. Most of a
// send or receive runs in ZFS's kernel threads, which no process's own
// times show.
func guestBusy(ctx context.Context, g *vmdemo.Guest) (float64, error) {
	out, err := g.Sh(ctx, "head -1 /proc/stat")
	if err != nil {
		return 0, err
	}
	return parseBusy(out)
}

// parseBusy reads /proc/stat's "cpu user nice system idle iowait irq
// softirq steal ..." line. Its unit is USER_HZ, 100 on x86 Linux.
func parseBusy(line string) (float64, error) {
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("/proc/stat: cannot read %q", line)
	}
	var busy float64
	for i, v := range f[1:9] {
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/stat: field %d of %q: %w", i+1, line, err)
		}
		if i != 3 && i != 4 { // idle, iowait
			busy += n
		}
	}
	return busy / 100, nil
}

// sendSize reads the total from `zfs send -nP` output (a "size" line).
func sendSize(out string) int64 {
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) == 2 && f[0] == "size" {
			n, _ := strconv.ParseInt(f[1], 10, 64)
			return n
		}
	}
	return 0
}
