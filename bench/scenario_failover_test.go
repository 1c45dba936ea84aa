package bench

import (
	"slices"
	"testing"

	"github.com/flockerha/flocker/internal/agentpair"
)

func TestFalseFailoversIsOptIn(t *testing.T) {
	all, err := selectScenarios(nil)
	if err != nil {
		t.Fatal(err)
	}
	has := func(list []Scenario, name string) bool {
		return slices.ContainsFunc(list, func(s Scenario) bool { return s.Name == name })
	}
	if has(all, "false-failovers") {
		t.Error("the default run includes false-failovers")
	}
	for _, name := range []string{"failover", "handoff"} {
		if !has(all, name) {
			t.Errorf("the default run lacks %s", name)
		}
	}
	named, err := selectScenarios([]string{"false-failovers"})
	if err != nil || len(named) != 1 || named[0].Name != "false-failovers" {
		t.Fatalf("selecting false-failovers: %v, %v", named, err)
	}
}

func decision(state, effects, note string) agentpair.Record {
	return agentpair.Record{"msg": "failover decision", "state": state, "effects": effects, "note": note}
}

// TestCountRoleEvents: records as the agent logs them (failover.State's
// and failover.Effects' strings).
func TestCountRoleEvents(t *testing.T) {
	for _, tc := range []struct {
		name                          string
		role                          string
		recs                          []agentpair.Record
		promotions, fencings, changes int
	}{
		{name: "quiet master", role: "master", recs: []agentpair.Record{
			{"msg": "snapshot taken"},
			decision("master/serving e3", "-", "beta is dead: serving alone"),
		}},
		{name: "master fences and resumes", role: "master", recs: []agentpair.Record{
			decision("master/fenced e3", "vip-drop(app) stop(app) readonly(app)", "lost both peer and witness: fencing"),
			decision("master/fenced e3", "-", "beta is master at older epoch 2: waiting for it to demote"),
			decision("master/serving e3", "writable(app) start(app) vip-add(app)", "beta heard as slave at epoch 3"),
			decision("master/fenced e3", "vip-drop(app) stop(app) readonly(app)", "lost both peer and witness: fencing"),
		}, fencings: 2},
		{name: "slave promotes", role: "slave", recs: []agentpair.Record{
			decision("master/serving e4", "persist(master,4) abort-receive(app) writable(app) start(app) vip-add(app)", "alpha confirmed dead"),
		}, promotions: 1, changes: 1},
		{name: "master demotes", role: "master", recs: []agentpair.Record{
			decision("slave/standby e5", "persist(slave,5) vip-drop(app) stop(app) readonly(app)", "beta is master at epoch 5, above ours"),
		}, changes: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := countRoleEvents("alpha", tc.recs, tc.role)
			if ev.promotions != tc.promotions || ev.fencings != tc.fencings || ev.roleChanges != tc.changes {
				t.Fatalf("promotions %d fencings %d changes %d; want %d %d %d",
					ev.promotions, ev.fencings, ev.roleChanges, tc.promotions, tc.fencings, tc.changes)
			}
			withEffects := 0
			for _, r := range tc.recs {
				if e := r.Str("effects"); e != "" && e != "-" {
					withEffects++
				}
			}
			n := 0
			for _, c := range ev.notes {
				n += c
			}
			if n != withEffects {
				t.Fatalf("%d noted decisions, want %d: %v", n, withEffects, ev.notes)
			}
		})
	}
}
