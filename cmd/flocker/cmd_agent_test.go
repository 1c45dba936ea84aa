package main

import (
	"os"
	"strings"
	"testing"
)

// TestAgentRefusesBadConfig: the agent does not start with a config that
// `flocker check` refuses, and lists the same problems.
func TestAgentRefusesBadConfig(t *testing.T) {
	a := initNode(t, "alpha", "beta", "127.0.0.1:7946", "127.0.0.1:7947", "--dataset", "app=tank/app")
	// Not trusted yet: the peer's fingerprint is missing.
	code, _, stderr := runCLI(t, "agent", "--config", a.config)
	if code != exitFail {
		t.Fatalf("agent with an untrusted peer: exit %d, want %d\n%s", code, exitFail, stderr)
	}
	for _, want := range []string{"[peer] fingerprint: missing", "refusing to start: 1 problem(s)"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	_, checkOut, _ := runCLI(t, "check", "--config", a.config)
	if first := strings.SplitN(checkOut, "\n", 2)[0]; !strings.Contains(stderr, first) {
		t.Errorf("agent's problems %q do not match check's %q", stderr, first)
	}

	// A key readable by others is a credential problem check also finds.
	b := initNode(t, "beta", "alpha", "127.0.0.1:7947", "127.0.0.1:7946")
	if code, _, stderr := runCLI(t, "trust", "--config", a.config, b.fingerprint); code != exitOK {
		t.Fatalf("trust: %s", stderr)
	}
	if err := os.Chmod(a.key, 0o644); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCLI(t, "agent", "--config", a.config)
	if code != exitFail || !strings.Contains(stderr, "[tls] key") {
		t.Errorf("agent with a world-readable key: exit %d\n%s", code, stderr)
	}
}

func TestAgentUsage(t *testing.T) {
	if code, _, _ := runCLI(t, "agent", "extra"); code != exitUsage {
		t.Errorf("stray argument: exit %d, want %d", code, exitUsage)
	}
}
