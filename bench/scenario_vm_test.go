package bench

import (
	"slices"
	"testing"
)

// TestVMScenarioOnlyWhenNamed: the default run leaves the VM tier out
// (it boots guests); naming it selects it.
func TestVMScenarioOnlyWhenNamed(t *testing.T) {
	all, err := selectScenarios(nil)
	if err != nil {
		t.Fatal(err)
	}
	if slices.ContainsFunc(all, func(s Scenario) bool { return s.VM }) {
		t.Errorf("the default run includes a VM scenario")
	}
	if !slices.ContainsFunc(all, func(s Scenario) bool { return s.Name == "lag" }) {
		t.Errorf("the default run lacks the host lag scenario")
	}
	named, err := selectScenarios([]string{"vm"})
	if err != nil || len(named) != 1 || !named[0].VM {
		t.Errorf("--scenario vm: %v, %v", named, err)
	}
}
