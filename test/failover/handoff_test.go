package failover

import (
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/failpair"
)

// pendingSize is what the handoff test writes right before the handoff: the
// issue's "up to 1 MiB pending".
const pendingSize = 1 << 20

// TestHandoff: `flocker handoff` on A (through the admin socket) right
// after 1 MiB was written on A: B serves at the next epoch with every byte
// of it, A is slave and readonly, the address is B's alone (sampled all
// along), nothing is stashed, and replication then flows B to A
// incrementally. Client C requests a file all along; the longest gap
// between two answers is logged as the downtime, beside a timeline of both
// agents' records (nothing asserts speed).
//
// The pair runs at default settings (the notifier the agent picks), as the
// issue's downtime target is stated.
func TestHandoff(t *testing.T) {
	p := newPairWith(t, false, nil)
	startServing(t, p)
	e0 := state(t, p.Master).Epoch
	writeFile(t, p.Master, "first.txt", "replicated\n")
	waitFile(t, p.Slave, "first.txt", "replicated\n", syncTimeout)

	watchCtx, stopWatch := context.WithCancel(context.Background())
	holders := watchHolders(watchCtx, p)
	client := watchClient(watchCtx, p)
	time.Sleep(300 * time.Millisecond) // C's first answers from A

	// Written right before the handoff: the final snapshot must carry it.
	pending := make([]byte, pendingSize)
	if _, err := rand.Read(pending); err != nil {
		t.Fatal(err)
	}
	writeFile(t, p.Master, "pending.bin", string(pending))
	marks := map[*agentpair.Node]int{p.Master: p.Master.Log.Len(), p.Slave: p.Slave.Log.Len()}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	begin := time.Now()
	out, err := p.Master.Flocker(ctx, "handoff", "--config", p.Master.Config)
	if err != nil {
		stopWatch()
		t.Fatal(err)
	}
	t.Logf("flocker handoff (%v): %s", time.Since(begin).Round(time.Millisecond), strings.TrimSpace(out))
	if _, err := p.WaitServed(ctx, "pending.bin", string(pending)); err != nil {
		stopWatch()
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // C's answers from B
	stopWatch()
	if h := <-holders; h.err != nil || h.double != nil {
		t.Fatalf("floating address: both hosts held it at once: %v (err %v)", h.double, h.err)
	} else {
		t.Logf("%d samples of the address holders during the handoff, never two", h.samples)
	}
	c := <-client
	gap, from, to := c.longestGap(begin)
	t.Logf("handoff downtime seen by C: %v (no answer from %s to %s after the request; %d answers, %d failed requests)",
		gap.Round(time.Millisecond), from.Sub(begin).Round(time.Millisecond), to.Sub(begin).Round(time.Millisecond), len(c.ok), c.failed)
	logTimeline(t, begin, marks)

	waitState(t, p.Slave, config.RoleMaster, e0+1, 10*time.Second)
	waitState(t, p.Master, config.RoleSlave, e0+1, serveTimeout)
	requireReadonly(t, p.Master)
	if h, err := p.Holders(); err != nil || !slices.Equal(h, []string{p.Slave.Name}) {
		t.Fatalf("floating address held by %v (err %v), want only %s", h, err, p.Slave.Name)
	}
	if b, err := os.ReadFile(filepath.Join(p.Slave.Mountpoint, "pending.bin")); err != nil || string(b) != string(pending) {
		t.Fatalf("B's pending.bin: %d bytes (err %v), want the %d written on A", len(b), err, len(pending))
	}
	markB := p.Slave.Log.Len()
	writeFile(t, p.Slave, "next.txt", "written on B after the handoff\n")
	waitFile(t, p.Master, "next.txt", "written on B after the handoff\n", syncTimeout)
	if n := countTransfers(p.Slave, markB, "full"); n != 0 {
		t.Fatalf("B sent %d full streams after the handoff", n)
	}
	if s := stashes(t, p.Master); len(s) != 0 {
		t.Fatalf("a planned handoff stashed %v", s)
	}
}

// clientLog is what C saw while watched.
type clientLog struct {
	ok     []time.Time // when each successful answer came
	failed int
}

// longestGap is the longest time between two answers after since (the
// first of them may be before since).
func (c clientLog) longestGap(since time.Time) (gap time.Duration, from, to time.Time) {
	for i := 1; i < len(c.ok); i++ {
		if c.ok[i].Before(since) {
			continue
		}
		if d := c.ok[i].Sub(c.ok[i-1]); d > gap {
			gap, from, to = d, c.ok[i-1], c.ok[i]
		}
	}
	return gap, from, to
}

// clientTimeout bounds each of C's requests while watched: a request sent
// to the old holder in the moment it drops the address waits this long,
// which is the resolution of the measured gap.
const clientTimeout = 50 * time.Millisecond

// watchClient requests the check file through the floating address from C
// in a loop until ctx ends.
func watchClient(ctx context.Context, p *failpair.Pair) <-chan clientLog {
	out := make(chan clientLog, 1)
	go func() {
		var c clientLog
		for ctx.Err() == nil {
			if body, err := p.Get(failpair.CheckFile, clientTimeout); err == nil && body == "ok\n" {
				c.ok = append(c.ok, time.Now())
			} else {
				c.failed++
			}
			select {
			case <-ctx.Done():
			case <-time.After(2 * time.Millisecond):
			}
		}
		out <- c
	}()
	return out
}

type holderWatch struct {
	double  []string
	samples int
	err     error
}

// watchHolders samples who holds the floating address until ctx ends.
func watchHolders(ctx context.Context, p *failpair.Pair) <-chan holderWatch {
	out := make(chan holderWatch, 1)
	go func() {
		d, n, err := p.WatchHolders(ctx, 2*time.Millisecond)
		out <- holderWatch{d, n, err}
	}()
	return out
}

// timelineKeys are the attributes worth a timeline column.
var timelineKeys = []string{"args", "effect", "took", "note", "snapshot", "kind", "waited", "hook", "exit", "checks", "bytes", "event"}

// logTimeline logs both nodes' records from their marks, in time order,
// as milliseconds after begin: where a handoff's time goes.
func logTimeline(t *testing.T, begin time.Time, marks map[*agentpair.Node]int) {
	t.Helper()
	type line struct {
		at   time.Time
		text string
	}
	var lines []line
	for n, mark := range marks {
		for _, r := range n.Log.Records(mark) {
			at, err := time.Parse(time.RFC3339Nano, r.Str("time"))
			if err != nil || r.Str("level") == "DEBUG" && r.Msg() != "zfs command" && r.Msg() != "zfs stream" {
				continue
			}
			var b strings.Builder
			fmt.Fprintf(&b, "%s %s", n.Name, r.Msg())
			for _, k := range timelineKeys {
				if v := r.Str(k); v != "" {
					fmt.Fprintf(&b, " %s=%s", k, v)
				}
			}
			lines = append(lines, line{at, b.String()})
		}
	}
	sort.SliceStable(lines, func(i, j int) bool { return lines[i].at.Before(lines[j].at) })
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "%+8.1fms %s\n", float64(l.at.Sub(begin).Microseconds())/1000, l.text)
	}
	t.Logf("timeline (ms after the handoff request):\n%s", b.String())
}

// requireReadonly checks that n's dataset is readonly. zfs-fuse reports
// readonly=on of a mounted file system as "off" with source "temporary"
// (the agent reads it the same way). No write is tried: the slave
// remounts after each receive, and a write in that moment would land in
// the bare mountpoint directory.
func requireReadonly(t *testing.T, n *agentpair.Node) {
	t.Helper()
	out, err := exec.Command("zfs", "get", "-H", "-o", "value,source", "readonly", n.Dataset).CombinedOutput()
	if err != nil {
		t.Fatalf("zfs get readonly %s: %v: %s", n.Dataset, err, out)
	}
	f := strings.Fields(string(out))
	if len(f) != 2 || f[0] != "on" && f[1] != "temporary" {
		t.Fatalf("%s: its dataset %s reads readonly %q: not readonly", n.Name, n.Dataset, strings.TrimSpace(string(out)))
	}
}
