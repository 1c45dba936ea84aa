package bench

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
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
	// Local first: zfs-fuse's cache then favors the agent's send, if
	// anything; the order is stated in the note.
	if _, err := zfs(ctx, "snapshot", ds.Name+"@local"); err != nil {
		return nil, err
	}
	t0 := time.Now()
	n, err := sendRecv(ctx, []string{ds.Name + "@local"}, p.Slave.Pool.Name+"/bigcopy")
	if err != nil {
		return nil, err
	}
	local := float64(n) / time.Since(t0).Seconds() / 1e6
	rows := []Row{value("", "local zfs send | zfs receive", "full-sync throughput", "MB/s", local)}
	rows[0].Note = fmt.Sprintf("%d MiB written, %d stream bytes, A's pool to B's pool through one pipe on this machine (run first)", size>>20, n)

	mark := p.Master.Log.Len()
	smark := p.Slave.Log.Len()
	if err := e.AddDatasets(ctx, []string{"big"}, false, pick(e, 4*time.Minute, time.Minute)); err != nil {
		return rows, err
	}
	started, err := p.Master.Log.Wait(ctx, mark, func(r agentpair.Record) bool {
		return r.Msg() == "transfer started" && r.Str("dataset") == "big" && r.Str("kind") == "full"
	})
	if err != nil {
		return rows, err
	}
	recv, err := p.Slave.Log.Wait(ctx, smark, func(r agentpair.Record) bool {
		return r.Msg() == "received" && r.Str("dataset") == "big"
	})
	if err != nil {
		return rows, err
	}
	took := recordTime(recv).Sub(recordTime(started))
	bytes := recv.Num("bytes")
	if took <= 0 || bytes <= 0 {
		return rows, fmt.Errorf("full sync: %v bytes in %v: bad log records", bytes, took)
	}
	quic := bytes / took.Seconds() / 1e6
	row := value("", "full sync over QUIC (agents)", "full-sync throughput", "MB/s", quic)
	row.Note = fmt.Sprintf("%.0f stream bytes from the master's transfer start to the slave's receive end; %.0f%% of the local pipe", bytes, 100*quic/local)
	row.Target = fmt.Sprintf(">=%.0f (80%% of local)", 0.8*local)
	row.Verdict = "met"
	if quic < 0.8*local {
		row.Verdict = "missed"
	}
	return append(rows, row), nil
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
