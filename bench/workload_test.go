package bench

import "testing"

// TestWorkloadsHighest runs each workload on a plain directory (the logic
// is filesystem-independent; the rig runs them on zfs-fuse) and checks that
// a copy reports the last write of its own run only.
func TestWorkloadsHighest(t *testing.T) {
	for name, w := range map[string]workload{
		"append":    &appender{},
		"overwrite": newOverwriter(1),
		"mmap":      newMmapper(1),
		"files":     &smallFiles{},
	} {
		dir := t.TempDir()
		for run := uint32(1); run <= 2; run++ {
			if err := w.Start(dir, run); err != nil {
				t.Fatalf("%s: start: %v", name, err)
			}
			if got, err := w.Highest(dir, run); got != -1 {
				t.Errorf("%s run %d: before any write: highest %d (%v), want -1", name, run, got, err)
			}
			for seq := range 10 {
				if err := w.Write(seq); err != nil {
					t.Fatalf("%s: write %d: %v", name, seq, err)
				}
			}
			if err := w.Stop(); err != nil {
				t.Fatalf("%s: stop: %v", name, err)
			}
			if got, err := w.Highest(dir, run); err != nil || got != 9 {
				t.Errorf("%s run %d: highest %d (%v), want 9", name, run, got, err)
			}
			if got, _ := w.Highest(dir, run+7); got != -1 {
				t.Errorf("%s: another run's highest %d, want -1", name, got)
			}
		}
	}
}

func TestSchedules(t *testing.T) {
	if got := steady(1000)(1500); got.Milliseconds() != 1500 {
		t.Errorf("steady(1000)(1500) = %v", got)
	}
	b := bursts(50, 500_000_000)
	if b(49) != 0 || b(50).Milliseconds() != 500 {
		t.Errorf("bursts: %v %v", b(49), b(50))
	}
}
