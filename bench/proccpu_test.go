package bench

import (
	"os"
	"syscall"
	"testing"
	"time"
)

func TestProcessCPUReadsProcStat(t *testing.T) {
	start := processCPU(os.Getpid())
	// Spin until the kernel's tick-grained account moves; rusage, read
	// the same way the kernel keeps it, must agree to a few ticks.
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for processCPU(os.Getpid()) <= start && time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x += i
		}
	}
	got := processCPU(os.Getpid())
	if got <= start {
		t.Fatalf("processCPU did not grow from %v while this process spun for 10 s (%d)", start, x)
	}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	if rusage := time.Duration(ru.Utime.Nano() + ru.Stime.Nano()); got > rusage+50*time.Millisecond || got < rusage-200*time.Millisecond {
		t.Errorf("processCPU %v, getrusage %v: not the same clock", got, rusage)
	}
	if c := processCPU(-1); c != 0 {
		t.Errorf("processCPU of no process = %v, want 0", c)
	}
}
