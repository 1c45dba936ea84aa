package failover

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/flockerha/flocker/agent/config"
)

const ms = Instant(time.Millisecond)

// step is one line of a detector script: a heartbeat (seq > 0), a witness
// reply (reply), or only a check, each at instant at. Every step checks the
// verdict afterwards and the script's transcript is compared as text.
type step struct {
	at    Instant
	seq   uint64
	epoch uint64
	reply bool
}

func runDetector(t *testing.T, tm Timing, start Instant, steps []step) string {
	t.Helper()
	d, err := NewDetector(tm, start)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, s := range steps {
		what := "check"
		switch {
		case s.seq > 0:
			d.Observe(Heartbeat{Seq: s.seq, Role: config.RoleMaster, Epoch: s.epoch}, s.at)
			what = fmt.Sprintf("hb %d", s.seq)
		case s.reply:
			d.ObserveReply(s.at)
			what = "reply"
		}
		v := d.Check(s.at)
		line := fmt.Sprintf("%-8s %-10s %s", time.Duration(s.at), what, v)
		if v.Heard && v.Last.Seq > 0 {
			line += fmt.Sprintf(" (seq %d epoch %d)", v.Last.Seq, v.Last.Epoch)
		}
		if next, ok := d.NextChange(s.at); ok {
			line += fmt.Sprintf(" next %s", time.Duration(next))
		}
		b.WriteString(strings.TrimRight(line, " ") + "\n")
	}
	return b.String()
}

func TestDetector(t *testing.T) {
	def := DefaultTiming() // H 100ms, T 1s, S 450ms
	tests := []struct {
		name  string
		start Instant
		steps []step
		want  string
	}{
		{
			name: "never heard: suspect after S from start, dead after T",
			steps: []step{
				{at: 0}, {at: 449 * ms}, {at: 450 * ms}, {at: 999 * ms}, {at: 1000 * ms}, {at: 5000 * ms},
			},
			want: `
0s       check      alive since t+0s, never heard next 450ms
449ms    check      alive since t+0s, never heard next 450ms
450ms    check      suspect since t+450ms, never heard next 1s
999ms    check      suspect since t+450ms, never heard next 1s
1s       check      dead since t+1s, never heard
5s       check      dead since t+1s, never heard
`,
		},
		{
			name: "steady heartbeats stay alive since the first",
			steps: []step{
				{at: 50 * ms, seq: 1, epoch: 7}, {at: 150 * ms, seq: 2, epoch: 7}, {at: 250 * ms, seq: 3, epoch: 7},
				{at: 650 * ms}, {at: 699 * ms},
			},
			want: `
50ms     hb 1       alive since t+0s, last heard t+50ms (seq 1 epoch 7) next 500ms
150ms    hb 2       alive since t+0s, last heard t+150ms (seq 2 epoch 7) next 600ms
250ms    hb 3       alive since t+0s, last heard t+250ms (seq 3 epoch 7) next 700ms
650ms    check      alive since t+0s, last heard t+250ms (seq 3 epoch 7) next 700ms
699ms    check      alive since t+0s, last heard t+250ms (seq 3 epoch 7) next 700ms
`,
		},
		{
			name: "silence: suspect at last+S, dead at last+T, alive again since the return",
			steps: []step{
				{at: 100 * ms, seq: 1}, {at: 550 * ms}, {at: 1099 * ms}, {at: 1100 * ms},
				{at: 1300 * ms, seq: 2}, {at: 1400 * ms, seq: 3},
			},
			want: `
100ms    hb 1       alive since t+0s, last heard t+100ms (seq 1 epoch 0) next 550ms
550ms    check      suspect since t+550ms, last heard t+100ms (seq 1 epoch 0) next 1.1s
1.099s   check      suspect since t+550ms, last heard t+100ms (seq 1 epoch 0) next 1.1s
1.1s     check      dead since t+1.1s, last heard t+100ms (seq 1 epoch 0)
1.3s     hb 2       alive since t+1.3s, last heard t+1.3s (seq 2 epoch 0) next 1.75s
1.4s     hb 3       alive since t+1.3s, last heard t+1.4s (seq 3 epoch 0) next 1.85s
`,
		},
		{
			name: "a gap shorter than S keeps alive-since",
			steps: []step{
				{at: 100 * ms, seq: 1}, {at: 500 * ms, seq: 2},
			},
			want: `
100ms    hb 1       alive since t+0s, last heard t+100ms (seq 1 epoch 0) next 550ms
500ms    hb 2       alive since t+0s, last heard t+500ms (seq 2 epoch 0) next 950ms
`,
		},
		{
			name: "reordered datagram counts as life but does not roll back content",
			steps: []step{
				{at: 100 * ms, seq: 5, epoch: 8}, {at: 120 * ms, seq: 4, epoch: 7},
			},
			want: `
100ms    hb 5       alive since t+0s, last heard t+100ms (seq 5 epoch 8) next 550ms
120ms    hb 4       alive since t+0s, last heard t+120ms (seq 5 epoch 8) next 570ms
`,
		},
		{
			name: "restarted peer counting from 1 again is believed",
			steps: []step{
				{at: 100 * ms, seq: 900, epoch: 7}, {at: 200 * ms, seq: 1, epoch: 8},
			},
			want: `
100ms    hb 900     alive since t+0s, last heard t+100ms (seq 900 epoch 7) next 550ms
200ms    hb 1       alive since t+0s, last heard t+200ms (seq 1 epoch 8) next 650ms
`,
		},
		{
			// Instants come from a monotonic clock, so this can only be a
			// caller mixing clocks; still, time going back must never make a
			// live source dead, or move "since" backwards.
			name:  "now going backwards never declares dead",
			start: 10000 * ms,
			steps: []step{
				{at: 10100 * ms, seq: 1}, {at: 100 * ms}, {at: 200 * ms, seq: 2}, {at: 10200 * ms, seq: 3},
				{at: 10500 * ms},
			},
			want: `
10.1s    hb 1       alive since t+10s, last heard t+10.1s (seq 1 epoch 0) next 10.55s
100ms    check      alive since t+10s, last heard t+10.1s (seq 1 epoch 0) next 10.55s
200ms    hb 2       alive since t+10s, last heard t+10.1s (seq 2 epoch 0) next 10.55s
10.2s    hb 3       alive since t+10s, last heard t+10.2s (seq 3 epoch 0) next 10.65s
10.5s    check      alive since t+10s, last heard t+10.2s (seq 3 epoch 0) next 10.65s
`,
		},
		{
			name: "witness replies",
			steps: []step{
				{at: 100 * ms, reply: true}, {at: 600 * ms}, {at: 700 * ms, reply: true},
			},
			want: `
100ms    reply      alive since t+0s, last heard t+100ms next 550ms
600ms    check      suspect since t+550ms, last heard t+100ms next 1.1s
700ms    reply      alive since t+700ms, last heard t+700ms next 1.15s
`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := runDetector(t, def, tt.start, tt.steps)
			if want := strings.TrimPrefix(tt.want, "\n"); got != want {
				t.Errorf("transcript:\n%s\nwant:\n%s", got, want)
			}
		})
	}
}

