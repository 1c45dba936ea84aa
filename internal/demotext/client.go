package demotext

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Client is a demo's client C: it asks for a file through the floating
// address in a loop and prints each change of what it gets (answered with
// which content, or not answered).
type Client struct {
	cancel         context.CancelFunc
	done           chan struct{}
	mu             sync.Mutex
	served, failed int
}

// StartClient runs get every interval until Stop, printing changes to out
// with the time since start.
func StartClient(ctx context.Context, out io.Writer, start time.Time, every time.Duration, get func(context.Context) (string, error)) *Client {
	ctx, cancel := context.WithCancel(ctx)
	c := &Client{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(c.done)
		last := ""
		for {
			body, err := get(ctx)
			if ctx.Err() != nil {
				return
			}
			now := "answered: " + strings.TrimSpace(body)
			if err != nil {
				now = "no answer (" + FirstLine(err.Error(), 60) + ")"
			}
			c.mu.Lock()
			if err != nil {
				c.failed++
			} else {
				c.served++
			}
			c.mu.Unlock()
			if now != last {
				fmt.Fprintf(out, "  [%5.1fs] C: %s\n", time.Since(start).Seconds(), now)
				last = now
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(every):
			}
		}
	}()
	return c
}

// Stop ends the loop and waits for it.
func (c *Client) Stop() { c.cancel(); <-c.done }

// Counts returns the requests answered and not answered so far.
func (c *Client) Counts() (served, failed int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.served, c.failed
}

// SyncWriter serialises writes from a demo's story and its client's loop.
type SyncWriter struct {
	mu sync.Mutex
	W  io.Writer
}

func (s *SyncWriter) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.W.Write(b)
}
