package failpair

import (
	"context"
	"slices"
	"sync"
	"time"
)

// Answer is one request of a Poller: when it was sent, when it ended and
// how.
type Answer struct {
	Sent, At time.Time
	Body     string
	Err      error
}

// OK reports whether the request was answered with want.
func (a Answer) OK(want string) bool { return a.Err == nil && a.Body == want }

// Poller is client C requesting one file through the floating address at a
// steady pace. Requests overlap: a new one starts every interval whatever
// the earlier ones do, so a request stuck on a dead address (its SYN went to
// the old holder) does not delay noticing the new holder; the time of the
// first good answer is then known to within about one interval.
type Poller struct {
	name    string
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	answers []Answer
	changed chan struct{}
}

// Poll starts requesting name every interval, each request bounded by
// timeout, until Stop.
func (p *Pair) Poll(name string, every, timeout time.Duration) *Poller {
	ctx, cancel := context.WithCancel(context.Background())
	pl := &Poller{name: name, cancel: cancel, changed: make(chan struct{})}
	pl.wg.Add(1)
	go func() {
		defer pl.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			pl.wg.Add(1)
			go func() {
				defer pl.wg.Done()
				sent := time.Now()
				body, err := p.Get(name, timeout)
				pl.add(Answer{Sent: sent, At: time.Now(), Body: body, Err: err})
			}()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return pl
}

func (pl *Poller) add(a Answer) {
	pl.mu.Lock()
	pl.answers = append(pl.answers, a)
	close(pl.changed)
	pl.changed = make(chan struct{})
	pl.mu.Unlock()
}

// Stop ends the polling, waits for the requests in flight and returns every
// answer in the order they ended.
func (pl *Poller) Stop() []Answer {
	pl.cancel()
	pl.wg.Wait()
	return pl.Answers()
}

// Answers returns the answers so far, in the order they ended.
func (pl *Poller) Answers() []Answer {
	pl.mu.Lock()
	defer pl.mu.Unlock()
	return append([]Answer(nil), pl.answers...)
}

// WaitOK returns the first answer with want to a request sent at or after
// since, waiting for it until ctx ends.
func (pl *Poller) WaitOK(ctx context.Context, since time.Time, want string) (Answer, error) {
	for {
		pl.mu.Lock()
		var last *Answer
		for i := range pl.answers {
			a := &pl.answers[i]
			if a.Sent.Before(since) {
				continue
			}
			if a.OK(want) {
				r := *a
				pl.mu.Unlock()
				return r, nil
			}
			last = a
		}
		var lastErr error
		if last != nil {
			lastErr = last.Err
		}
		ch := pl.changed
		pl.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return Answer{}, &NotServedError{Name: pl.name, Last: lastErr}
		}
	}
}

// NotServedError: a poller saw no good answer in time.
type NotServedError struct {
	Name string
	Last error // the last request's error, nil when it was answered otherwise
}

func (e *NotServedError) Error() string {
	if e.Last == nil {
		return e.Name + " not served with the expected content in time"
	}
	return e.Name + " not served in time: " + e.Last.Error()
}

func (e *NotServedError) Unwrap() error { return e.Last }

// LongestGap is the longest time between two consecutive good answers
// (want) that ended within [from, to], with the answers on both sides of
// it. With no two such answers it reports ok false.
func LongestGap(answers []Answer, want string, from, to time.Time) (before, after Answer, ok bool) {
	var good []Answer
	for _, a := range answers {
		if a.OK(want) && !a.At.Before(from) && !a.At.After(to) {
			good = append(good, a)
		}
	}
	// Answers are recorded as they end, but two ending together may be
	// recorded out of order.
	slices.SortFunc(good, func(a, b Answer) int { return a.At.Compare(b.At) })
	var gap time.Duration
	for i := 1; i < len(good); i++ {
		if d := good[i].At.Sub(good[i-1].At); d > gap {
			gap, before, after, ok = d, good[i-1], good[i], true
		}
	}
	return before, after, ok
}
