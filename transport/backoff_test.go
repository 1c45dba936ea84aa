package transport

import (
	"testing"
	"time"
)

func TestBackoffDelay(t *testing.T) {
	ms := time.Millisecond
	cases := []struct {
		n        int
		jitter   float64
		want     time.Duration
		comments string
	}{
		{0, 0.9, 0, "first attempt after a loss is immediate"},
		{-1, 0.5, 0, ""},
		{1, 0, 25 * ms, "half of the base"},
		{1, 0.999999, 50 * ms, "just under the base"},
		{2, 0, 50 * ms, ""},
		{3, 0.5, 150 * ms, "200 ms: 100 + 50"},
		{6, 0, 800 * ms, "1600 ms halved"},
		{7, 0, BackoffMax / 2, "capped"},
		{7, 0.999999, BackoffMax, ""},
		{40, 0.5, 1500 * ms, "no overflow far out"},
		{1 << 30, 0, BackoffMax / 2, ""},
	}
	for _, tc := range cases {
		got := backoffDelay(tc.n, tc.jitter)
		if got.Round(ms) != tc.want {
			t.Errorf("attempt %d jitter %v: %v, want %v (%s)", tc.n, tc.jitter, got, tc.want, tc.comments)
		}
		if got > BackoffMax {
			t.Errorf("attempt %d: %v above the cap", tc.n, got)
		}
	}
}

func TestSupersedes(t *testing.T) {
	const inst1, inst2 = 11, 22
	cases := []struct {
		name        string
		local, peer string
		cur, cand   connInfo
		want        bool
	}{
		{"simultaneous, alpha's dial arrives second at alpha", "alpha", "beta",
			connInfo{"beta", inst1}, connInfo{"alpha", inst1}, true},
		{"simultaneous, beta's dial arrives second at alpha", "alpha", "beta",
			connInfo{"alpha", inst1}, connInfo{"beta", inst1}, false},
		{"simultaneous, alpha's dial arrives second at beta", "beta", "alpha",
			connInfo{"beta", inst1}, connInfo{"alpha", inst1}, true},
		{"simultaneous, beta's dial arrives second at beta", "beta", "alpha",
			connInfo{"alpha", inst1}, connInfo{"beta", inst1}, false},
		{"same dialer again: it gave up on the old one", "alpha", "beta",
			connInfo{"beta", inst1}, connInfo{"beta", inst1}, true},
		{"peer restarted: new instance wins even against the name rule", "alpha", "beta",
			connInfo{"alpha", inst1}, connInfo{"beta", inst2}, true},
	}
	for _, tc := range cases {
		if got := supersedes(tc.local, tc.peer, tc.cur, tc.cand); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	// Both nodes keep the same one of two crossing connections, whichever
	// order they arrive in.
	a, b := connInfo{"alpha", inst1}, connInfo{"beta", inst1}
	for _, first := range []connInfo{a, b} {
		second := b
		if first == b {
			second = a
		}
		keptAtAlpha, keptAtBeta := first, first
		if supersedes("alpha", "beta", first, second) {
			keptAtAlpha = second
		}
		if supersedes("beta", "alpha", first, second) {
			keptAtBeta = second
		}
		if keptAtAlpha != a || keptAtBeta != a {
			t.Errorf("first %v: alpha kept %v, beta kept %v; want both alpha's", first, keptAtAlpha, keptAtBeta)
		}
	}
}
