package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

func init() {
	register(Scenario{Name: "floor", Order: 10, Run: runFloor,
		Summary: "one snapshot plus one small incremental zfs send | zfs receive, done directly: the least any trigger can take"})
}

// Floor returns the floor samples (ms), measuring them once per run: on
// dataset floor of A's pool, append 64 bytes, then time from write()
// returning to `zfs receive` on B's pool exiting after `zfs snapshot` and
// an incremental `zfs send | zfs receive` through this process.
func (e *Env) Floor(ctx context.Context) ([]float64, error) {
	if e.floor != nil {
		return e.floor, nil
	}
	p, err := e.Pair(ctx)
	if err != nil {
		return nil, err
	}
	src, err := p.Master.Pool.CreateDataset(ctx, "floor", nil)
	if err != nil {
		return nil, err
	}
	dst := p.Slave.Pool.Name + "/floor"
	f, err := os.OpenFile(filepath.Join(src.Mountpoint, "append.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rec [recordSize]byte
	if _, err := f.Write(rec[:]); err != nil {
		return nil, err
	}
	if _, err := zfs(ctx, "snapshot", src.Name+"@f0"); err != nil {
		return nil, err
	}
	if _, err := sendRecv(ctx, []string{src.Name + "@f0"}, dst); err != nil {
		return nil, err
	}
	// A replica must not change between receives (atime on zfs-fuse).
	if _, err := zfs(ctx, "set", "readonly=on", dst); err != nil {
		return nil, err
	}
	n := pick(e, 30, 10)
	var out []float64
	for i := 1; i <= n; i++ {
		stamp(rec[:], 0, i)
		if _, err := f.Write(rec[:]); err != nil {
			return nil, err
		}
		t0 := time.Now()
		snap := fmt.Sprintf("%s@f%d", src.Name, i)
		if _, err := zfs(ctx, "snapshot", snap); err != nil {
			return nil, err
		}
		if _, err := sendRecv(ctx, []string{"-i", fmt.Sprintf("@f%d", i-1), snap}, dst); err != nil {
			return nil, err
		}
		out = append(out, float64(time.Since(t0))/float64(time.Millisecond))
	}
	e.floor = out
	return out, nil
}

func runFloor(ctx context.Context, e *Env) ([]Row, error) {
	s, err := e.Floor(ctx)
	if err != nil {
		return nil, err
	}
	r := dist("", "snapshot + incremental send|recv", "floor", "ms", s)
	r.Note = "timed from write() returning to zfs receive exiting on B's pool; no agent, no network"
	return []Row{r}, nil
}

// floorP50 is "the floor" targets are stated against.
func (e *Env) floorP50(ctx context.Context) (float64, error) {
	s, err := e.Floor(ctx)
	if err != nil {
		return 0, err
	}
	return Summarize(s).P50, nil
}

// againstFloor sets target and verdict: p50 at most 1.5x and p99 at most
// 3x the floor's p50 (issue 4's targets).
func againstFloor(r *Row, floor float64) {
	if r.Status != StatusOK || floor <= 0 {
		return
	}
	r.Target = fmt.Sprintf("p50<=%.0f p99<=%.0f (1.5x/3x floor)", 1.5*floor, 3*floor)
	r.Verdict = "met"
	if r.P50 > 1.5*floor || r.P99 > 3*floor {
		r.Verdict = fmt.Sprintf("missed (p50 %.1fx, p99 %.1fx)", r.P50/floor, r.P99/floor)
	}
}
