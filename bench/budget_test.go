package bench

import (
	"slices"
	"testing"
	"time"
)

// Every scenario of the default run has a budget in both runs, and the
// budgets with the rig's share fit the bounds: a scenario added
// without sizing it, or a budget grown past the bound, fails here.
func TestBudgetsFitTheRun(t *testing.T) {
	selected, err := selectScenarios(nil)
	if err != nil {
		t.Fatal(err)
	}
	var run, quick time.Duration
	for _, s := range selected {
		b, ok := budgets[s.Name]
		if !ok || b.run <= 0 || b.quick <= 0 {
			t.Errorf("scenario %s has no budget (%+v)", s.Name, b)
		}
		run += b.run
		quick += b.quick
	}
	if run+rigBudget > RunBudget {
		t.Errorf("default run: budgets add up to %v plus %v for the rig, over %v", run, rigBudget, RunBudget)
	}
	if quick+quickRigBudget > QuickRunBudget {
		t.Errorf("--quick: budgets add up to %v plus %v for the rig, over %v", quick, quickRigBudget, QuickRunBudget)
	}
	for name := range budgets {
		if !slices.ContainsFunc(selected, func(s Scenario) bool { return s.Name == name }) {
			t.Errorf("budget for %s, which is not in the default run", name)
		}
	}
}
