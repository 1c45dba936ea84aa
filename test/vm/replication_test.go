package vm_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/vmtest"
)

// TestReplication runs the agents on OpenZFS in guests a (master of
// tank/app) and b (slave): the first sync and the incrementals after it
// reach b's replica intact, and the OpenZFS-only parts show: `receive -o
// readonly=on`, the written property (the timer tier snapshots only when
// something changed), the hold and the bookmark on the base, progress of
// the first sync against `send -nP`'s estimate. In the same boot (see
// testdata/replication.sh) transfers are broken: b's agent SIGKILLed mid
// first sync and a's mid incremental (SIGKILL, then SIGTERM) are resumed
// from b's receive token;
// pruning on a while b is away costs an incremental from the held base, and
// with the base destroyed, from its bookmark; never a second full send.
func TestReplication(t *testing.T) {
	img := vmtest.RequireImages(t)
	script, err := os.ReadFile("testdata/replication.sh")
	if err != nil {
		t.Fatal(err)
	}
	files, prints := vmtest.PairCredentials(t)
	ip := map[string]string{"a": "192.0.2.11", "b": "192.0.2.12"}
	zfs := map[string]string{"a": "tank/app", "b": "backup/app"}
	role := map[string]string{"a": "master", "b": "slave"}
	peer := map[string]string{"a": "b", "b": "a"}
	// Transfers that last seconds, so the scenario can break them.
	bandwidth := map[string]string{"a": "3MiB", "b": "0"}
	// This scenario is about replication, not failover: TCG guests under
	// load stall for seconds (a snapshot took 2.6 s in one run, and b
	// promoted itself on a 1 s timeout while connected), so the failover
	// timeout is far above any stall.
	for _, n := range []string{"a", "b"} {
		files[n+".ini"] = fmt.Appendf(nil, `[node]
name = %s
listen = %s:7946
[peer]
name = %s
address = %s:7946
fingerprint = %s
[dataset "app"]
zfs = %s
[notify]
mode = auto
interval = 200ms
[snapshot]
retention = 5s:all
[replication]
bandwidth = %s
[failover]
timeout = 10s
[state]
role = %s
epoch = 0
`, n, ip[n], peer[n], ip[peer[n]], prints[peer[n]], zfs[n], bandwidth[n], role[n])
	}
	pool := []vmtest.Disk{{Serial: "pool0", Size: 1 << 30}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := vmtest.Run(ctx, vmtest.Spec{
		Images:  img,
		Guests:  []vmtest.Guest{{Name: "a", Disks: pool, Out: true}, {Name: "b", Disks: pool, Out: true}},
		Script:  string(script),
		Files:   files,
		Timeout: 14 * time.Minute, // about 3 min on a quiet machine; TCG guests crawl under load
		Log:     slog.New(slog.NewTextHandler(tWriter{t}, nil)),
	})
	if err != nil {
		if res != nil {
			for _, g := range res.Guests {
				t.Logf("console of %s:\n%s", g.Name, g.Console)
			}
		}
		t.Fatalf("vm run: %v", err)
	}
	t.Logf("pair run: %v, %d attempt(s), zfs %s", time.Since(start).Round(time.Second), res.Attempts, img.ZFSVersion)
	a, b := res.Guest("a"), res.Guest("b")
	if err := res.Err(); err != nil {
		for _, g := range []*vmtest.GuestResult{a, b} {
			t.Logf("%s console:\n%s\nagent log:\n%s\ncheck:\n%s", g.Name, g.Console, g.Out["agent.log"], g.Out["check"])
		}
		t.Fatalf("scenario failed: %v", err)
	}
	for _, g := range []*vmtest.GuestResult{a, b} {
		if rc := strings.TrimSpace(string(g.Out["agent.rc"])); rc != "0" {
			t.Errorf("%s: agent exit %q after SIGTERM, want 0\n%s", g.Name, rc, g.Out["agent.log"])
		}
	}
	check := string(b.Out["check"])
	if strings.Count(check, ": OK") != 21 || strings.Contains(check, "FAILED") { // big and 20 small files
		t.Errorf("b's replica fails the manifest:\n%s", check)
	}
	if ro := strings.Fields(string(b.Out["readonly"])); len(ro) != 2 || ro[0] != "on" {
		t.Errorf("replica readonly = %q, want on", b.Out["readonly"])
	}
	alog, blog := string(a.Out["agent.log"]), string(b.Out["agent.log"])
	for _, want := range []string{`"msg":"replicated"`, `"kind":"full"`, `"kind":"incremental"`} {
		if !strings.Contains(alog, want) {
			t.Errorf("a's agent log lacks %s", want)
		}
	}
	if !strings.Contains(blog, `"msg":"received"`) {
		t.Errorf("b's agent log lacks received")
	}
	snaps := strings.Fields(string(a.Out["snapshots"]))
	if len(snaps) == 0 {
		t.Fatal("a lists no snapshots")
	}
	base := snaps[len(snaps)-1]
	if !regexp.MustCompile(`^tank/app@flocker-0-[0-9]+$`).MatchString(base) {
		t.Errorf("a's newest snapshot %q", base)
	}
	// The timer tier reads `written`: with nothing written between ticks it
	// takes no snapshot, so there are far fewer than one per 200 ms.
	t.Logf("a: %d snapshots, newest %s; b: %v", len(snaps), base, strings.Fields(string(b.Out["snapshots"])))
	if !strings.Contains(string(a.Out["holds"]), "flocker-base") {
		t.Errorf("no flocker-base hold on a:\n%s", a.Out["holds"])
	}
	if !regexp.MustCompile(`(?m)^tank/app#flocker-0-[0-9]+$`).Match(a.Out["bookmarks"]) {
		t.Errorf("no bookmark of the base on a: %q", a.Out["bookmarks"])
	}
	checkBrokenTransfers(t, a, b)
}

// checkBrokenTransfers judges the phases of replication.sh after the first
// manifest, from the guests' files and the agents' JSON logs.
func checkBrokenTransfers(t *testing.T, a, b *vmtest.GuestResult) {
	defer func() {
		if t.Failed() {
			t.Logf("a's agent log:\n%s\nb's agent log:\n%s", a.Out["agent.log"], b.Out["agent.log"])
		}
	}()
	for _, n := range []string{"2", "2t", "3", "4"} {
		check := string(b.Out["check-"+n])
		if !strings.Contains(check, ": OK") || strings.Contains(check, "FAILED") {
			t.Errorf("manifest %s fails on b's replica:\n%s", n, check)
		}
	}
	alog, blog := records(t, a.Out["agent.log"]), records(t, b.Out["agent.log"])
	mark := func(n string) int {
		v, err := strconv.Atoi(strings.TrimSpace(string(a.Out["mark-"+n])))
		if err != nil {
			t.Fatalf("a's mark %s: %q", n, a.Out["mark-"+n])
		}
		return v
	}
	m2, m2t, m3, m4 := mark("2"), mark("2t"), mark("3"), mark("4")
	phase := map[string][]record{"1": alog[:m2], "2": alog[m2:m2t], "2t": alog[m2t:m3], "3": alog[m3:m4], "4": alog[m4:]}
	// One full stream in the whole run: the first sync, resumed after b's
	// kill, not sent again.
	if n := count(alog, "transfer started", "kind", "full"); n != 1 {
		t.Errorf("a started %d full transfers, want 1", n)
	}

	// Phase 1: progress of the first sync against `send -nP`'s estimate, on
	// both sides, and the resume after b's agent was killed.
	if tok := strings.TrimSpace(string(b.Out["token-1"])); tok == "" || tok == "-" {
		t.Errorf("b kept no receive_resume_token after its agent was killed: %q", tok)
	}
	var est float64
	for _, r := range phase["1"] {
		if r.msg() == "transfer in flight" && r.str("kind") == "full" && r.num("estimate") > 24<<20 && r.num("bytes") > 0 {
			est = r.num("estimate")
			t.Logf("a: first sync in flight: %.0f of %.0f bytes (%.0f%%)", r.num("bytes"), est, r.num("percent"))
			break
		}
	}
	if est == 0 {
		t.Error("a logged no progress of the full send against an estimate over 24 MiB")
	}
	if count(blog, "receive in flight", "", "") == 0 {
		t.Error("b logged no receive progress")
	}
	// A resume is estimated too (`send -nP -t`: the bytes left).
	if r := find(blog, "receiving", "kind", "resume"); r == nil || r.num("estimate") <= 0 {
		t.Errorf("b's first resumed receive %v, want one with an estimate", r)
	}
	resumed := find(phase["1"], "replicated", "kind", "resume")
	if resumed == nil {
		t.Error("phase 1: the first sync was not resumed after b's agent was killed")
	} else if resumed.num("bytes") <= 0 || resumed.num("bytes") >= est {
		t.Errorf("phase 1: the resume sent %.0f bytes of a %.0f-byte stream", resumed.num("bytes"), est)
	} else {
		t.Logf("phase 1: resumed the first sync with %.0f of its %.0f bytes", resumed.num("bytes"), est)
	}

	// Phase 2: a's agent killed mid incremental reads b's token and resumes.
	if find(phase["2"], "resuming the peer's partial receive", "", "") == nil || find(phase["2"], "replicated", "kind", "resume") == nil {
		t.Error("phase 2: a's restarted agent did not resume b's partial receive")
	}
	if r := find(phase["2"], "resuming the peer's partial receive", "", ""); r != nil {
		t.Logf("phase 2: resumed %s with %.0f bytes received, %.0f remaining", r.str("target"), r.num("received"), r.num("remaining"))
	}

	// Phase 2t: the same after an orderly stop of a's agent, which b takes
	// for what it is: no failure.
	if find(phase["2t"], "transfer stopped: shutting down", "", "") == nil ||
		find(phase["2t"], "resuming the peer's partial receive", "", "") == nil || find(phase["2t"], "replicated", "kind", "resume") == nil {
		t.Error("phase 2t: a's agent, stopped mid incremental and started again, did not resume b's partial receive")
	}
	if r := find(blog, "receive interrupted: the master is shutting down", "", ""); r == nil || r.str("level") != "INFO" {
		t.Errorf("b on a's orderly stop mid transfer: %v, want an info record", r)
	}
	for _, r := range blog {
		if r.msg() == "receive failed" && strings.Contains(r.str("err"), "aborted by peer") {
			t.Errorf("b took a's orderly stop for a failure: %v", r)
		}
	}

	// Phase 3: pruned while b was away; then an incremental from the held
	// snapshot.
	if find(phase["3"], "pruned snapshots", "", "") == nil {
		t.Error("phase 3: a pruned nothing while b was away")
	}
	if r := find(phase["3"], "transfer started", "", ""); r == nil || r.str("kind") != "incremental" || !strings.Contains(r.str("base"), "@") {
		t.Errorf("phase 3: first transfer after b's return %v, want an incremental from the held snapshot", r)
	} else {
		t.Logf("phase 3: incremental from %s to %s", r.str("base"), r.str("target"))
	}

	// The run ends with both agents stopped by SIGTERM, b's first, so a sees
	// its peer leave: nothing from there on is a warning.
	for name, g := range map[string]*vmtest.GuestResult{"a": a, "b": b} {
		rs := alog
		if name == "b" {
			rs = blog
		}
		from, err := strconv.Atoi(strings.TrimSpace(string(g.Out["mark-stop"])))
		if err != nil || from > len(rs) {
			t.Errorf("%s's stop mark %q", name, g.Out["mark-stop"])
			continue
		}
		for _, r := range rs[from:] {
			if l := r.str("level"); l == "WARN" || l == "ERROR" {
				t.Errorf("%s, stopping in order, logged %s %q: %v", name, l, r.msg(), r)
			}
		}
	}

	// Phase 4: the base snapshot destroyed, its bookmark starts the
	// incremental.
	base := strings.TrimSpace(string(a.Out["base-4"]))
	if !strings.Contains(string(a.Out["bookmarks-4"]), strings.Replace(base, "@", "#", 1)) {
		t.Errorf("phase 4: no bookmark of the destroyed base %q: %q", base, a.Out["bookmarks-4"])
	}
	if r := find(phase["4"], "transfer started", "", ""); r == nil || r.str("kind") != "incremental" || r.str("base") != strings.Replace(base, "@", "#", 1) {
		t.Errorf("phase 4: first transfer %v, want an incremental from the bookmark of %s", r, base)
	} else {
		t.Logf("phase 4: incremental from bookmark %s to %s", r.str("base"), r.str("target"))
	}
}

// record is one line of an agent's JSON log.
type record map[string]any

func (r record) msg() string { return r.str("msg") }
func (r record) str(k string) string {
	s, _ := r[k].(string)
	return s
}
func (r record) num(k string) float64 {
	f, _ := r[k].(float64)
	return f
}

// records parses a JSON log; lines that are not JSON (a panic, say) are
// kept as empty records, so that line numbers stay the script's.
func records(t *testing.T, b []byte) []record {
	var out []record
	for line := range strings.Lines(string(b)) {
		var r record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Logf("not a log record: %q", line)
		}
		out = append(out, r)
	}
	return out
}

// find returns the first record with msg and, when key is set, key=value.
func find(rs []record, msg, key, value string) record {
	for _, r := range rs {
		if r.msg() == msg && (key == "" || r.str(key) == value) {
			return r
		}
	}
	return nil
}

func count(rs []record, msg, key, value string) int {
	n := 0
	for _, r := range rs {
		if r.msg() == msg && (key == "" || r.str(key) == value) {
			n++
		}
	}
	return n
}
