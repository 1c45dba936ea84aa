package main

import (
	"os"
	"runtime"
)

// agentProcs is how many Ps (GOMAXPROCS) the agent runs with: half the CPUs,
// at least one, unless the GOMAXPROCS variable is set (then Go's own reading
// of it stands and agentProcs returns 0). The other half belongs to zfs,
// which the agent feeds: on the 2-CPU test machine a full sync costs the two
// agents about a third less CPU with one P (measured with `flocker bench
// --scenario throughput`), because with a second P every hand-off between the
// stream copy, quic-go's connection loop and its socket goroutines wakes an
// idle thread that spins looking for work while zfs waits for the core.
func agentProcs(ncpu int, env string) int {
	if env != "" {
		return 0
	}
	return max(ncpu/2, 1)
}

// limitProcs applies agentProcs and returns a function restoring the old
// setting (tests run the agent inside the test binary).
func limitProcs() (procs int, restore func()) {
	n := agentProcs(runtime.NumCPU(), os.Getenv("GOMAXPROCS"))
	if n == 0 {
		return runtime.GOMAXPROCS(0), func() {}
	}
	old := runtime.GOMAXPROCS(n)
	return n, func() { runtime.GOMAXPROCS(old) }
}
