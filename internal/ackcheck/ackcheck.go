// Package ackcheck accounts for writes in the fault tests and the soak: a
// Ledger makes writes into a directory (the master's dataset), remembers
// each one the file system acknowledged (write and fsync returned without
// error), and later looks for every acknowledged write in the directories
// that should hold it (the replica, the winner after a failover, stashes).
// The report is the "writes acknowledged versus writes found".
package ackcheck

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// Ledger records acknowledged writes. Safe for concurrent use.
type Ledger struct {
	dir    string
	prefix string

	mu     sync.Mutex
	seq    uint64
	acked  map[string][sha256.Size]byte // file name -> content hash
	failed int
}

// New returns a ledger writing under dir. Files are named PREFIX-NNNNNNNN;
// prefix tells apart several ledgers writing into one directory.
func New(dir, prefix string) *Ledger {
	return &Ledger{dir: dir, prefix: prefix, acked: map[string][sha256.Size]byte{}}
}

// Write makes one new file of size bytes (at least 16) and fsyncs it. Only
// when both succeed is the write acknowledged and recorded; a failed write
// (full pool, read-only file system) is counted and its error returned.
func (l *Ledger) Write(size int) (string, error) {
	l.mu.Lock()
	l.seq++
	seq := l.seq
	l.mu.Unlock()
	name := fmt.Sprintf("%s-%08d", l.prefix, seq)
	data := content(name, seq, max(size, 16))
	err := writeSync(filepath.Join(l.dir, name), data)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failed++
		return name, err
	}
	l.acked[name] = sha256.Sum256(data)
	return name, nil
}

// content is deterministic per name: a found file can be told apart from a
// torn or stale one by its hash alone.
func content(name string, seq uint64, size int) []byte {
	b := make([]byte, 0, size)
	b = append(b, name...)
	b = append(b, '\n')
	var x [8]byte
	for v := seq*0x9e3779b97f4a7c15 + 1; len(b) < size; v = v*6364136223846793005 + 1442695040888963407 {
		binary.LittleEndian.PutUint64(x[:], v)
		b = append(b, x[:]...)
	}
	return b[:size]
}

func writeSync(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}

// Acked is the number of acknowledged writes so far.
func (l *Ledger) Acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// Report is the accounting after a fault.
type Report struct {
	Acked  int      // writes acknowledged
	Failed int      // writes refused (not acknowledged: not owed)
	Found  int      // acknowledged writes found with their content
	Lost   []string // acknowledged writes not found anywhere (sorted)
	Torn   []string // found with other content than was acknowledged (sorted)
	Where  map[string]int
}

// OK reports that every acknowledged write was found intact.
func (r Report) OK() bool { return len(r.Lost) == 0 && len(r.Torn) == 0 && r.Found == r.Acked }

func (r Report) String() string {
	s := fmt.Sprintf("writes acknowledged %d, found %d, lost %d, torn %d (refused %d)", r.Acked, r.Found, len(r.Lost), len(r.Torn), r.Failed)
	if len(r.Lost) > 0 {
		s += "; lost: " + abbreviate(r.Lost)
	}
	if len(r.Torn) > 0 {
		s += "; torn: " + abbreviate(r.Torn)
	}
	return s
}

func abbreviate(names []string) string {
	if len(names) > 8 {
		return strings.Join(names[:8], ", ") + fmt.Sprintf(" and %d more", len(names)-8)
	}
	return strings.Join(names, ", ")
}

// Check looks for every acknowledged write in dirs, in order: a write
// counts as found in the first directory holding the file with the
// acknowledged content. A directory that does not exist holds nothing;
// another error reading one is returned.
func (l *Ledger) Check(dirs ...string) (Report, error) {
	l.mu.Lock()
	acked := make(map[string][sha256.Size]byte, len(l.acked))
	for k, v := range l.acked {
		acked[k] = v
	}
	r := Report{Acked: len(acked), Failed: l.failed, Where: map[string]int{}}
	l.mu.Unlock()
	torn := map[string]bool{}
	for name, want := range acked {
		found := false
		for _, d := range dirs {
			data, err := os.ReadFile(filepath.Join(d, name))
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				return r, fmt.Errorf("reading %s in %s: %w", name, d, err)
			}
			if sha256.Sum256(data) != want {
				torn[name] = true
				continue
			}
			found = true
			r.Found++
			r.Where[d]++
			break
		}
		switch {
		case found:
		case torn[name]:
			r.Torn = append(r.Torn, name)
		default:
			r.Lost = append(r.Lost, name)
		}
	}
	sort.Strings(r.Lost)
	sort.Strings(r.Torn)
	return r, nil
}
