package bench

import (
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/flockerha/flocker/internal/records"
)

// A workload writes numbered writes into the master's dataset and finds,
// in a copy of that dataset (the replica), the highest number it holds.
// Every write carries the run's id beside its number, so one set of files
// (created before the first sync) serves every run: a run never mistakes
// an earlier run's data for its own.
type workload interface {
	// Start prepares run with id run in dir (the master's copy).
	Start(dir string, run uint32) error
	// Write performs write seq; it returns when write() (or the store) did.
	Write(seq int) error
	// Highest reads dir (a replica) and returns the highest seq of run it
	// holds, -1 for none.
	Highest(dir string, run uint32) (int, error)
	// Stop closes what Start opened (open files keep a pool busy).
	Stop() error
}

// Sizes shared by the workloads: records are small, blocks are the
// 4 KiB a database page or a VM disk sector cluster would be.
const (
	recordSize = records.Size
	blockSize  = 4096
	blockCount = 64 // 256 KiB: small enough to read whole after each ack
)

// stamp is the 12 bytes every write starts with (records.Stamp).
func stamp(b []byte, run uint32, seq int) { records.Stamp(b, run, seq) }

func unstamp(b []byte, run uint32) int { return records.Unstamp(b, run) }

// appender appends one 64-byte record per write to append.log.
type appender struct {
	f   *os.File
	run uint32
}

func (a *appender) Start(dir string, run uint32) (err error) {
	a.run = run
	a.f, err = os.OpenFile(filepath.Join(dir, "append.log"), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	return err
}

func (a *appender) Write(seq int) error {
	var rec [recordSize]byte
	stamp(rec[:], a.run, seq)
	_, err := a.f.Write(rec[:])
	return err
}

// Highest reads the last record: appends land in order.
func (a *appender) Highest(dir string, run uint32) (int, error) {
	return records.Last(filepath.Join(dir, "append.log"), run)
}

func (a *appender) Stop() error { return closeFile(&a.f) }

// overwriter writes 4 KiB blocks at seeded random offsets of blocks.dat;
// mmapper stores into pages of a shared mapping of mmap.dat instead.
type overwriter struct {
	f   *os.File
	rng *rand.Rand
	run uint32
}

func newOverwriter(seed uint64) *overwriter {
	return &overwriter{rng: rand.New(rand.NewPCG(seed, 1))}
}

func (o *overwriter) Start(dir string, run uint32) (err error) {
	o.run = run
	if o.f, err = openBlocks(filepath.Join(dir, "blocks.dat")); err != nil {
		return err
	}
	return nil
}

func (o *overwriter) Write(seq int) error {
	var blk [blockSize]byte
	stamp(blk[:], o.run, seq)
	_, err := o.f.WriteAt(blk[:], int64(o.rng.IntN(blockCount))*blockSize)
	return err
}

func (o *overwriter) Highest(dir string, run uint32) (int, error) {
	return highestBlock(filepath.Join(dir, "blocks.dat"), run)
}

func (o *overwriter) Stop() error { return closeFile(&o.f) }

// openBlocks opens (creating at full size) a file of blockCount blocks.
func openBlocks(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	if st, err := f.Stat(); err == nil && st.Size() < blockCount*blockSize {
		err = f.Truncate(blockCount * blockSize)
		if err != nil {
			f.Close()
			return nil, err
		}
	}
	return f, nil
}

// highestBlock is the highest seq of run stamped at any block's start.
func highestBlock(path string, run uint32) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return -1, err
	}
	best := -1
	for off := 0; off+12 <= len(b); off += blockSize {
		best = max(best, unstamp(b[off:], run))
	}
	return best, nil
}

// mmapper stores each write's stamp into a page of a shared writable
// mapping: no write() call at all, the case syscall hooks cannot see.
type mmapper struct {
	f   *os.File
	mem []byte
	rng *rand.Rand
	run uint32
}

func newMmapper(seed uint64) *mmapper { return &mmapper{rng: rand.New(rand.NewPCG(seed, 2))} }

func (m *mmapper) Start(dir string, run uint32) (err error) {
	m.run = run
	if m.f, err = openBlocks(filepath.Join(dir, "mmap.dat")); err != nil {
		return err
	}
	m.mem, err = unix.Mmap(int(m.f.Fd()), 0, blockCount*blockSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		m.f.Close()
		m.f = nil
		return fmt.Errorf("mmap: %w", err)
	}
	return nil
}

func (m *mmapper) Write(seq int) error {
	off := m.rng.IntN(blockCount) * blockSize
	// The seq first, the run id last: a snapshot that catches the store
	// half done shows the old run id, never a wrong seq of this run.
	var st [12]byte
	stamp(st[:], m.run, seq)
	copy(m.mem[off+4:off+12], st[4:12])
	copy(m.mem[off:off+4], st[0:4])
	return nil
}

func (m *mmapper) Highest(dir string, run uint32) (int, error) {
	return highestBlock(filepath.Join(dir, "mmap.dat"), run)
}

func (m *mmapper) Stop() error {
	var err error
	if m.mem != nil {
		err = unix.Munmap(m.mem)
		m.mem = nil
	}
	return errors.Join(err, closeFile(&m.f))
}

// smallFiles creates one 100-byte file per write in files/.
type smallFiles struct {
	dir string
	run uint32
}

func (s *smallFiles) Start(dir string, run uint32) error {
	s.dir, s.run = filepath.Join(dir, "files"), run
	return os.MkdirAll(s.dir, 0o755)
}

func (s *smallFiles) Write(seq int) error {
	b := make([]byte, 100)
	stamp(b, s.run, seq)
	return os.WriteFile(filepath.Join(s.dir, fmt.Sprintf("r%d-%08d", s.run, seq)), b, 0o644)
}

// Highest lists the directory: listing works on a zfs-fuse replica even
// for names that were looked up before they existed.
func (s *smallFiles) Highest(dir string, run uint32) (int, error) {
	d, err := os.Open(filepath.Join(dir, "files"))
	if err != nil {
		return -1, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil && !errors.Is(err, io.EOF) {
		return -1, err
	}
	best := -1
	prefix := fmt.Sprintf("r%d-", run)
	for _, n := range names {
		if rest, ok := strings.CutPrefix(n, prefix); ok {
			if v, err := strconv.Atoi(rest); err == nil {
				best = max(best, v)
			}
		}
	}
	return best, nil
}

func (s *smallFiles) Stop() error { return nil }

func closeFile(f **os.File) error {
	if *f == nil {
		return nil
	}
	err := (*f).Close()
	*f = nil
	return err
}

// A schedule says when write i is due, relative to the run's start.
type schedule func(i int) time.Duration

// steady spreads writes evenly at rate per second.
func steady(rate float64) schedule {
	return func(i int) time.Duration { return time.Duration(float64(i) / rate * float64(time.Second)) }
}

// bursts issues size writes back to back, then pauses for gap.
func bursts(size int, gap time.Duration) schedule {
	return func(i int) time.Duration { return time.Duration(i/size) * gap }
}
