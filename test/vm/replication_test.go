package vm_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/vmtest"
	"github.com/flockerha/flocker/transport/pki"
)

// TestReplication runs the agents on OpenZFS in guests a (master of
// tank/app) and b (slave): the first sync and the incrementals after it
// reach b's replica intact, and the OpenZFS-only parts show: `receive -o
// readonly=on`, the written property (the timer tier snapshots only when
// something changed), the hold and the bookmark on the base.
func TestReplication(t *testing.T) {
	img := vmtest.RequireImages(t)
	script, err := os.ReadFile("testdata/replication.sh")
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	prints := map[string]string{}
	for _, name := range []string{"a", "b"} {
		cr, err := pki.Generate(name, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		files[name+".crt"], files[name+".key"], prints[name] = cr.CertPEM, cr.KeyPEM, cr.Fingerprint
	}
	ip := map[string]string{"a": "192.0.2.11", "b": "192.0.2.12"}
	zfs := map[string]string{"a": "tank/app", "b": "backup/app"}
	role := map[string]string{"a": "master", "b": "slave"}
	peer := map[string]string{"a": "b", "b": "a"}
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
[state]
role = %s
epoch = 0
`, n, ip[n], peer[n], ip[peer[n]], prints[peer[n]], zfs[n], role[n])
	}
	pool := []vmtest.Disk{{Serial: "pool0", Size: 1 << 30}}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := vmtest.Run(ctx, vmtest.Spec{
		Images:  img,
		Guests:  []vmtest.Guest{{Name: "a", Disks: pool, Out: true}, {Name: "b", Disks: pool, Out: true}},
		Script:  string(script),
		Files:   files,
		Timeout: 8 * time.Minute,
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
}
