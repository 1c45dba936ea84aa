package main

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/flockerha/flocker/internal/logging"
	"github.com/flockerha/flocker/internal/rig"
	"github.com/flockerha/flocker/internal/testutil"
)

// TestDemo runs `make demo`'s driver end to end with a freshly built binary
// and checks the story it tells: replication with a measured lag, host A
// killed and C served by B with the replicated content, A back as slave
// with its divergent write in a stash, status from both sides, and nothing
// of the rig left behind.
func TestDemo(t *testing.T) {
	testutil.RequireRoot(t)
	for _, tool := range []string{"zfs-fuse", "zfs", "zpool", "nsenter", "busybox"} {
		_, err := exec.LookPath(tool)
		testutil.RequireNoError(t, tool+" (run make setup)", err)
	}
	bin := filepath.Join(t.TempDir(), "flocker")
	build := exec.Command("go", "build", "-o", bin, "github.com/flockerha/flocker/cmd/flocker")
	build.Env = append(build.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building flocker: %v\n%s", err, out)
	}
	var out bytes.Buffer
	if err := run(context.Background(), &out, bin, logging.Discard()); err != nil {
		t.Fatalf("demo: %v\n%s", err, out.String())
	}
	got := out.String()
	t.Log(got)
	dur := `[0-9.]+(ms|s|µs)`
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`alpha \(master\) on host a `),
		regexp.MustCompile(`beta  \(slave\) on host b `),
		regexp.MustCompile(`fingerprint sha256:[0-9a-f]{64}`),
		regexp.MustCompile(`flocker check on alpha:\n    .*alpha`),
		regexp.MustCompile(`tier tracepoint +available`),
		regexp.MustCompile(`first sync: a full send of flocker-0-\d+ \([0-9.]+ (B|KiB|MiB)\) over QUIC; beta's replica identical after`),
		regexp.MustCompile(`alpha holds 192\.0\.2\.100 and its start hook started the service: C is served service\.txt`),
		regexp.MustCompile(`C: answered: served from the replicated dataset`),
		regexp.MustCompile(`note-4\.txt: visible in beta's replica after ` + dur),
		regexp.MustCompile(`write-to-replica lag: median ` + dur + `, max ` + dur + ` over 5 writes`),
		// The failover: B decides, takes the address, C is served by B.
		regexp.MustCompile(`beta's log, ` + dur + ` after the kill: alpha confirmed dead`),
		regexp.MustCompile(`beta is master at epoch [1-9]\d* and holds 192\.0\.2\.100; failover took ` + dur),
		regexp.MustCompile(`C reads note-4\.txt through 192\.0\.2\.100 from beta: the replicated content, same as alpha served:\n    note 4 written on alpha`),
		// A back: demoted, diverged, stashed, the stash listed by the CLI
		// and holding A's write.
		regexp.MustCompile(`alpha demoted itself: slave at epoch [1-9]\d*; beta's after\.txt replicated to it`),
		regexp.MustCompile(`alpha's log: divergence after \S+, winner peer`),
		regexp.MustCompile(`alpha's log: divergent history stashed as \S+/flocker-stash/app-`),
		regexp.MustCompile(`flocker stash list on alpha:\n    NAME .*\n    \S+/flocker-stash/app-\S+ +app `),
		regexp.MustCompile(`written-while-cut-off\.txt in stash \S+/flocker-stash/app-\S+: written on alpha while its cable was out`),
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
	if strings.Count(got, "fingerprint sha256:") != 2 {
		t.Errorf("want one fingerprint per host")
	}

	// Cleanup left none of this process's pools or namespaces (the rig
	// names both flkrig-PID-...).
	prefix := fmt.Sprintf("flkrig-%d-", os.Getpid())
	pools, err := exec.Command("zpool", "list", "-H", "-o", "name").CombinedOutput()
	if err != nil {
		t.Fatalf("zpool list: %v: %s", err, pools)
	}
	for _, p := range strings.Fields(string(pools)) {
		if strings.HasPrefix(p, prefix) {
			t.Errorf("pool %s left behind", p)
		}
	}
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
