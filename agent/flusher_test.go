package agent

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

// The flush function here is a stand-in for syncfs: a syncfs that never
// returns needs a FUSE daemon that stopped answering (internal/rig's wedge
// test plays one with a stopped zfs-fuse); what is under test is the bound
// the notifiers rely on, not the kernel call.
func TestFlusherBoundsAStuckSyncfs(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	calls := map[string]int{}
	f := &flusher{pending: map[string]bool{}, flush: func(path string) error {
		mu.Lock()
		calls[path]++
		n := calls[path]
		mu.Unlock()
		if path == "/stuck" && n == 1 {
			<-release
		}
		return nil
	}}

	start := time.Now()
	err := f.syncfs("/stuck", 50*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "no answer within 50ms") {
		t.Fatalf("stuck flush: got %v, want a timeout", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("stuck flush returned after %v", took)
	}
	if err := f.syncfs("/stuck", time.Second); !errors.Is(err, errFlushPending) {
		t.Fatalf("second flush while the first is stuck: got %v, want errFlushPending", err)
	}
	if err := f.syncfs("/other", time.Second); err != nil {
		t.Fatalf("another file system is not held up: %v", err)
	}

	close(release)
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f.syncfs("/stuck", time.Second)
		if err == nil {
			break
		}
		if !errors.Is(err, errFlushPending) || time.Now().After(deadline) {
			t.Fatalf("after the stuck call returned: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if calls["/stuck"] != 2 {
		t.Fatalf("flushes of /stuck: %d, want 2 (none started while one was pending)", calls["/stuck"])
	}
}
