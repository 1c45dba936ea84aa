package ackcheck

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLedgerCounts(t *testing.T) {
	master, replica, stash := t.TempDir(), t.TempDir(), t.TempDir()
	l := New(master, "w")
	var names []string
	for range 6 {
		n, err := l.Write(100)
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, n)
	}
	// A write the file system refuses is not acknowledged.
	bad := New(filepath.Join(master, "no-such-dir"), "x")
	if _, err := bad.Write(10); err == nil {
		t.Fatal("a write into a missing directory succeeded")
	}
	if r, _ := bad.Check(master); r.Acked != 0 || r.Failed != 1 || !r.OK() {
		t.Errorf("refused write: %v", r)
	}

	copyFile := func(name, dir string) {
		data, err := os.ReadFile(filepath.Join(master, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Replica: writes 0-2; write 3 torn; stash: write 4; write 5 lost.
	for _, n := range names[:3] {
		copyFile(n, replica)
	}
	if err := os.WriteFile(filepath.Join(replica, names[3]), []byte("half"), 0o644); err != nil {
		t.Fatal(err)
	}
	copyFile(names[4], stash)

	r, err := l.Check(replica, stash)
	if err != nil {
		t.Fatal(err)
	}
	if r.OK() || r.Acked != 6 || r.Found != 4 || len(r.Lost) != 1 || r.Lost[0] != names[5] ||
		len(r.Torn) != 1 || r.Torn[0] != names[3] || r.Where[replica] != 3 || r.Where[stash] != 1 {
		t.Fatalf("report %+v", r)
	}
	if !strings.Contains(r.String(), "writes acknowledged 6, found 4, lost 1, torn 1") {
		t.Errorf("String: %s", r)
	}
	// The torn write found intact in a later directory counts as found.
	copyFile(names[3], stash)
	copyFile(names[5], stash)
	if r, err := l.Check(replica, stash, filepath.Join(master, "absent")); err != nil || !r.OK() || r.Found != 6 {
		t.Fatalf("after repair: %+v, %v", r, err)
	}
	if r, err := l.Check(master); err != nil || !r.OK() {
		t.Fatalf("the master itself: %+v, %v", r, err)
	}
}
