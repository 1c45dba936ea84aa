package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/flockerha/flocker/internal/agentpair"
)

func init() {
	register(Scenario{Name: "throughput", Order: 60, Run: runThroughput,
		Summary: "full sync of a 1 GiB dataset over QUIC beside a local zfs send | zfs receive of the same data (issue 4)"})
}

func runThroughput(ctx context.Context, e *Env) ([]Row, error) {
	p, err := e.Pair(ctx)
	if err != nil {
		return nil, err
	}
	if _, err := e.probe(ctx); err != nil {
		return nil, err
	}
	size := e.throughputBytes()
	// The agents stop while the data is written: the tier would snapshot
	// and send it piecemeal otherwise (the dataset is not protected yet,
	// but the write competes for the two cores either way).
	if err := e.stopAgents(); err != nil {
		return nil, err
	}
	ds, err := p.Master.Pool.CreateDataset(ctx, "big", nil)
	if err != nil {
		return nil, err
	}
	e.progress("writing %d MiB of seeded random data into %s", size>>20, ds.Name)
	if err := writeRandom(filepath.Join(ds.Mountpoint, "data"), size, e.opts.Seed); err != nil {
		return nil, err
	}
	// Local and QUIC runs alternate (L Q L Q when the scenario is named;
	// the default run and --quick run one pair, within their budgets):
	// zfs-fuse's cache and the machine's load then favor neither side; each
	// QUIC run is set against the local run just before it.
	var rows []Row
	rounds := 1
	if e.named("throughput") && !e.Quick() {
		rounds = 2
	}
	for round := 1; round <= rounds; round++ {
		if round > 1 {
			// As in the first round, the agents are stopped for the local
			// run; B's replica goes, so that they sync it in full again.
			if err := e.stopAgents(); err != nil {
				return rows, err
			}
			if err := destroyTree(ctx, p.Slave.Pool.Name+"/big"); err != nil {
				return rows, err
			}
		}
		local, n, err := e.localSync(ctx, ds.Name, round)
		if err != nil {
			return rows, err
		}
		lrow := value("", fmt.Sprintf("local zfs send | zfs receive #%d", round), "full-sync throughput", "MB/s", local)
		lrow.Note = fmt.Sprintf("%d MiB written, %d stream bytes, A's pool to B's pool through one pipe on this machine", size>>20, n)
		rows = append(rows, lrow)
		quic, bytes, cpu, err := e.agentSync(ctx)
		if err != nil {
			return rows, err
		}
		row := value("", fmt.Sprintf("full sync over QUIC (agents) #%d", round), "full-sync throughput", "MB/s", quic)
		gib := bytes / (1 << 30)
		row.Note = fmt.Sprintf("%.0f stream bytes from the master's transfer start to the slave's receive end; %.0f%% of local #%d; CPU-s per GiB (user+system, agents' start included): master %.2f, slave %.2f",
			bytes, 100*quic/local, round, cpu[0].Seconds()/gib, cpu[1].Seconds()/gib)
		row.Target = fmt.Sprintf(">=%.0f (80%% of local #%d)", 0.8*local, round)
		row.Verdict = "met"
		if quic < 0.8*local {
			row.Verdict = "missed"
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// localSync sends snapshot @localN of ds through a local pipe into a fresh
// copy on B's pool (the last round's copy destroyed first) and returns MB/s
// and the stream bytes.
func (e *Env) localSync(ctx context.Context, ds string, round int) (float64, int64, error) {
	p := e.pair
	dst := p.Slave.Pool.Name + "/bigcopy"
	if round > 1 {
		if err := destroyTree(ctx, dst); err != nil {
			return 0, 0, err
		}
	}
	snap := fmt.Sprintf("%s@local%d", ds, round)
	if _, err := zfs(ctx, "snapshot", snap); err != nil {
		return 0, 0, err
	}
	t0 := time.Now()
	n, err := sendRecv(ctx, []string{snap}, dst)
	if err != nil {
		return 0, 0, err
	}
	return float64(n) / time.Since(t0).Seconds() / 1e6, n, nil
}

// agentSync (re)starts the agents with dataset big in their configs and
// times their full sync of it (B holds no replica of it). It returns MB/s,
// the stream bytes and the CPU the master and the slave agent used since
// they were started for it.
func (e *Env) agentSync(ctx context.Context) (float64, float64, [2]time.Duration, error) {
	var cpu [2]time.Duration
	p := e.pair
	mark := p.Master.Log.Len()
	smark := p.Slave.Log.Len()
	if err := e.AddDatasets(ctx, []string{"big"}, false, pick(e, 4*time.Minute, time.Minute)); err != nil {
		return 0, 0, cpu, err
	}
	started, err := p.Master.Log.Wait(ctx, mark, func(r agentpair.Record) bool {
		return r.Msg() == "transfer started" && r.Str("dataset") == "big" && r.Str("kind") == "full"
	})
	if err != nil {
		return 0, 0, cpu, err
	}
	recv, err := p.Slave.Log.Wait(ctx, smark, func(r agentpair.Record) bool {
		return r.Msg() == "received" && r.Str("dataset") == "big"
	})
	if err != nil {
		return 0, 0, cpu, err
	}
	// AddDatasets restarted the agents for this sync and returned after
	// it: their CPU so far is the sync's plus their start.
	for i, n := range []*agentpair.Node{p.Master, p.Slave} {
		cpu[i] = processCPU(n.PID())
	}
	took := recordTime(recv).Sub(recordTime(started))
	bytes := recv.Num("bytes")
	if took <= 0 || bytes <= 0 {
		return 0, 0, cpu, fmt.Errorf("full sync: %v bytes in %v: bad log records", bytes, took)
	}
	return bytes / took.Seconds() / 1e6, bytes, cpu, nil
}

// writeRandom writes size seeded pseudo-random (incompressible) bytes.
func writeRandom(path string, size int64, seed uint64) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	src := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	buf := make([]byte, 1<<20)
	var werr error
	for left := size; left > 0 && werr == nil; left -= int64(len(buf)) {
		if _, err := io.ReadFull(src, buf); err != nil {
			werr = err
			break
		}
		_, werr = f.Write(buf[:min(int64(len(buf)), left)])
	}
	if werr == nil {
		werr = f.Sync()
	}
	return errorsJoin(werr, f.Close())
}

// processCPU is the user plus system time of process pid so far (0 when it
// cannot be read, e.g. the process is gone).
func processCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: utime and stime are the 12th and 13th of those.
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if i < 0 || len(f) < 13 {
		return 0
	}
	u, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return time.Duration(u+st) * time.Second / clockTicks
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times: 100 on every
// Linux architecture Go supports.
const clockTicks = 100
