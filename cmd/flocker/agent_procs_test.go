package main

import (
	"runtime"
	"testing"
)

func TestAgentProcs(t *testing.T) {
	for _, c := range []struct {
		ncpu int
		env  string
		want int
	}{
		{1, "", 1},
		{2, "", 1},
		{3, "", 1},
		{4, "", 2},
		{64, "", 32},
		{2, "2", 0}, // the operator's GOMAXPROCS stands
		{8, "1", 0},
	} {
		if got := agentProcs(c.ncpu, c.env); got != c.want {
			t.Errorf("agentProcs(%d, %q) = %d, want %d", c.ncpu, c.env, got, c.want)
		}
	}
}

func TestLimitProcsRestores(t *testing.T) {
	t.Setenv("GOMAXPROCS", "") // unset for agentProcs; the runtime read it at start
	old := runtime.GOMAXPROCS(0)
	n, restore := limitProcs()
	if got := runtime.GOMAXPROCS(0); got != n || n != max(runtime.NumCPU()/2, 1) {
		t.Errorf("limitProcs: GOMAXPROCS %d, reported %d, want %d", got, n, max(runtime.NumCPU()/2, 1))
	}
	restore()
	if got := runtime.GOMAXPROCS(0); got != old {
		t.Errorf("after restore: GOMAXPROCS %d, want %d", got, old)
	}
}
