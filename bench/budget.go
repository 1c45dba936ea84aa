package bench

import "time"

// The run's time budget (issue 7): the default run within 5 minutes, --quick
// within 1, on this project's 2-core machine while other work shares it.
// Every scenario's durations and sample counts are fixed (and its random
// choices seeded), so its wall time moves only with the machine's speed;
// each is sized to fit its budget below at a moderate load (about 3 per
// core). The report prints each scenario's time beside its budget.
const (
	RunBudget      = 5 * time.Minute
	QuickRunBudget = time.Minute
	// rigBudget is what the run spends outside scenarios: the rig's
	// teardown (pools destroyed, namespaces removed) and the report.
	rigBudget      = 10 * time.Second
	quickRigBudget = 5 * time.Second
)

// budget is one scenario's share: default run, --quick.
type budget struct{ run, quick time.Duration }

// budgets of the default scenarios. What each buys:
//
//	floor       30 snapshot+send|recv rounds (10 quick), and the lag rig's build
//	lag         6 s of writes at 10/s per trigger mode (1 s quick), a restart per mode
//	            (the best tier last, for the next scenarios); the 60 s periodic
//	            baseline is derived from the 1 s timer's run, not waited for
//	rates       8 s at 10/s, 5 s at 1,000/s (2 s and 1.5 s quick), then 20 floor rounds
//	            while 1,000 writes/s land (3 quick)
//	workloads   3 s per workload (1 s quick), at most 10 s to settle
//	overhead    bpf's BenchmarkPwriteOverhead: 50,000 writes x 5 rounds per configuration
//	            (two configurations, 20,000 x 3 quick)
//	throughput  1 GiB written, sent locally and by the agents (32 MiB quick)
//	scale       50 datasets added and synced, 8 s at 200 writes/s (5 datasets, 1 s quick)
//	failover    the failover rig's build, 10 kills (1 quick; --scenario failover: 20)
//	handoff     3 handoffs (1 quick; --scenario handoff: 5)
var budgets = map[string]budget{
	"floor":      {8 * time.Second, 4 * time.Second},
	"lag":        {40 * time.Second, 9 * time.Second},
	"rates":      {28 * time.Second, 6 * time.Second},
	"workloads":  {30 * time.Second, 9 * time.Second},
	"overhead":   {25 * time.Second, 6 * time.Second},
	"throughput": {35 * time.Second, 3 * time.Second},
	"scale":      {50 * time.Second, 6 * time.Second},
	"failover":   {35 * time.Second, 8 * time.Second},
	"handoff":    {12 * time.Second, 3 * time.Second},
}

// budgetOf is a scenario's budget, zero for those outside the default run
// (opt-in and VM scenarios run for as long as they are asked to).
func budgetOf(name string, quick bool) time.Duration {
	b := budgets[name]
	if quick {
		return b.quick
	}
	return b.run
}
