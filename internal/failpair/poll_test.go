package failpair

import (
	"errors"
	"testing"
	"time"
)

func TestLongestGap(t *testing.T) {
	t0 := time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ok := func(ms int) Answer { return Answer{Sent: at(ms - 5), At: at(ms), Body: "x"} }
	failed := func(ms int) Answer { return Answer{Sent: at(ms - 250), At: at(ms), Err: errors.New("i/o timeout")} }
	answers := []Answer{
		ok(0), ok(10), ok(20),
		failed(300), {Sent: at(295), At: at(300), Body: "other"}, // neither counts
		ok(530), ok(520), // recorded out of order
		ok(540),
		ok(2000), // after the window
	}
	before, after, found := LongestGap(answers, "x", at(0), at(1000))
	if !found || !before.At.Equal(at(20)) || !after.At.Equal(at(520)) {
		t.Fatalf("gap %v..%v (found %v), want 20 ms..520 ms", before.At.Sub(t0), after.At.Sub(t0), found)
	}
	if _, _, found := LongestGap(answers, "x", at(1500), at(2500)); found {
		t.Fatal("a gap found with one answer in the window")
	}
	if _, _, found := LongestGap(answers, "nothing", at(0), at(3000)); found {
		t.Fatal("a gap found between answers that do not match")
	}
}
