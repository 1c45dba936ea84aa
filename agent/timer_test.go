package agent

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/flockerha/flocker/internal/logging"
)

// mountedDir returns a directory that is a mount root on every Linux host.
func mountedDir(t *testing.T) string {
	t.Helper()
	if err := checkMounted("/"); err != nil {
		t.Fatalf("/ must count as mounted: %v", err)
	}
	return "/"
}

func TestTimerReportsEveryInterval(t *testing.T) {
	tm, err := NewTimer(10*time.Millisecond, nil, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer tm.Close()
	if err := tm.Add(context.Background(), Target{Name: "pool/app", Mountpoint: mountedDir(t)}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		select {
		case c := <-tm.Changes():
			if c.Dataset != "pool/app" || c.Tier != TierTimer || c.Hook != "interval" {
				t.Fatalf("unexpected change %+v", c)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no change from the timer")
		}
	}
}

func TestTimerSkipsWhenNothingWritten(t *testing.T) {
	var asked atomic.Int32
	var written atomic.Uint64
	w := func(_ context.Context, ds string) (uint64, bool, error) {
		asked.Add(1)
		return written.Load(), true, nil
	}
	tm, err := NewTimer(5*time.Millisecond, w, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer tm.Close()
	if err := tm.Add(context.Background(), Target{Name: "pool/app", Mountpoint: "/"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for asked.Load() < 5 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	select {
	case c := <-tm.Changes():
		t.Fatalf("reported %+v although written=0", c)
	default:
	}
	written.Store(4096)
	select {
	case <-tm.Changes():
	case <-time.After(5 * time.Second):
		t.Fatal("no change after written became non-zero")
	}
}

func TestTimerAssumesChangedWhenUnknown(t *testing.T) {
	for name, w := range map[string]WrittenFunc{
		"dialect without written": func(context.Context, string) (uint64, bool, error) { return 0, false, nil },
		"zfs error":               func(context.Context, string) (uint64, bool, error) { return 0, true, errors.New("boom") },
	} {
		t.Run(name, func(t *testing.T) {
			tm, err := NewTimer(5*time.Millisecond, w, logging.Discard())
			if err != nil {
				t.Fatal(err)
			}
			defer tm.Close()
			if err := tm.Add(context.Background(), Target{Name: "d", Mountpoint: "/"}); err != nil {
				t.Fatal(err)
			}
			select {
			case <-tm.Changes():
			case <-time.After(5 * time.Second):
				t.Fatal("no change reported")
			}
		})
	}
}

func TestTimerRejectsNonMount(t *testing.T) {
	tm, err := NewTimer(time.Second, nil, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	defer tm.Close()
	dir := t.TempDir() // a plain directory inside some other mount
	if err := tm.Add(context.Background(), Target{Name: "x", Mountpoint: dir}); err == nil {
		t.Fatalf("Add(%s) accepted a directory that is not a mount root", dir)
	}
	if err := tm.Remove("x"); err == nil {
		t.Fatal("Remove of an unknown target must fail")
	}
}

func TestTimerCloseClosesChangesAndIsIdempotent(t *testing.T) {
	tm, err := NewTimer(time.Millisecond, nil, logging.Discard())
	if err != nil {
		t.Fatal(err)
	}
	if err := tm.Add(context.Background(), Target{Name: "d", Mountpoint: "/"}); err != nil {
		t.Fatal(err)
	}
	if err := tm.Close(); err != nil {
		t.Fatal(err)
	}
	if err := tm.Close(); err != nil {
		t.Fatal(err)
	}
	for range tm.Changes() { // drains what was buffered, then must end
	}
	if _, err := NewTimer(0, nil, logging.Discard()); err == nil {
		t.Fatal("a zero interval must be refused")
	}
}
