package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/flockerha/flocker/agent"
	"github.com/flockerha/flocker/agent/api"
	"github.com/flockerha/flocker/agent/config"
)

// Tests of promote, demote, handoff and stash through run(), against a real
// api.Server on a unix socket and a loopback TCP port.

// scriptedController stands in for the agent's Controller, implemented by
// the failover wiring and exercised with real agents in test/e2e: here the
// commands' flags, output and error messages are under test. It records
// calls and answers with err when set.
type scriptedController struct {
	mu    sync.Mutex
	calls []string
	err   error
}

func (c *scriptedController) call(s string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, s)
	return c.err
}

func (c *scriptedController) Promote(_ context.Context, force bool) (agent.RoleResult, error) {
	return agent.RoleResult{Role: "master", Epoch: 8}, c.call(fmt.Sprint("promote ", force))
}
func (c *scriptedController) Demote(context.Context) (agent.RoleResult, error) {
	return agent.RoleResult{Role: "slave", Epoch: 8}, c.call("demote")
}
func (c *scriptedController) Handoff(context.Context) (agent.HandoffResult, error) {
	return agent.HandoffResult{NewMaster: "beta", Epoch: 9, Downtime: 1234567890}, c.call("handoff")
}
func (c *scriptedController) Stashes(context.Context) ([]agent.Stash, error) {
	return []agent.Stash{{Name: "tank/flocker-stash/app-7-20261121", Dataset: "app", Epoch: 7, Bytes: 3 << 20}}, c.call("stashes")
}
func (c *scriptedController) RemoveStash(_ context.Context, name string) error {
	return c.call("rm " + name)
}

type adminFixture struct {
	config, socket, token, tokenFile string
	url                              string
}

