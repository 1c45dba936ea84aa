package agent

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestSendSlots(t *testing.T) {
	s := make(sendSlots, 2)
	waited := 0
	wait := func() { waited++ }
	r1, err := s.acquire(context.Background(), wait)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := s.acquire(context.Background(), wait)
	if err != nil {
		t.Fatal(err)
	}
	if waited != 0 {
		t.Fatalf("waited %d times with free slots", waited)
	}
	// Full: a third waits, and gives up when its context ends.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := s.acquire(ctx, wait); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("acquire on full slots = %v, want the context's end", err)
	}
	if waited != 1 {
		t.Fatalf("waiting called %d times, want 1", waited)
	}
	// A release lets a waiter in.
	got := make(chan error, 1)
	go func() {
		r, err := s.acquire(context.Background(), nil)
		if err == nil {
			r()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("acquired while full: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	r1()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	r2()
	if len(s) != 0 {
		t.Fatalf("%d slots still taken after every release", len(s))
	}
	// nil: no limit.
	var none sendSlots
	for range 10 {
		if _, err := none.acquire(context.Background(), func() { t.Fatal("nil slots waited") }); err != nil {
			t.Fatal(err)
		}
	}
}
