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

// floorSet is the floor's source dataset on A, its copy on B and the
// number of the last snapshot sent, kept so that later rounds (the floor
// under writes) continue the same incremental chain.
type floorSet struct {
	src, dst, file string
	last           int
}

// Floor returns the floor samples (ms), measuring them once per run: on
// dataset floor of A's pool, append 64 bytes, then time from write()
// returning to `zfs receive` on B's pool exiting after `zfs snapshot` and
// an incremental `zfs send | zfs receive` through this process.
func (e *Env) Floor(ctx context.Context) ([]float64, error) {
	if e.floor != nil {
		return e.floor, nil
	}
	fs, err := e.floorDatasets(ctx)
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(fs.file, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rec [recordSize]byte
	var out []float64
	for i := 1; i <= pick(e, 30, 10); i++ {
		stamp(rec[:], 0, i)
		if _, err := f.Write(rec[:]); err != nil {
			return nil, err
		}
		took, err := fs.round(ctx)
		if err != nil {
			return nil, err
		}
		out = append(out, took)
	}
	e.floor = out
	return out, nil
}

// floorDatasets creates the floor's datasets and their first full copy,
// once per run.
func (e *Env) floorDatasets(ctx context.Context) (*floorSet, error) {
	if e.floorSet != nil {
		return e.floorSet, nil
	}
	p, err := e.Pair(ctx)
	if err != nil {
		return nil, err
	}
	src, err := p.Master.Pool.CreateDataset(ctx, "floor", nil)
	if err != nil {
		return nil, err
	}
	fs := &floorSet{src: src.Name, dst: p.Slave.Pool.Name + "/floor", file: filepath.Join(src.Mountpoint, "append.log")}
	if err := os.WriteFile(fs.file, make([]byte, recordSize), 0o644); err != nil {
		return nil, err
	}
	if _, err := zfs(ctx, "snapshot", fs.src+"@f0"); err != nil {
		return nil, err
	}
	if _, err := sendRecv(ctx, []string{fs.src + "@f0"}, fs.dst); err != nil {
		return nil, err
	}
	// A replica must not change between receives (atime on zfs-fuse).
	if _, err := zfs(ctx, "set", "readonly=on", fs.dst); err != nil {
		return nil, err
	}
	e.floorSet = fs
	return fs, nil
}

// round takes the next snapshot and sends it incrementally to B's copy,
// returning the time taken in ms.
func (fs *floorSet) round(ctx context.Context) (float64, error) {
	t0 := time.Now()
	snap := fmt.Sprintf("%s@f%d", fs.src, fs.last+1)
	if _, err := zfs(ctx, "snapshot", snap); err != nil {
		return 0, err
	}
	fs.last++
	if _, err := sendRecv(ctx, []string{"-i", fmt.Sprintf("@f%d", fs.last-1), snap}, fs.dst); err != nil {
		return 0, err
	}
	return float64(time.Since(t0)) / float64(time.Millisecond), nil
}

// FloorUnderWrites measures n floor rounds while a second writer appends
// 64-byte records to the floor's file at rate per second: what one
// snapshot and incremental send|receive cost while writes land (on
// zfs-fuse a snapshot under steady writes sometimes stalls them both for
// about a second). Each round is timed from its start, when the last
// write returned at most 1/rate before.
func (e *Env) FloorUnderWrites(ctx context.Context, rate float64, n int) ([]float64, error) {
	if _, err := e.Floor(ctx); err != nil {
		return nil, err
	}
	fs := e.floorSet
	f, err := os.OpenFile(fs.file, os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	wctx, stop := context.WithCancel(ctx)
	writerDone := make(chan error, 1)
	go func() {
		var rec [recordSize]byte
		sched := steady(rate)
		start := time.Now()
		for i := 0; wctx.Err() == nil; i++ {
			if d := time.Until(start.Add(sched(i))); d > 0 {
				time.Sleep(d)
			}
			stamp(rec[:], 1, i)
			if _, err := f.Write(rec[:]); err != nil {
				writerDone <- err
				return
			}
		}
		writerDone <- nil
	}()
	var out []float64
	var roundErr error
	// Let the writer reach its rate before the first round.
	time.Sleep(200 * time.Millisecond)
	for range n {
		took, err := fs.round(ctx)
		if err != nil {
			roundErr = err
			break
		}
		out = append(out, took)
	}
	stop()
	werr := <-writerDone
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	if roundErr != nil {
		return nil, roundErr
	}
	if werr != nil {
		return nil, fmt.Errorf("floor writer: %w", werr)
	}
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
