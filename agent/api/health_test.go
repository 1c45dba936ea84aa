package api

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent"
)

func TestAssess(t *testing.T) {
	now := time.Date(2026, 11, 21, 15, 0, 0, 0, time.UTC)
	doc := func(node, role, peerRole string, connected bool, lag time.Duration) *Document {
		d := NewDocument(agent.Status{Node: node, Role: role, Epoch: 3,
			Peer:     agent.PeerStatus{Name: map[string]string{"alpha": "beta", "beta": "alpha"}[node], Connected: connected, Role: peerRole, Since: now.Add(-time.Minute)},
			Datasets: []agent.DatasetStatus{{Name: "app", Role: role, Lag: lag}}}, nil, now)
		return &d
	}
	const threshold = 10 * time.Second
	withStash := doc("alpha", "master", "slave", true, 0)
	withStash.Datasets[0].Stashes = []agent.Stash{{Name: "tank/flocker-stash/app-2-x", Dataset: "app", Epoch: 2}}
	conflict := doc("alpha", "master", "slave", true, 0)
	conflict.Datasets[0].Conflict = "no common snapshot"
	for _, c := range []struct {
		name  string
		v     View
		want  Level
		first string
	}{
		{"healthy pair", View{Local: doc("alpha", "master", "slave", true, time.Second)}, Healthy, ""},
		{"healthy pair, peer asked", View{Local: doc("beta", "slave", "master", true, 0), PeerAsked: true,
			Peer: doc("alpha", "master", "slave", true, 2*time.Second)}, Healthy, ""},
		{"agent down", View{LocalErr: errors.New("connection refused")}, Broken, "does not answer: connection refused"},
		{"master alone", View{Local: doc("alpha", "master", "", false, 0)}, Degraded, "peer beta is unreachable from alpha for 1m0s"},
		{"slave alone", View{Local: doc("beta", "slave", "", false, 0)}, Broken, "no reachable master"},
		{"two slaves", View{Local: doc("beta", "slave", "slave", true, 0)}, Broken, "no master: beta is slave and alpha is slave"},
		{"split brain", View{Local: doc("alpha", "master", "master", true, 0)}, Broken, "both alpha and beta are master"},
		{"lag over threshold", View{Local: doc("alpha", "master", "slave", true, 11*time.Second)}, Degraded, "replication lag 11s is over 10s"},
		{"lag on the peer", View{Local: doc("beta", "slave", "master", true, 0), PeerAsked: true,
			Peer: doc("alpha", "master", "slave", true, time.Minute)}, Degraded, "replication lag 1m0s"},
		{"peer port silent", View{Local: doc("alpha", "master", "slave", true, 0), PeerAsked: true, PeerErr: errors.New("timeout")}, Degraded, "status port does not answer: timeout"},
		{"stash", View{Local: withStash}, Degraded, "stash tank/flocker-stash/app-2-x (epoch 2, 0 B) waits"},
		{"conflict", View{Local: conflict}, Broken, "replication stopped: no common snapshot"},
		{"broken before degraded", View{Local: doc("beta", "slave", "", false, 0), PeerAsked: true, PeerErr: errors.New("timeout")}, Broken, "no reachable master"},
	} {
		got, fs := Assess(c.v, threshold)
		if got != c.want {
			t.Errorf("%s: %v, want %v (%+v)", c.name, got, c.want, fs)
			continue
		}
		if c.first == "" {
			if len(fs) != 0 {
				t.Errorf("%s: findings %+v, want none", c.name, fs)
			}
			continue
		}
		if len(fs) == 0 || !strings.Contains(fs[0].Message, c.first) {
			t.Errorf("%s: first finding %+v, want one saying %q", c.name, fs, c.first)
		}
	}
}

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 450 * time.Microsecond: "450µs", 850 * time.Millisecond: "850ms", 12340 * time.Millisecond: "12.3s",
		250 * time.Second: "4m10s", 3*time.Hour + 5*time.Minute: "3h5m", 52 * time.Hour: "2d4h", -2 * time.Second: "-2s",
	} {
		if got := HumanDuration(d); got != want {
			t.Errorf("HumanDuration(%v) = %q, want %q", d, got, want)
		}
	}
	for n, want := range map[uint64]string{512: "512 B", 3 << 20: "3.0 MiB", 1536: "1.5 KiB"} {
		if got := HumanBytes(n); got != want {
			t.Errorf("HumanBytes(%d) = %q, want %q", n, got, want)
		}
	}
}
