package vmdemo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The guest-side writer and clock of guestexec, for the VM tier's lag
// at a rate (bench/scenario_vm.go).

// Appends is what the guest-side writer did. Times are the guest's wall
// clock.
type Appends struct {
	Done    []time.Time // when write(2) of record i returned
	Start   time.Time
	Elapsed time.Duration
}

// Appends has the guest append count 64-byte records numbered 0..count-1
// (stamped with run) to path at rate per second, the writes issued and
// timed inside the guest; it returns when the last one returned.
func (g *Guest) Appends(ctx context.Context, path string, run uint32, rate float64, count int) (Appends, error) {
	q := url.Values{"path": {path}, "run": {strconv.FormatUint(uint64(run), 10)},
		"rate": {strconv.FormatFloat(rate, 'f', -1, 64)}, "count": {strconv.Itoa(count)}}
	var res struct {
		DoneNS    []int64 `json:"done_ns"`
		StartNS   int64   `json:"start_ns"`
		ElapsedNS int64   `json:"elapsed_ns"`
	}
	if err := g.postJSON(ctx, "/appends", q, "", &res); err != nil {
		return Appends{}, err
	}
	out := Appends{Start: time.Unix(0, res.StartNS), Elapsed: time.Duration(res.ElapsedNS)}
	for _, ns := range res.DoneNS {
		out.Done = append(out.Done, time.Unix(0, ns))
	}
	if len(out.Done) != count {
		return out, fmt.Errorf("guest %s: appends: %d of %d writes reported", g.name, len(out.Done), count)
	}
	return out, nil
}

// Highest returns, per path in the guest, the highest record number of
// run in its last record (-1: none of run); a path that cannot be read
// (a snapshot pruned meanwhile, say) has a non-nil error in errs.
func (g *Guest) Highest(ctx context.Context, run uint32, paths []string) (seqs []int, errs []error, err error) {
	body, err := json.Marshal(paths)
	if err != nil {
		return nil, nil, err
	}
	var res []struct {
		Seq int    `json:"seq"`
		Err string `json:"err"`
	}
	if err := g.postJSON(ctx, "/highest", url.Values{"run": {strconv.FormatUint(uint64(run), 10)}}, string(body), &res); err != nil {
		return nil, nil, err
	}
	if len(res) != len(paths) {
		return nil, nil, fmt.Errorf("guest %s: highest: %d answers for %d paths", g.name, len(res), len(paths))
	}
	for _, h := range res {
		seqs = append(seqs, h.Seq)
		var e error
		if h.Err != "" {
			e = fmt.Errorf("guest %s: %s", g.name, h.Err)
		}
		errs = append(errs, e)
	}
	return seqs, errs, nil
}

// ClockOffset estimates the guest's wall clock minus this machine's:
// of n readings of the guest's clock, the one with the shortest round
// trip, taken as read at the trip's midpoint. rtt bounds the error
// (the error is at most rtt/2).
func (g *Guest) ClockOffset(ctx context.Context, n int) (offset, rtt time.Duration, err error) {
	rtt = -1
	for range n {
		t0 := time.Now()
		var ns int64
		if err := g.getInt(ctx, "/time", &ns); err != nil {
			return 0, 0, err
		}
		t1 := time.Now()
		if d := t1.Sub(t0); rtt < 0 || d < rtt {
			rtt = d
			offset = time.Unix(0, ns).Sub(t0.Add(d / 2))
		}
	}
	return offset, rtt, nil
}

func (g *guest) getInt(ctx context.Context, path string, v *int64) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, g.url(path, nil), nil)
	if err != nil {
		return err
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return fmt.Errorf("guest %s: %w", g.name, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		return fmt.Errorf("guest %s: GET %s: %s %v: %s", g.name, path, resp.Status, err, b)
	}
	if *v, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err != nil {
		return fmt.Errorf("guest %s: GET %s: %w", g.name, path, err)
	}
	return nil
}

func (g *guest) postJSON(ctx context.Context, path string, q url.Values, body string, v any) error {
	resp, err := g.post(ctx, path, q, body)
	if err != nil {
		return fmt.Errorf("guest %s: %w", g.name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("guest %s: %s: %s: %s", g.name, path, resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("guest %s: %s: %w", g.name, path, err)
	}
	return nil
}
