package demotext

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestClientPrintsChanges: only changes are printed; every request is counted.
func TestClientPrintsChanges(t *testing.T) {
	answers := []struct {
		body string
		err  error
	}{{"one", nil}, {"one", nil}, {"", errors.New("timeout\nmore")}, {"", errors.New("timeout")}, {"two", nil}}
	var calls int
	got := make(chan struct{})
	get := func(context.Context) (string, error) {
		i := calls
		calls++
		if i == len(answers)-1 {
			close(got)
		}
		if i >= len(answers) {
			i = len(answers) - 1
		}
		return answers[i].body, answers[i].err
	}
	var buf bytes.Buffer
	out := &SyncWriter{W: &buf}
	c := StartClient(context.Background(), out, time.Now(), time.Millisecond, get)
	<-got
	c.Stop()
	served, failed := c.Counts()
	if failed != 2 || served < 3 {
		t.Fatalf("counts served=%d failed=%d, want >=3 and 2", served, failed)
	}
	out.mu.Lock()
	text := buf.String()
	out.mu.Unlock()
	var lines []string
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		lines = append(lines, l[strings.Index(l, "C:"):])
	}
	want := []string{"C: answered: one", "C: no answer (timeout)", "C: answered: two"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Fatalf("printed %q, want %q", lines, want)
	}
}
