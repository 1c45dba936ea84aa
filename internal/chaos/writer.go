package chaos

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/flockerha/flocker/internal/ackcheck"
	"github.com/flockerha/flocker/internal/agentpair"
	"github.com/flockerha/flocker/internal/failpair"
)

// Writer stands for the service's clients: every period it makes one
// acknowledged write (internal/ackcheck) on each host that serves, that is
// holds the floating address with its dataset mounted read-write there.
// During a split brain both hosts serve and both get writes; a write the
// file system refuses (a replica is read-only) is not acknowledged and not
// owed. Each host has its own ledger, named after the host.
type Writer struct {
	p       *failpair.Pair
	ledgers map[*agentpair.Node]*ackcheck.Ledger
	size    int
	every   time.Duration

	mu     sync.Mutex
	writes map[string]int // acknowledged writes per host name
	down   map[*agentpair.Node]bool

	cancel context.CancelFunc
	done   chan struct{}
}

// NewWriter returns a writer for p whose files are named PREFIX-HOST-N.
// It does not write until Start.
func NewWriter(p *failpair.Pair, prefix string, size int, every time.Duration) *Writer {
	w := &Writer{p: p, ledgers: map[*agentpair.Node]*ackcheck.Ledger{}, size: size, every: every,
		writes: map[string]int{}, down: map[*agentpair.Node]bool{}}
	for _, n := range p.Nodes() {
		w.ledgers[n] = ackcheck.New(n.Mountpoint, prefix+"-"+n.Name)
	}
	return w
}

// Start writes in the background until Stop.
func (w *Writer) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel, w.done = cancel, make(chan struct{})
	go func() {
		defer close(w.done)
		t := time.NewTicker(w.every)
		defer t.Stop()
		for {
			w.WriteOnce()
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
}

// Stop ends the background writes and waits for the last one.
func (w *Writer) Stop() {
	if w.cancel != nil {
		w.cancel()
		<-w.done
		w.cancel = nil
	}
}

// WriteOnce makes one write on each host that serves now and returns the
// hosts whose write was acknowledged.
func (w *Writer) WriteOnce() []string {
	holders, err := w.p.Holders()
	if err != nil {
		return nil
	}
	var acked []string
	for _, n := range w.p.Nodes() {
		w.mu.Lock()
		down := w.down[n]
		w.mu.Unlock()
		if down || !slices.Contains(holders, n.Name) || !MountedAt(n.Dataset, n.Mountpoint) {
			continue
		}
		if _, err := w.ledgers[n].Write(w.size); err == nil {
			acked = append(acked, n.Name)
			w.mu.Lock()
			w.writes[n.Name]++
			w.mu.Unlock()
		}
	}
	return acked
}

// SetDown marks n's host as powered off (or back): a dead host takes no
// writes, although on the rig its namespace keeps the floating address and
// its pool stays mounted.
func (w *Writer) SetDown(n *agentpair.Node, down bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.down[n] = down
}

// Acked returns the acknowledged writes per host so far.
func (w *Writer) Acked() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for k, v := range w.writes {
		out[k] = v
	}
	return out
}

// Ledgers returns the ledgers, master's first.
func (w *Writer) Ledgers() []*ackcheck.Ledger {
	var out []*ackcheck.Ledger
	for _, n := range w.p.Nodes() {
		out = append(out, w.ledgers[n])
	}
	return out
}

// MountedAt reports whether dataset is mounted at dir (zfs-fuse shows the
// dataset as the mount's source). A write into dir while it is not would
// land in the parent file system and prove nothing.
func MountedAt(dataset, dir string) bool {
	f, err := os.Open("/proc/self/mounts")
	if err != nil {
		return false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == dataset && unescape(fields[1]) == dir {
			return true
		}
	}
	return false
}

// unescape undoes /proc/mounts' octal escapes (space, tab, newline, \).
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			var v int
			if _, err := fmt.Sscanf(s[i+1:i+4], "%3o", &v); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
