// Package gotest is the fixture of vmtest's RunGoTest test: it is compiled
// on the host and run in a guest.
package gotest

import (
	"os"
	"strings"
	"testing"
)

// TestInGuest checks what RunGoTest promises the tests it runs.
func TestInGuest(t *testing.T) {
	if os.Getenv("CI") != "true" || os.Getenv("FLOCKER_VM_GUEST") != "1" || os.Getenv("EXTRA") != "it's here" {
		t.Errorf("environment: CI=%q FLOCKER_VM_GUEST=%q EXTRA=%q", os.Getenv("CI"), os.Getenv("FLOCKER_VM_GUEST"), os.Getenv("EXTRA"))
	}
	if os.Geteuid() != 0 {
		t.Errorf("running as uid %d, want root", os.Geteuid())
	}
	if b, err := os.ReadFile("testdata/fixture.txt"); err != nil || string(b) != "fixture data\n" {
		t.Errorf("package testdata: %q, %v", b, err)
	}
	if b, err := os.ReadFile("/share/files/extra/file"); err != nil || string(b) != "shipped" {
		t.Errorf("shipped file: %q, %v", b, err)
	}
	if b, err := os.ReadFile("/proc/version"); err != nil || !strings.Contains(string(b), "Debian") {
		t.Errorf("/proc/version %q, %v: want the guest's Debian kernel", b, err)
	}
	if b, err := os.ReadFile("/tmp/setup-ran"); err != nil || string(b) != "yes\n" {
		t.Errorf("setup marker: %q, %v", b, err)
	}
	t.Log("guest checks done")
}

// TestFailsOnPurpose shows that a failure in the guest is reported.
func TestFailsOnPurpose(t *testing.T) {
	t.Fatal("failing on purpose")
}
