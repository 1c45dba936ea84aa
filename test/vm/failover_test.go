package vm_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/vmtest"
)

// TestFailover runs failover and return between two OpenZFS guests: a
// (master of tank/app, serving busybox httpd on the floating address)
// replicates to b, then loses power (agent SIGKILLed, service killed, link
// down) and writes a file alone. b finds a's host unreachable and the
// service silent, promotes itself, serves the replicated data on the
// floating address and writes. a returns: it demotes, its lone write is
// kept in a stash, and b's write reaches it incrementally.
func TestFailover(t *testing.T) {
	img := vmtest.RequireImages(t)
	script, err := os.ReadFile("testdata/failover.sh")
	if err != nil {
		t.Fatal(err)
	}
	files, prints := vmtest.PairCredentials(t)
	ip := map[string]string{"a": "192.0.2.11", "b": "192.0.2.12"}
	zfs := map[string]string{"a": "tank/app", "b": "backup/app"}
	mnt := map[string]string{"a": "/tank/app", "b": "/backup/app"}
	role := map[string]string{"a": "master", "b": "slave"}
	peer := map[string]string{"a": "b", "b": "a"}
	for _, n := range []string{"a", "b"} {
		// The timing is loosened for software-emulated guests on a busy
		// host; the rule (timeout >= 3 x heartbeat) is the same.
		files[n+".ini"] = fmt.Appendf(nil, `[node]
name = %s
listen = %s:7946
[peer]
name = %s
address = %s:7946
fingerprint = %s
[dataset "app"]
zfs = %s
vip = 192.0.2.100/24
interface = eth0
start = cd %s && busybox httpd -f -p 8080 -h %s & echo $! > /tmp/httpd.pid
stop = if [ -f /tmp/httpd.pid ]; then kill $(cat /tmp/httpd.pid) 2>/dev/null; rm -f /tmp/httpd.pid; fi; true
check = timeout 2 busybox wget -q -O /dev/null http://127.0.0.1:8080/flocker-check.txt
probe = tcp:8080
[notify]
mode = auto
interval = 200ms
[failover]
heartbeat = 200ms
timeout = 3s
[state]
role = %s
epoch = 0
`, n, ip[n], peer[n], ip[peer[n]], prints[peer[n]], zfs[n], mnt[n], mnt[n], role[n])
	}
	pool := []vmtest.Disk{{Serial: "pool0", Size: 1 << 30}}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	res, err := vmtest.Run(ctx, vmtest.Spec{
		Images:  img,
		Guests:  []vmtest.Guest{{Name: "a", Disks: pool, Out: true}, {Name: "b", Disks: pool, Out: true}},
		Script:  string(script),
		Files:   files,
		Timeout: 12 * time.Minute,
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
			t.Logf("%s console:\n%s\nagent log:\n%s", g.Name, g.Console, g.Out["agent.log"])
		}
		t.Fatalf("scenario failed: %v", err)
	}
	want := map[string]string{
		"a served-a":     "replicated before the failure\n",
		"b served-b":     "replicated before the failure\n",
		"a b-only":       "written by b after the failover\n",
		"a stash-a-only": "written by a alone\n",
		"a final.ini ~":  "role = slave\nepoch = 1",
		"b final.ini ~":  "role = master\nepoch = 1",
		"b agent.rc":     "0\n",
		"a agent.rc":     "0\n",
		"b agent.log ~":  `"msg":"failover decision"`,
		"a agent.log ~":  `"stash":"tank/flocker-stash/app-0-`,
	}
	for key, w := range want {
		f := strings.Fields(key)
		g := a
		if f[0] == "b" {
			g = b
		}
		got := string(g.Out[f[1]])
		if len(f) > 2 && f[2] == "~" {
			if !strings.Contains(got, w) {
				t.Errorf("%s's %s lacks %q:\n%s", f[0], f[1], w, tail(got, 3000))
			}
		} else if got != w {
			t.Errorf("%s's %s = %q, want %q", f[0], f[1], got, w)
		}
	}
	var full, incr int
	for _, l := range strings.Split(string(b.Out["agent.log"]), "\n") {
		if strings.Contains(l, `"msg":"transfer started"`) {
			switch {
			case strings.Contains(l, `"kind":"full"`):
				full++
			case strings.Contains(l, `"kind":"incremental"`):
				incr++
			}
		}
	}
	if full != 0 || incr == 0 {
		t.Errorf("b started %d full and %d incremental transfers to the returning a; want incrementals only", full, incr)
	}
	if t.Failed() {
		for _, g := range []*vmtest.GuestResult{a, b} {
			t.Logf("%s console:\n%s\nagent log (tail):\n%s", g.Name, g.Console, tail(string(g.Out["agent.log"]), 6000))
		}
	}
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[len(s)-n:]
}