// adminConfig writes a config whose admin socket is in a temp dir.
func adminConfig(t *testing.T) adminFixture {
	t.Helper()
	dir := t.TempDir()
	f := adminFixture{config: filepath.Join(dir, "flocker.ini"), socket: filepath.Join(dir, "admin.sock"),
		tokenFile: filepath.Join(dir, "admin.token")}
	ini := fmt.Sprintf("[node]\nname = alpha\n[peer]\nname = beta\naddress = 127.0.0.1:7947\n"+
		"fingerprint = sha256:%s\n[admin]\nsocket = %s\ntoken_file = %s\n[dataset \"app\"]\nzfs = tank/app\n",
		strings.Repeat("ab", 32), f.socket, f.tokenFile)
	if err := os.WriteFile(f.config, []byte(ini), 0o600); err != nil {
		t.Fatal(err)
	}
	tok, err := api.GenerateToken()
	if err != nil {
		t.Fatal(err)
	}
	f.token = tok
	if err := os.WriteFile(f.tokenFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// serve starts an API server for f with ctl (nil: no controller).
func (f *adminFixture) serve(t *testing.T, ctl agent.Controller) {
	t.Helper()
	srv, err := api.NewServer(api.Options{
		Status:     func() agent.Status { return agent.Status{Node: "alpha"} },
		Controller: ctl, Token: []byte(f.token), Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	tcp, err := api.ListenTCP(netip.MustParseAddrPort("127.0.0.1:0"))
	if err != nil {
		t.Fatal(err)
	}
	unix, err := api.ListenUnix(f.socket)
	if err != nil {
		t.Fatal(err)
	}
	f.url = "http://" + tcp.Addr().String()
	if err := srv.Start(tcp, unix); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
}

func TestAdminCommandsOverSocket(t *testing.T) {
	f := adminConfig(t)
	ctl := &scriptedController{}
	f.serve(t, ctl)
	for _, c := range []struct {
		args []string
		out  string
	}{
		{[]string{"promote", "--force"}, "this node is master, epoch 8"},
		{[]string{"demote"}, "this node is slave, epoch 8"},
		{[]string{"handoff"}, "beta is master now, epoch 9; service down for 1.235s"},
		{[]string{"stash", "list"}, "tank/flocker-stash/app-7-20261121  app      7"},
		{[]string{"stash", "list", "--json"}, `"name": "tank/flocker-stash/app-7-20261121"`},
		{[]string{"stash", "rm", "tank/flocker-stash/app-7-20261121"}, "removed tank/flocker-stash/app-7-20261121"},
	} {
		args := append(c.args, "--config", f.config)
		code, stdout, stderr := runCLI(t, args...)
		if code != exitOK || !strings.Contains(stdout, c.out) {
			t.Errorf("%v: exit %d, stdout %q (want %q), stderr %q", c.args, code, stdout, c.out, stderr)
		}
	}
	if _, stdout, _ := runCLI(t, "stash", "list", "--config", f.config); !strings.Contains(stdout, "3.0 MiB") {
		t.Errorf("stash list does not show the size in human units: %q", stdout)
	}
	want := "promote true,demote,handoff,stashes,stashes,rm tank/flocker-stash/app-7-20261121,stashes"
	if got := strings.Join(ctl.calls, ","); got != want {
		t.Errorf("controller calls %s, want %s", got, want)
	}

	ctl.mu.Lock()
	ctl.err = fmt.Errorf("promote: peer beta is alive and master (use handoff there, or --force): %w", agent.ErrRefused)
	ctl.mu.Unlock()
	code, _, stderr := runCLI(t, "promote", "--config", f.config)
	if code != exitFail || !strings.Contains(stderr, "the agent refused: promote: peer beta is alive and master") {
		t.Errorf("refused promote: exit %d, stderr %q", code, stderr)
	}
}

func TestAdminCommandsOverHTTP(t *testing.T) {
	f := adminConfig(t)
	f.serve(t, &scriptedController{})
	// The token file named by --config's [admin] token_file.
	if code, stdout, stderr := runCLI(t, "demote", "--config", f.config, "--url", f.url); code != exitOK || !strings.Contains(stdout, "slave") {
		t.Errorf("demote over HTTP: exit %d %q %q", code, stdout, stderr)
	}
	other := filepath.Join(t.TempDir(), "other.token")
	tok, _ := api.GenerateToken()
	if err := os.WriteFile(other, []byte(tok), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr := runCLI(t, "demote", "--url", f.url, "--token-file", other)
	if code != exitFail || !strings.Contains(stderr, "refused the credentials (403)") {
		t.Errorf("demote with another token: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "demote", "--url", f.url, "--config", filepath.Join(t.TempDir(), "none.ini"))
	if code != exitUsage || !strings.Contains(stderr, "--url needs --token-file") {
		t.Errorf("--url without a token: exit %d, stderr %q", code, stderr)
	}
	code, _, stderr = runCLI(t, "demote", "--url", "https://x:1/", "--token-file", other)
	if code != exitFail || !strings.Contains(stderr, "want http://HOST:PORT") {
		t.Errorf("https URL: exit %d, stderr %q", code, stderr)
	}
}

func TestAdminCommandErrors(t *testing.T) {
	f := adminConfig(t)
	code, _, stderr := runCLI(t, "demote", "--config", f.config)
	if code != exitFail || !strings.Contains(stderr, "admin socket "+f.socket+" does not exist: is the agent running?") {
		t.Errorf("no socket: exit %d, stderr %q", code, stderr)
	}
	// A socket nobody answers on: an agent that died without cleaning up.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: f.socket, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	code, _, stderr = runCLI(t, "handoff", "--config", f.config)
	if code != exitFail || !strings.Contains(stderr, "no agent answers") {
		t.Errorf("stale socket: exit %d, stderr %q", code, stderr)
	}
	os.Remove(f.socket)
	f.serve(t, nil)
	code, _, stderr = runCLI(t, "promote", "--config", f.config)
	if code != exitFail || !strings.Contains(stderr, "the agent does not take this request") {
		t.Errorf("agent without a controller: exit %d, stderr %q", code, stderr)
	}
	for _, args := range [][]string{
		{"stash"}, {"stash", "rm"}, {"stash", "rm", "a", "b"}, {"stash", "drop", "x"},
		{"demote", "extra"}, {"promote", "--token-file", f.tokenFile, "--config", f.config},
	} {
		if code, _, stderr := runCLI(t, args...); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitUsage, stderr)
		}
	}
	code, _, stderr = runCLI(t, "demote", "--config", filepath.Join(t.TempDir(), "missing.ini"))
	if code != exitFail || !strings.Contains(stderr, "missing.ini") {
		t.Errorf("missing config: exit %d, stderr %q", code, stderr)
	}
}

// TestAgentRefusesBadTokenFile: a token file others may read, or one too
// short, is a problem check reports at [admin] token_file, and the agent
// refuses to start on it.
func TestAgentRefusesBadTokenFile(t *testing.T) {
	a, b := twoNodes(t)
	if code, _, stderr := runCLI(t, "trust", "--config", a.config, b.fingerprint); code != exitOK {
		t.Fatalf("trust: %s", stderr)
	}
	tokenFile := filepath.Join(a.dir, "admin.token")
	if err := config.SetKeys(a.config, "admin", "token_file", "admin.token"); err != nil {
		t.Fatal(err)
	}
	tok, _ := api.GenerateToken()
	for _, c := range []struct {
		content string
		mode    os.FileMode
		want    string
	}{
		{tok, 0o644, "chmod 600"},
		{"short", 0o600, "at least 22 needed"},
	} {
		if err := os.WriteFile(tokenFile, []byte(c.content), c.mode); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(tokenFile, c.mode); err != nil {
			t.Fatal(err)
		}
		code, stdout, _ := runCLI(t, "check", "--config", a.config)
		if code != exitFail || !strings.Contains(stdout, "[admin] token_file: admin token "+tokenFile) || !strings.Contains(stdout, c.want) {
			t.Errorf("check with a bad token file: exit %d\n%s", code, stdout)
		}
		code, _, stderr := runCLI(t, "agent", "--config", a.config)
		if code != exitFail || !strings.Contains(stderr, "[admin] token_file") {
			t.Errorf("agent with a bad token file: exit %d\n%s", code, stderr)
		}
	}
	if err := os.WriteFile(tokenFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, stdout, _ := runCLI(t, "check", "--config", a.config); code != exitOK {
		t.Errorf("check with a good token file: exit %d\n%s", code, stdout)
	}
}
