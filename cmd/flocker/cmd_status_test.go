package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/flockerha/flocker/agent"
	"github.com/flockerha/flocker/agent/api"
)

// Tests of flocker status through run(), against real api.Servers serving
// given status documents; test/e2e runs it against real agents.

// statusServer serves st on a loopback port (and a socket when sock is
// set) and returns the port's address.
func statusServer(t *testing.T, st agent.Status, sock string) netip.AddrPort {
	t.Helper()
	srv, err := api.NewServer(api.Options{Status: func() agent.Status { return st }, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := api.ListenTCP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	if sock != "" {
		u, err := api.ListenUnix(sock)
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Start(tcp, u); err != nil {
			t.Fatal(err)
		}
	} else if err := srv.Start(tcp, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return netip.MustParseAddrPort(tcp.Addr().String())
}

// statusConfig writes a config for alpha whose agent is at status (and
// socket), with the peer's status port at peer (zero: not configured).
func statusConfig(t *testing.T, status, peer netip.AddrPort, socket string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "flocker.ini")
	ini := fmt.Sprintf("[node]\nname = alpha\nstatus = %s\n[peer]\nname = beta\naddress = 127.0.0.1:7947\n"+
		"fingerprint = sha256:%s\n", status, strings.Repeat("cd", 32))
	if peer.IsValid() {
		ini += fmt.Sprintf("status = %s\n", peer)
	}
	ini += fmt.Sprintf("[admin]\nsocket = %s\n[dataset \"app\"]\nzfs = tank/app\n[replication]\nlag_threshold = 5s\n", socket)
	if err := os.WriteFile(path, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func pairStatus(node, role, peerRole string, connected bool, lag time.Duration) agent.Status {
	peer := map[string]string{"alpha": "beta", "beta": "alpha"}[node]
	now := time.Now()
	return agent.Status{Node: node, Role: role, Epoch: 4,
		Peer: agent.PeerStatus{Name: peer, Connected: connected, Role: peerRole, Epoch: 4, Since: now.Add(-time.Minute)},
		Datasets: []agent.DatasetStatus{{Name: "app", ZFS: "tank/app", Role: role, Lag: lag,
			NewestLocal: &agent.SnapshotRef{Name: "flocker-4-9", Created: now.Add(-time.Second)},
			Notifier:    agent.NotifierStatus{Tier: "timer"}}}}
}

func TestStatusExitCodes(t *testing.T) {
	dir := t.TempDir()
	noSocket := filepath.Join(dir, "none.sock")
	healthy := statusServer(t, pairStatus("alpha", "master", "slave", true, 200*time.Millisecond), "")
	lagging := statusServer(t, pairStatus("alpha", "master", "slave", true, 7*time.Second), "")
	alone := statusServer(t, pairStatus("beta", "slave", "", false, 0), "")
	peerSlave := statusServer(t, pairStatus("beta", "slave", "master", true, 0), "")
	closed := netip.MustParseAddrPort("127.0.0.1:1") // nothing listens on port 1
	for _, c := range []struct {
		name         string
		local, peer  netip.AddrPort
		code         int
		want, reject string
	}{
		{"healthy", healthy, netip.AddrPort{}, 0, "HEALTHY", "!"},
		{"healthy with the peer's port", healthy, peerSlave, 0, "beta", "as alpha sees it"},
		{"lag over the threshold", lagging, netip.AddrPort{}, 1, "replication lag 7s is over 5s", ""},
		{"peer port silent", healthy, closed, 1, "the peer's status port does not answer", ""},
		{"no master", alone, netip.AddrPort{}, 2, "no reachable master", ""},
		{"agent unreachable", closed, netip.AddrPort{}, 2, "this host's agent does not answer", ""},
	} {
		cfg := statusConfig(t, c.local, c.peer, noSocket)
		code, stdout, stderr := runCLI(t, "status", "--config", cfg)
		if code != c.code || !strings.Contains(stdout, c.want) || (c.reject != "" && strings.Contains(stdout, c.reject)) {
			t.Errorf("%s: exit %d (want %d), stdout:\n%s\nstderr: %s", c.name, code, c.code, stdout, stderr)
		}
		if strings.Contains(stdout, "\033[") {
			t.Errorf("%s: colour codes in output that is not a terminal", c.name)
		}
		code, stdout, _ = runCLI(t, "status", "--json", "--config", cfg)
		var r statusReport
		if err := json.Unmarshal([]byte(stdout), &r); err != nil {
			t.Fatalf("%s: --json output: %v\n%s", c.name, err, stdout)
		}
		if code != c.code || r.Exit != c.code || int(r.Health) != c.code {
			t.Errorf("%s --json: exit %d, report exit %d health %v, want %d", c.name, code, r.Exit, r.Health, c.code)
		}
	}
	code, _, stderr := runCLI(t, "status", "--config", filepath.Join(dir, "missing.ini"))
	if code != 2 || !strings.Contains(stderr, "missing.ini") {
		t.Errorf("missing config: exit %d, stderr %q", code, stderr)
	}
	if code, _, _ := runCLI(t, "status", "--watch", "--interval", "0s", "--config", "x"); code != exitUsage {
		t.Errorf("--interval 0s: exit %d", code)
	}
}

// TestStatusPrefersSocket: with the admin socket reachable, status asks
// the agent there (the TCP port named in the config is closed).
func TestStatusPrefersSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "admin.sock")
	statusServer(t, pairStatus("alpha", "master", "slave", true, 0), sock)
	cfg := statusConfig(t, netip.MustParseAddrPort("127.0.0.1:1"), netip.AddrPort{}, sock)
	code, stdout, stderr := runCLI(t, "status", "--config", cfg)
	if code != 0 || !strings.Contains(stdout, "alpha (this host)") || !strings.Contains(stdout, "flocker-4-9") {
		t.Errorf("status over the socket: exit %d\n%s%s", code, stdout, stderr)
	}
}

// TestStatusWatch: --watch redraws until interrupted and exits with the
// last health.
func TestStatusWatch(t *testing.T) {
	addr := statusServer(t, pairStatus("alpha", "master", "slave", true, 7*time.Second), "")
	cfg := statusConfig(t, addr, netip.AddrPort{}, filepath.Join(t.TempDir(), "none.sock"))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var out, errb bytes.Buffer
	code := run(ctx, []string{"status", "--watch", "--interval", "20ms", "--config", cfg}, &out, &errb)
	if code != 1 {
		t.Errorf("exit %d, want 1 (degraded)\n%s", code, errb.String())
	}
	if n := strings.Count(out.String(), "flocker status alpha + beta: DEGRADED"); n < 2 {
		t.Errorf("%d redraws in 2 s at 20 ms, want several:\n%s", n, out.String())
	}
}

// TestStatusLongError: a long last error and a long finding wrap within
// 100 columns when piped, the table is cut rather than endless, and
// --json still carries every byte of the message.
func TestStatusLongError(t *testing.T) {
	st := pairStatus("alpha", "master", "slave", true, 200*time.Millisecond)
	msg := "zfs receive: cannot receive incremental stream: " + strings.Repeat("destination tank/app has been modified since most recent snapshot ", 8) + "END"
	st.Datasets[0].LastError = &agent.Problem{Code: "transfer", Message: msg, At: time.Now().Add(-time.Minute)}
	st.Datasets[0].Conflict = "no common snapshot: " + strings.Repeat("x", 300)
	cfg := statusConfig(t, statusServer(t, st, ""), netip.AddrPort{}, filepath.Join(t.TempDir(), "none.sock"))
	code, stdout, stderr := runCLI(t, "status", "--config", cfg)
	if code != 2 {
		t.Errorf("exit %d, want 2 (a conflict is broken)\n%s%s", code, stdout, stderr)
	}
	for i, l := range strings.Split(stdout, "\n") {
		if n := utf8.RuneCountInString(l); n > pipedWidth {
			t.Errorf("line %d is %d columns, want at most %d: %q", i+1, n, pipedWidth, l)
		}
	}
	if !strings.Contains(stdout, "transfer: zfs receive: cannot receive") || !strings.Contains(stdout, "…") {
		t.Errorf("last error not shown wrapped and cut:\n%s", stdout)
	}
	if strings.Contains(stdout, "END") {
		t.Errorf("a 600-byte error shown whole in the table:\n%s", stdout)
	}
	// The finding is wrapped, not cut: all 300 x are there.
	if got := strings.Count(stdout, "x"); got < 300 {
		t.Errorf("finding shows %d of 300 x:\n%s", got, stdout)
	}
	if !strings.Contains(stdout, "alpha (this host)") || !strings.Contains(stdout, "flocker-4-9") {
		t.Errorf("table lost its other rows:\n%s", stdout)
	}
	_, stdout, _ = runCLI(t, "status", "--json", "--config", cfg)
	var r statusReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatalf("--json: %v\n%s", err, stdout)
	}
	if got := r.Local.Datasets[0].LastError.Message; got != msg {
		t.Errorf("--json last error = %q, want the full %d bytes", got, len(msg))
	}
}

func TestTableWidths(t *testing.T) {
	var tb table
	tb.row("", "alpha (this host)", "beta")
	tb.row("  last error", strings.Repeat("word ", 40), "none")
	tb.row("  lag", "current", strings.Repeat("y", 200))
	for _, width := range []int{minWidth, 60, 100, 160} {
		var b bytes.Buffer
		tb.render(&b, width)
		lines := strings.Split(strings.TrimRight(b.String(), "\n"), "\n")
		for _, l := range lines {
			if n := utf8.RuneCountInString(l); n > width {
				t.Errorf("width %d: line of %d: %q", width, n, l)
			}
		}
		// Three rows, each at most maxCellLines lines.
		if len(lines) < 3 || len(lines) > 3*maxCellLines {
			t.Errorf("width %d: %d lines:\n%s", width, len(lines), b.String())
		}
	}
	// Short cells are left alone: natural widths, one line per row.
	var small table
	small.row("role", "master, epoch 4", "slave, epoch 4")
	var b bytes.Buffer
	small.render(&b, 100)
	if got, want := b.String(), "role   master, epoch 4   slave, epoch 4\n"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got := wrap("abcdefghij", 4); !slices.Equal(got, []string{"abcd", "efgh", "ij"}) {
		t.Errorf("wrap of a long word: %q", got)
	}
	if got := wrap(strings.Repeat("abcd ", 10), 4); len(got) != maxCellLines || got[maxCellLines-1] != "abc…" {
		t.Errorf("wrap cut: %q", got)
	}
}
