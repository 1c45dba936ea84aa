package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func runCLI(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestUnknownCommandIsUsageError(t *testing.T) {
	code, _, stderr := runCLI(t, "frobnicate")
	if code != exitUsage || !strings.Contains(stderr, `"frobnicate"`) {
		t.Fatalf("code=%d stderr=%q", code, stderr)
	}
}

func TestHelpListsCommands(t *testing.T) {
	code, stdout, _ := runCLI(t, "help")
	if code != exitOK || !strings.Contains(stdout, "version") {
		t.Fatalf("code=%d stdout=%q", code, stdout)
	}
}

func TestBadLogLevelIsUsageError(t *testing.T) {
	code, _, stderr := runCLI(t, "version", "--log-level", "loud")
	if code != exitUsage || !strings.Contains(stderr, `"loud"`) {
		t.Fatalf("code=%d stderr=%q", code, stderr)
	}
}

func TestStrayArgumentIsUsageError(t *testing.T) {
	code, _, stderr := runCLI(t, "version", "extra")
	if code != exitUsage || !strings.Contains(stderr, `"extra"`) {
		t.Fatalf("code=%d stderr=%q", code, stderr)
	}
}
