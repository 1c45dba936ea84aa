package main

import (
	"strings"
	"testing"
)

func TestBenchList(t *testing.T) {
	code, stdout, stderr := runCLI(t, "bench", "--list")
	if code != exitOK {
		t.Fatalf("code=%d stderr=%q", code, stderr)
	}
	for _, name := range []string{"floor", "lag", "rates", "workloads", "overhead", "throughput", "scale", "failover", "handoff", "false-failovers"} {
		if !strings.Contains(stdout, name+" ") {
			t.Errorf("--list lacks %s:\n%s", name, stdout)
		}
	}
}

func TestBenchUnknownScenarioIsUsageError(t *testing.T) {
	code, _, stderr := runCLI(t, "bench", "--scenario", "lag,nosuch")
	if code != exitUsage || !strings.Contains(stderr, `"nosuch"`) || !strings.Contains(stderr, "have floor") {
		t.Fatalf("code=%d stderr=%q", code, stderr)
	}
}

func TestBenchNegativeDurationIsUsageError(t *testing.T) {
	code, _, stderr := runCLI(t, "bench", "--scenario", "false-failovers", "--duration", "-1m")
	if code != exitUsage || !strings.Contains(stderr, "--duration") {
		t.Fatalf("code=%d stderr=%q", code, stderr)
	}
}
