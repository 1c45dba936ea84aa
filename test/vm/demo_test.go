package vm_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/rig"
	"github.com/flockerha/flocker/internal/testutil"
	"github.com/flockerha/flocker/internal/vmdemo"
	"github.com/flockerha/flocker/internal/vmtest"
)

// TestDemoVM runs `make demo VM=1`'s story end to end on two OpenZFS
// guests (one boot of the pair) and checks what it tells: replication with
// a measured lag, a killed and cut off, C served by beta with the
// replicated content, a back as slave with its divergent write in a stash,
// status from both sides, and nothing of the segment left behind.
func TestDemoVM(t *testing.T) {
	img := vmtest.RequireImages(t)
	testutil.RequireRoot(t)
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()
	start := time.Now()
	sum, err := vmdemo.Run(ctx, &out, vmdemo.Options{Images: img, Log: slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	got := out.String()
	t.Logf("demo output (%v):\n%s", time.Since(start).Round(time.Second), got)
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	dur := `[0-9.]+(ms|s|µs|m[0-9.]+s)`
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`a answers: 6\.1\.\S+, zfs-2\.3\.`),
		regexp.MustCompile(`alpha \(master\) on guest a 192\.0\.2\.11:7946: dataset tank/app`),
		regexp.MustCompile(`beta  \(slave\) on guest b 192\.0\.2\.12:7946: dataset backup/app`),
		regexp.MustCompile(`fingerprint sha256:[0-9a-f]{64}`),
		regexp.MustCompile(`flocker check on alpha:\n    /etc/flocker/flocker.ini: ok`),
		regexp.MustCompile(`ZFS openzfs \(2\.3\.\d+\)`),
		regexp.MustCompile(`tier fentry +available`),
		regexp.MustCompile(`first sync: a full send of flocker-0-\d+ \([0-9.]+ (B|KiB|MiB)\) over QUIC`),
		regexp.MustCompile(`alpha holds 192\.0\.2\.100 and its start hook started the service: C is served service\.txt`),
		regexp.MustCompile(`C: answered: served from the replicated dataset`),
		regexp.MustCompile(`note-4\.txt: visible in beta's replica after ` + dur),
		regexp.MustCompile(`write-to-replica lag: median ` + dur + `, max ` + dur + ` over 5 writes`),
		regexp.MustCompile(`beta's log: alpha confirmed dead`),
		regexp.MustCompile(`beta is master at epoch [1-9]\d* and holds 192\.0\.2\.100; failover took ` + dur),
		regexp.MustCompile(`C reads note-4\.txt through 192\.0\.2\.100 from beta: the replicated content, same as alpha served:\n    note 4 written on alpha`),
		regexp.MustCompile(`alpha demoted itself: slave at epoch [1-9]\d*; beta's after\.txt replicated to it`),
		regexp.MustCompile(`alpha's log: divergence after \S+, winner peer`),
		regexp.MustCompile(`alpha's log: divergent history stashed as tank/flocker-stash/app-`),
		regexp.MustCompile(`flocker stash list on alpha:\n    NAME .*\n    tank/flocker-stash/app-\S+ +app `),
		regexp.MustCompile(`written-while-cut-off\.txt in stash tank/flocker-stash/app-\S+: written on alpha while its cable was out`),
		regexp.MustCompile(`192\.0\.2\.100 is held by beta only`),
		regexp.MustCompile(`flocker status on beta \(exit [01]\):\n    flocker status beta \+ alpha`),
		regexp.MustCompile(`flocker status on alpha \(exit [01]\):\n    flocker status alpha \+ beta`),
		regexp.MustCompile(`replication lag \(write on the master -> visible on the replica\): median ` + dur),
		regexp.MustCompile(`failover time \(host a killed -> C served by beta through 192\.0\.2\.100\): ` + dur),
		regexp.MustCompile(`client C: [1-9]\d* requests answered`),
		regexp.MustCompile(`cleaned up`),
	} {
		if !want.MatchString(got) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if len(sum.Lags) != 5 || sum.Failover <= 0 || sum.Boot <= 0 || sum.Answered == 0 || !strings.HasPrefix(sum.Stash, "tank/flocker-stash/app-") {
		t.Errorf("summary: %+v", sum)
	}
	// flocker status keeps to 100 columns when piped (the demo indents
	// its output by 4).
	status := regexp.MustCompile(`(?m)^  flocker status on \w+ \(exit \d\):\n((?:    .*\n)+)`).FindAllStringSubmatch(got, -1)
	if len(status) != 2 {
		t.Errorf("want two flocker status outputs, found %d", len(status))
	}
	for _, m := range status {
		for _, l := range strings.Split(m[1], "\n") {
			if n := len([]rune(l)); n > 104 {
				t.Errorf("flocker status line of %d columns: %q", n-4, l)
			}
		}
	}
	t.Logf("measured: boot %v, first sync %v, lag median %v max %v, failover %v, total %v",
		sum.Boot.Round(100*time.Millisecond), sum.FirstSync.Round(100*time.Millisecond), sum.Median().Round(time.Millisecond),
		sum.Max().Round(time.Millisecond), sum.Failover.Round(time.Millisecond), sum.Total.Round(time.Second))

	// Nothing of the segment is left: the rig names its namespaces
	// flkrig-PID-..., the taps went with their namespace.
	prefix := fmt.Sprintf("flkrig-%d-", os.Getpid())
	entries, err := os.ReadDir(rig.NetnsDir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
}
