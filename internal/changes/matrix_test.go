//go:build linux

package changes

import (
	"testing"
	"time"

	"github.com/flockerha/flocker/agent"
)

func TestJudgeExtra(t *testing.T) {
	end := time.Date(2026, 11, 22, 9, 0, 0, 0, time.UTC)
	first := agent.Change{Hook: "kretprobe/notify_change", Time: end.Add(-30 * time.Millisecond)}
	at := func(hook string, after time.Duration) agent.Change {
		return agent.Change{Hook: hook, Time: end.Add(after)}
	}
	for _, tc := range []struct {
		name          string
		extra         []agent.Change
		rearmed, bads int
	}{
		{"none", nil, 0, 0},
		{"a later hook of the same call", []agent.Change{at("kretprobe/do_filp_open", -5*time.Millisecond)}, 1, 0},
		{"a later hook sampled after the call returned", []agent.Change{at("kretprobe/do_filp_open", 200*time.Millisecond)}, 1, 0},
		{"the first hook again", []agent.Change{at("kretprobe/notify_change", 0)}, 0, 1},
		{"a further hook twice", []agent.Change{at("kretprobe/do_filp_open", 0), at("kretprobe/do_filp_open", time.Millisecond)}, 1, 1},
		{"a hook long after the call", []agent.Change{at("kretprobe/do_filp_open", 1500*time.Millisecond)}, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rearmed, bad := judgeExtra(first, tc.extra, end)
			if len(rearmed) != tc.rearmed || len(bad) != tc.bads {
				t.Errorf("accepted %d (%s) and refused %d (%s), want %d and %d",
					len(rearmed), hooksOf(rearmed), len(bad), hooksOf(bad), tc.rearmed, tc.bads)
			}
		})
	}
}
