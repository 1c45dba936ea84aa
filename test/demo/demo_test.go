package main

import (
	"bytes"
	"context"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/flockerha/flocker/internal/logging"
	"github.com/flockerha/flocker/internal/testutil"
)

// TestDemo runs `make demo`'s driver end to end with a freshly built binary.
func TestDemo(t *testing.T) {
	testutil.RequireRoot(t)
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
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`alpha \(master\) on host a `),
		regexp.MustCompile(`beta  \(slave\) on host b `),
		regexp.MustCompile(`key, certificate and config in `),
		regexp.MustCompile(`fingerprint sha256:[0-9a-f]{64}`),
		regexp.MustCompile(`flocker check on alpha:\n    .*alpha`),
		regexp.MustCompile(`ZFS zfs-fuse`),
		regexp.MustCompile(`tier tracepoint +available`),
		regexp.MustCompile(`first sync: a full send of flocker-0-\d+ \(\d+ bytes\) over QUIC; beta's replica identical after`),
		regexp.MustCompile(`note-4\.txt: visible in beta's replica after [0-9.]+m?s`),
		regexp.MustCompile(`from the notifier's change report to beta's ack, median \d+ ms`),
		regexp.MustCompile(`from the tracepoint eBPF tier`),
		regexp.MustCompile(`write-to-replica lag: median [0-9.]+m?s, max [0-9.]+m?s over 5 writes`),
		regexp.MustCompile(`beta stopped, exit 0`),
		regexp.MustCompile(`not built yet`),
		regexp.MustCompile(`cleaned up`),
	} {
		if !want.MatchString(got) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	if strings.Count(got, "fingerprint sha256:") != 2 {
		t.Errorf("want one fingerprint per host")
	}
}
