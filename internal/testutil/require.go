// Package testutil holds helpers shared by the project's tests.
package testutil

import (
	"fmt"
	"os"
	"testing"
)

// InCI reports whether the tests run in CI (CI=true), where every privileged or
// kernel-dependent test is expected to run.
func InCI() bool { return os.Getenv("CI") == "true" }

// Require stops the test when ok is false: outside CI it skips with the reason;
// in CI it fails, so a test that needs root or a kernel feature can never go
// silently dark there. It is the one place the project's tests skip from.
func Require(t testing.TB, ok bool, format string, args ...any) {
	t.Helper()
	if ok {
		return
	}
	reason := fmt.Sprintf(format, args...)
	if InCI() {
		t.Fatalf("required in CI (CI=true) but unavailable: %s", reason)
		return
	}
	t.Skipf("skipped: %s (set CI=true to make this a failure)", reason)
}

// RequireNoError is Require for a probe that returns an error: what names the
// capability, err is the reason it is missing.
func RequireNoError(t testing.TB, what string, err error) {
	t.Helper()
	Require(t, err == nil, "%s: %v", what, err)
}

// RequireRoot needs uid 0. Under -short (make test-unit) privileged tests are
// not wanted at all, so they skip even in CI.
func RequireRoot(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("privileged test: not run with -short")
	}
	Require(t, os.Geteuid() == 0, "needs root (running as uid %d)", os.Geteuid())
}
