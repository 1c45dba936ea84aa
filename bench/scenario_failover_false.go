package bench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/failpair"
)

func init() {
	register(Scenario{Name: "false-failovers", Order: 92, OptIn: true, Run: runFalseFailovers,
		Summary: "(opt-in, --duration, default 10m) both CPUs saturated by busy loops, C polling: promotions, fencings, role changes, failed requests"})
}

// falseFailoverDuration is issue 5's run length.
const falseFailoverDuration = 10 * time.Minute

// hogs are busy loops saturating the CPUs, one process per CPU.
type hogs []*exec.Cmd

// startHogs starts n busy loops (a shell loop that never makes a system
// call: pure user time, as a runaway computation on the host would be).
func startHogs(n int) (hogs, error) {
	var h hogs
	for range n {
		cmd := exec.Command("/bin/sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			return nil, errors.Join(err, h.stop())
		}
		h = append(h, cmd)
	}
	return h, nil
}

func (h hogs) pids() []int {
	var out []int
	for _, c := range h {
		out = append(out, c.Process.Pid)
	}
	return out
}

// stop kills each loop by its pid and reaps it.
func (h hogs) stop() error {
	var errs []error
	for _, c := range h {
		if err := c.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, err)
		}
		_ = c.Wait() // killed: the error says so
	}
	return errors.Join(errs...)
}

// roleEvents counts what a node's failover decisions did from mark on.
type roleEvents struct {
	promotions, fencings, roleChanges int
	notes                             map[string]int // decision notes with effects, and how often
}

// countRoleEvents reads the failover decisions of node's records; role is
// the node's role before the first.
func countRoleEvents(node string, recs []agentpair.Record, role string) roleEvents {
	ev := roleEvents{notes: map[string]int{}}
	mode := "" // the pair was steady at mark: nobody fenced
	for _, r := range recs {
		if r.Msg() != "failover decision" {
			continue
		}
		effects, state := r.Str("effects"), r.Str("state") // state: role/mode eEPOCH
		if strings.Contains(effects, "persist(master") {
			ev.promotions++
		}
		now, rest, _ := strings.Cut(state, "/")
		m, _, _ := strings.Cut(rest, " ")
		if m == "fenced" && mode != "fenced" {
			ev.fencings++
		}
		if now != "" && now != role {
			ev.roleChanges++
			role = now
		}
		mode = m
		if effects != "-" && effects != "" {
			ev.notes[node+": "+r.Str("note")]++
		}
	}
	return ev
}

func runFalseFailovers(ctx context.Context, e *Env) ([]Row, error) {
	dur := e.opts.Duration
	if dur <= 0 {
		dur = pick(e, falseFailoverDuration, 20*time.Second)
	}
	r, err := e.failPair(ctx)
	if err != nil {
		return nil, err
	}
	marks, roles := map[*agentpair.Node]int{}, map[*agentpair.Node]string{}
	for _, n := range r.p.Nodes() {
		st, err := nodeState(n)
		if err != nil {
			return nil, err
		}
		marks[n], roles[n] = n.Log.Len(), string(st.Role)
	}
	pl := r.p.Poll(failpair.CheckFile, 100*time.Millisecond, time.Second)
	h, err := startHogs(runtime.NumCPU())
	if err != nil {
		pl.Stop()
		return nil, fmt.Errorf("starting the busy loops: %w", err)
	}
	e.progress("false-failovers: %d busy loops (pids %v) for %v, C requesting every 100 ms", len(h), h.pids(), dur)
	load := ""
	select {
	case <-ctx.Done():
	case <-time.After(dur):
		if b, err := os.ReadFile("/proc/loadavg"); err == nil {
			load = strings.Join(strings.Fields(string(b))[:3], " ")
		}
	}
	herr := h.stop()
	answers := pl.Stop()
	if err := errors.Join(ctx.Err(), herr); err != nil {
		return nil, err
	}

	var total roleEvents
	total.notes = map[string]int{}
	for _, n := range r.p.Nodes() {
		ev := countRoleEvents(n.Name, n.Log.Records(marks[n]), roles[n])
		total.promotions += ev.promotions
		total.fencings += ev.fencings
		total.roleChanges += ev.roleChanges
		maps.Copy(total.notes, ev.notes)
	}
	failed := 0
	var firstFail, lastFail string
	for _, a := range answers {
		if a.OK("ok\n") {
			continue
		}
		failed++
		what := fmt.Sprintf("%s: %v", a.Sent.Format("15:04:05.000"), a.Err)
		if a.Err == nil {
			what = fmt.Sprintf("%s: unexpected answer %q", a.Sent.Format("15:04:05.000"), a.Body)
		}
		if firstFail == "" {
			firstFail = what
		}
		lastFail = what
	}
	cas := fmt.Sprintf("%d CPUs saturated for %v", len(h), dur)
	count := func(metric string, v int, note string) Row {
		row := value("", cas, metric, "count", float64(v))
		row.Target, row.Verdict, row.Note = "0", "met", note
		if v > 0 {
			row.Verdict = "missed"
		}
		return row
	}
	var decided []string
	for _, k := range slices.Sorted(maps.Keys(total.notes)) {
		decided = append(decided, fmt.Sprintf("%q x%d", k, total.notes[k]))
	}
	setting := "heartbeat 100 ms, timeout 1 s, witness configured"
	if load != "" {
		setting += "; load average at the end " + load
	}
	if total.promotions+total.fencings+total.roleChanges+failed > 0 {
		if dir, err := r.keepLogs(); err == nil {
			setting += "; agent logs kept in " + dir
		}
	}
	rows := []Row{
		count("promotions", total.promotions, setting),
		count("fencings", total.fencings, ""),
		count("role changes", total.roleChanges, strings.Join(decided, "; ")),
	}
	fr := count("C's failed requests", failed, fmt.Sprintf("of %d requests", len(answers)))
	if failed > 0 {
		fr.Note += fmt.Sprintf("; first %s; last %s", firstFail, lastFail)
	}
	rows = append(rows, fr)
	if before, after, ok := failpair.LongestGap(answers, "ok\n", time.Time{}, time.Now()); ok {
		g := value("", cas, "C's longest wait between answers", "ms", float64(after.At.Sub(before.At))/float64(time.Millisecond))
		g.Note = fmt.Sprintf("requests every 100 ms, each bounded by 1 s; longest wait ended %s", after.At.Format("15:04:05.000"))
		rows = append(rows, g)
	}
	return rows, nil
}