// A clock jump seen through Clock: the wall clock may step, the instants do
// not. This drives a real Clock for a few heartbeats and checks that the
// instants only increase and the detector stays alive.
func TestClockMonotonic(t *testing.T) {
	c := NewClock()
	d, err := NewDetector(Timing{Heartbeat: 10 * time.Millisecond, Timeout: 200 * time.Millisecond}, c.Now())
	if err != nil {
		t.Fatal(err)
	}
	prev := c.Now()
	for i := 1; i <= 5; i++ {
		time.Sleep(5 * time.Millisecond)
		now := c.Now()
		if now <= prev {
			t.Fatalf("clock went from %s to %s", prev, now)
		}
		prev = now
		d.Observe(Heartbeat{Seq: uint64(i)}, now)
		if v := d.Check(now); v.Liveness != Alive {
			t.Fatalf("after heartbeat %d: %s", i, v)
		}
	}
}

func TestTiming(t *testing.T) {
	tests := []struct {
		tm   Timing
		want string
	}{
		{DefaultTiming(), "H 100ms T 1s: fence 550ms, promote 900ms, margin 350ms"},
		{Timing{Heartbeat: 100 * time.Millisecond, Timeout: 300 * time.Millisecond}, "H 100ms T 300ms: fence 125ms, promote 200ms, margin 75ms"},
		{Timing{Heartbeat: time.Second, Timeout: 10 * time.Second}, "H 1s T 10s: fence 5.5s, promote 9s, margin 3.5s"},
		{Timing{Heartbeat: 100 * time.Millisecond, Timeout: 299 * time.Millisecond}, "timing: timeout 299ms is less than 3 x heartbeat 100ms"},
		{Timing{Heartbeat: 0, Timeout: time.Second}, "timing: heartbeat 0s and timeout 1s must be positive"},
	}
	for _, tt := range tests {
		got := ""
		if err := tt.tm.Validate(); err != nil {
			got = err.Error()
		} else {
			got = fmt.Sprintf("H %v T %v: fence %v, promote %v, margin %v", tt.tm.Heartbeat, tt.tm.Timeout,
				tt.tm.FenceDeadline(), tt.tm.PromoteDeadline(), tt.tm.FenceMargin())
			if tt.tm.FenceMargin() <= 0 || tt.tm.FenceDeadline() >= tt.tm.PromoteDeadline() {
				t.Errorf("%v: fence deadline %v not before promote deadline %v", tt.tm, tt.tm.FenceDeadline(), tt.tm.PromoteDeadline())
			}
		}
		if got != tt.want {
			t.Errorf("got  %s\nwant %s", got, tt.want)
		}
	}
	if _, err := NewDetector(Timing{}, 0); err == nil {
		t.Error("NewDetector accepted a zero timing")
	}
}
