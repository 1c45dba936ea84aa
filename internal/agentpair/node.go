package agentpair

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/flockerha/flocker/internal/rig"
)

// Node is one flocker host of the pair.
type Node struct {
	Name, Role  string
	Host        *rig.Host
	Pool        *rig.Pool
	Dataset     string // this node's ZFS dataset
	Mountpoint  string // where it is (the slave's: will be) mounted
	Addr        string // QUIC IP:port
	StatusAddr  string // [node] status IP:port (HTTP)
	Socket      string // the admin socket
	Dir         string // config, key, certificate, agent logs
	Config      string
	Fingerprint string

	// Log holds every JSON record of every run of this node's agent.
	Log  Log
	pair *Pair

	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{} // closed when the current run exited
	runs int
}

// Flocker runs a flocker command on the node's host and returns its stdout;
// a failure carries stderr.
func (n *Node) Flocker(ctx context.Context, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	cmd := n.Host.Command(ctx, n.pair.opts.Bin, args...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("flocker %s on %s: %w\n%s%s", args[0], n.Name, err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

// Start runs `flocker agent` on the node's host. Its stderr (JSON logs) is
// parsed into Log and also kept in Dir/agent-N.log.
func (n *Node) Start() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd != nil {
		return fmt.Errorf("%s: agent already running", n.Name)
	}
	n.runs++
	f, err := os.Create(filepath.Join(n.Dir, fmt.Sprintf("agent-%d.log", n.runs)))
	if err != nil {
		return err
	}
	// Not CommandContext: stopping is Stop's and Kill's business.
	args := append([]string{"agent", "--config", n.Config, "--log-format", "json", "--log-level", n.pair.opts.LogLevel},
		n.pair.opts.AgentArgs...)
	cmd := n.Host.Command(context.Background(), n.pair.opts.Bin, args...)
	pr, pw := io.Pipe()
	cmd.Stdout = f
	cmd.Stderr = io.MultiWriter(f, pw)
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("starting the agent on %s: %w", n.Name, err)
	}
	done := make(chan struct{})
	n.cmd, n.done = cmd, done
	run := n.runs
	go n.Log.consume(pr, run)
	go func() {
		err := cmd.Wait()
		pw.Close()
		f.Close()
		n.Log.exited(run, err)
		n.mu.Lock()
		if n.cmd == cmd {
			n.cmd = nil
		}
		n.mu.Unlock()
		close(done)
	}()
	return nil
}

// PID is the running agent's process id (0 when none runs).
func (n *Node) PID() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cmd == nil {
		return 0
	}
	return n.cmd.Process.Pid
}

// Running reports whether the agent runs.
func (n *Node) Running() bool { return n.PID() != 0 }

// Stop sends SIGTERM and waits up to 30 s for the orderly stop, then kills.
// It returns the agent's exit error (nil for exit 0); no agent: nil.
func (n *Node) Stop() error { return n.signal(syscall.SIGTERM, 30*time.Second) }

// Dump sends SIGQUIT, on which the Go runtime writes every goroutine's
// stack to stderr (this run's log file) and exits: what a stuck agent was
// waiting on. For failed tests only: the agent stops without its cleanup.
func (n *Node) Dump() error {
	err := n.signal(syscall.SIGQUIT, 10*time.Second)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return nil // exit status 2 is the dump's
	}
	return err
}

// Kill sends SIGKILL and waits for the process to be gone.
func (n *Node) Kill() error {
	err := n.signal(syscall.SIGKILL, 10*time.Second)
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return nil // killed is what was asked
	}
	return err
}

func (n *Node) signal(sig syscall.Signal, wait time.Duration) error {
	n.mu.Lock()
	cmd, done := n.cmd, n.done
	n.mu.Unlock()
	if cmd == nil {
		return nil
	}
	_ = cmd.Process.Signal(sig)
	select {
	case <-done:
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s: agent did not stop within %v after %v; killed", n.Name, wait, sig)
	}
	if st := cmd.ProcessState; st != nil && !st.Success() {
		return &exec.ExitError{ProcessState: st}
	}
	return nil
}

// Record is one parsed log record.
type Record map[string]any

// Msg is the record's message.
func (r Record) Msg() string { s, _ := r["msg"].(string); return s }

// Str returns a string attribute ("" when absent).
func (r Record) Str(key string) string {
	switch v := r[key].(type) {
	case string:
		return v
	case nil:
		return ""
	default:
		return fmt.Sprint(v)
	}
}

// Num returns a numeric attribute (0 when absent).
func (r Record) Num(key string) float64 { f, _ := r[key].(float64); return f }

// Run is which run of the agent (1, 2, ...) wrote the record.
func (r Record) Run() int { return int(r.Num("_run")) }

// Log collects an agent's records across runs.
type Log struct {
	mu      sync.Mutex
	records []Record
	changed chan struct{}
}

func (l *Log) add(r Record) {
	l.mu.Lock()
	l.records = append(l.records, r)
	if l.changed != nil {
		close(l.changed)
		l.changed = nil
	}
	l.mu.Unlock()
}

func (l *Log) consume(r io.Reader, run int) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		rec := Record{}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			rec = Record{"msg": "(not json)", "line": sc.Text()}
		}
		rec["_run"] = float64(run)
		l.add(rec)
	}
	_, _ = io.Copy(io.Discard, r)
}

func (l *Log) exited(run int, err error) {
	msg := "exit 0"
	if err != nil {
		msg = err.Error()
	}
	l.add(Record{"msg": "(agent exited)", "_run": float64(run), "how": msg})
}

// Len is the number of records so far: a mark for Wait.
func (l *Log) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.records)
}

// Records returns the records from index from on.
func (l *Log) Records(from int) []Record {
	l.mu.Lock()
	defer l.mu.Unlock()
	if from > len(l.records) {
		return nil
	}
	return append([]Record(nil), l.records[from:]...)
}

// Count counts the records from index from on that match.
func (l *Log) Count(from int, match func(Record) bool) int {
	n := 0
	for _, r := range l.Records(from) {
		if match(r) {
			n++
		}
	}
	return n
}

// Wait returns the first record at index from or later that matches,
// waiting for it until ctx ends.
func (l *Log) Wait(ctx context.Context, from int, match func(Record) bool) (Record, error) {
	for {
		l.mu.Lock()
		for i := from; i < len(l.records); i++ {
			if match(l.records[i]) {
				r := l.records[i]
				l.mu.Unlock()
				return r, nil
			}
		}
		from = len(l.records)
		if l.changed == nil {
			l.changed = make(chan struct{})
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for a log record: %w", ctx.Err())
		}
	}
}

// WaitMsg waits for a record with message msg at index from or later.
func (l *Log) WaitMsg(ctx context.Context, from int, msg string) (Record, error) {
	return l.Wait(ctx, from, func(r Record) bool { return r.Msg() == msg })
}

// Tail renders the last n records for failure messages.
func (l *Log) Tail(n int) string {
	recs := l.Records(max(0, l.Len()-n))
	var b strings.Builder
	for _, r := range recs {
		j, _ := json.Marshal(r)
		b.Write(j)
		b.WriteByte('\n')
	}
	return b.String()
}
