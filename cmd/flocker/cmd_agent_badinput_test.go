package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/flockerha/flocker/agent/config"
)

// recordingZFS writes a zfs (and zpool) stand-in that records that it ran
// and fails: here nothing must run at all, so a real zfs is not needed (and
// no real zfs is touched).
func recordingZFS(t *testing.T) (bin, marker string) {
	t.Helper()
	dir := t.TempDir()
	bin, marker = filepath.Join(dir, "zfs"), filepath.Join(dir, "ran")
	script := "#!/bin/sh\necho \"$@\" >> " + marker + "\necho 'recording stand-in' >&2\nexit 1\n"
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return bin, marker
}

// TestAgentRefusesDangerousNamesBeforeExec: a dataset name with shell
// metacharacters or a leading '-' stops the agent with the key and file:line
// named, before any zfs command runs. The control run (a good config) shows
// the stand-in does get run when the config passes.
func TestAgentRefusesDangerousNamesBeforeExec(t *testing.T) {
	a, b := twoNodes(t)
	if code, _, stderr := runCLI(t, "trust", "--config", a.config, b.fingerprint); code != exitOK {
		t.Fatal(stderr)
	}
	good := readFile(t, a.config)
	line := 0
	for i, l := range strings.Split(good, "\n") {
		if l == "zfs = tank/app" {
			line = i + 1
		}
	}
	if line == 0 {
		t.Fatalf("no zfs line in\n%s", good)
	}
	for _, name := range []string{"-tank/app", "tank/-app", "tank/app;reboot", "tank/$(id)", "tank/`id`", "tank/a|b", "tank/a b", "tank/a\tb"} {
		t.Run(name, func(t *testing.T) {
			bin, marker := recordingZFS(t)
			writeConfig(t, a.config, strings.Replace(good, "zfs = tank/app", "zfs = "+name, 1))
			code, _, stderr := runCLI(t, "agent", "--config", a.config, "--zfs", bin, "--zpool", bin)
			at := a.config + ":" + strconv.Itoa(line) + `: [dataset "app"] zfs: invalid ZFS dataset`
			if code != exitFail || !strings.Contains(stderr, at) {
				t.Errorf("exit %d, want %d and %q in:\n%s", code, exitFail, at, stderr)
			}
			if ran, err := os.ReadFile(marker); err == nil {
				t.Errorf("zfs ran before the name was refused: %s", ran)
			}
		})
	}
	t.Run("control: a good name reaches zfs", func(t *testing.T) {
		bin, marker := recordingZFS(t)
		writeConfig(t, a.config, good)
		code, _, stderr := runCLI(t, "agent", "--config", a.config, "--zfs", bin, "--zpool", bin)
		if _, err := os.Stat(marker); err != nil || code != exitFail {
			t.Fatalf("the stand-in did not run (exit %d, %v):\n%s", code, err, stderr)
		}
	})
}

// TestAgentMissingFiles: a missing config, certificate, key or admin token
// file stops the agent with an error naming the file (and for the others
// the config key that names it); nothing runs.
func TestAgentMissingFiles(t *testing.T) {
	a, b := twoNodes(t)
	if code, _, stderr := runCLI(t, "trust", "--config", a.config, b.fingerprint); code != exitOK {
		t.Fatal(stderr)
	}
	bin, marker := recordingZFS(t)
	agent := func(config string) (int, string) {
		code, _, stderr := runCLI(t, "agent", "--config", config, "--zfs", bin, "--zpool", bin)
		return code, stderr
	}
	missing := filepath.Join(a.dir, "none.ini")
	if code, stderr := agent(missing); code != exitFail || !strings.Contains(stderr, missing) || !strings.Contains(stderr, "no such file") {
		t.Errorf("missing config: exit %d\n%s", code, stderr)
	}
	for _, f := range []struct{ path, key string }{{a.cert, "[tls] cert"}, {a.key, "[tls] key"}} {
		if err := os.Rename(f.path, f.path+".away"); err != nil {
			t.Fatal(err)
		}
		code, stderr := agent(a.config)
		if err := os.Rename(f.path+".away", f.path); err != nil {
			t.Fatal(err)
		}
		if code != exitFail || !strings.Contains(stderr, f.key) || !strings.Contains(stderr, f.path+": no such file") {
			t.Errorf("missing %s: exit %d\n%s", f.key, code, stderr)
		}
	}
	// An admin token file that is not there.
	token := filepath.Join(a.dir, "gone.token")
	if err := config.SetKeys(a.config, "admin", "token_file", token); err != nil {
		t.Fatal(err)
	}
	if code, stderr := agent(a.config); code != exitFail || !strings.Contains(stderr, "[admin] token_file") || !strings.Contains(stderr, token+": no such file") {
		t.Errorf("missing token file: exit %d\n%s", code, stderr)
	}
	if ran, err := os.ReadFile(marker); err == nil {
		t.Errorf("zfs ran: %s", ran)
	}
}
