package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/flockerha/flocker/agent/config"
	"github.com/flockerha/flocker/transport/pki"
)

// Tests of init, trust and check, run end to end through run() on real
// files in temporary directories.

var fingerprintLine = regexp.MustCompile(`^sha256:[0-9a-f]{64}\n$`)

type node struct {
	dir, config, cert, key string
	fingerprint            string
}

// initNode runs flocker init for one node and checks what it printed.
func initNode(t *testing.T, name, peer, listen, peerAddr string, extra ...string) node {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	n := node{dir: dir, config: filepath.Join(dir, "flocker.ini"),
		cert: filepath.Join(dir, "node.crt"), key: filepath.Join(dir, "node.key")}
	for i := 0; i+1 < len(extra); i++ {
		switch extra[i] {
		case "--cert":
			n.cert = extra[i+1]
		case "--key":
			n.key = extra[i+1]
		}
	}
	args := append([]string{"init", "--config", n.config, "--name", name, "--peer-name", peer,
		"--listen", listen, "--peer-address", peerAddr}, extra...)
	code, stdout, stderr := runCLI(t, args...)
	if code != exitOK {
		t.Fatalf("init %s: exit %d\n%s", name, code, stderr)
	}
	if !fingerprintLine.MatchString(stdout) {
		t.Fatalf("init stdout is not one fingerprint line: %q", stdout)
	}
	n.fingerprint = strings.TrimSpace(stdout)
	got, err := pki.ReadCertFingerprint(n.cert)
	if err != nil || got != n.fingerprint {
		t.Fatalf("printed %s, certificate on disk has %s (%v)", n.fingerprint, got, err)
	}
	return n
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func twoNodes(t *testing.T) (a, b node) {
	t.Helper()
	a = initNode(t, "alpha", "beta", "127.0.0.1:7946", "127.0.0.1:7947", "--role", "master",
		"--dataset", "app=tank/app", "--vip", "192.0.2.100/24", "--interface", "eth0")
	b = initNode(t, "beta", "alpha", "127.0.0.1:7947", "127.0.0.1:7946",
		"--dataset", "app=pool2/replica/app", "--vip", "192.0.2.100/24", "--interface", "eth1")
	return a, b
}

func TestInitTrustCheckTwoNodes(t *testing.T) {
	a, b := twoNodes(t)
	for _, n := range []node{a, b} {
		for path, want := range map[string]os.FileMode{n.config: 0o600, n.key: 0o600, n.cert: 0o644} {
			if got := fileMode(t, path); got != want {
				t.Errorf("%s: mode %04o, want %04o", path, got, want)
			}
		}
		// Until the peer is trusted, check names exactly that.
		code, stdout, _ := runCLI(t, "check", "--config", n.config)
		if code != exitFail || !strings.Contains(stdout, "[peer] fingerprint: missing") || strings.Count(stdout, "\n") != 1 {
			t.Fatalf("check before trust: exit %d\n%s", code, stdout)
		}
	}
	before := readFile(t, a.config)

	if code, _, stderr := runCLI(t, "trust", "--config", a.config, b.fingerprint); code != exitOK {
		t.Fatalf("trust on alpha: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := runCLI(t, "trust", "--config", b.config, a.fingerprint); code != exitOK {
		t.Fatalf("trust on beta: exit %d\n%s", code, stderr)
	}
	// trust adds one line to [peer] and changes nothing else.
	want := strings.Replace(before, "address = 127.0.0.1:7947\n", "address = 127.0.0.1:7947\nfingerprint = "+b.fingerprint+"\n", 1)
	if got := readFile(t, a.config); got != want {
		t.Fatalf("config after trust:\n%s\nwant:\n%s", got, want)
	}

	for _, tc := range []struct {
		n        node
		peer     node
		role     string
		zfs, vip string
	}{{a, b, "master", "tank/app", "192.0.2.100/24 on eth0"}, {b, a, "slave", "pool2/replica/app", "192.0.2.100/24 on eth1"}} {
		code, stdout, stderr := runCLI(t, "check", "--config", tc.n.config)
		if code != exitOK {
			t.Fatalf("check %s: exit %d\n%s%s", tc.n.config, code, stdout, stderr)
		}
		for _, s := range []string{tc.n.config + ": ok", "certificate " + tc.n.fingerprint, "pinned " + tc.peer.fingerprint,
			"dataset  app: " + tc.zfs + ", vip " + tc.vip, "role " + tc.role + ", epoch 0"} {
			if !strings.Contains(stdout, s) {
				t.Errorf("check summary lacks %q:\n%s", s, stdout)
			}
		}
		c, err := config.Load(tc.n.config)
		if err != nil {
			t.Fatal(err)
		}
		if c.Peer.Fingerprint != tc.peer.fingerprint || string(c.State.Role) != tc.role || c.TLS.Key != tc.n.key {
			t.Errorf("loaded config %+v", c)
		}
	}

	// Trusting the same fingerprint again changes nothing.
	after := readFile(t, a.config)
	if code, _, _ := runCLI(t, "trust", "--config", a.config, b.fingerprint); code != exitOK || readFile(t, a.config) != after {
		t.Fatalf("repeated trust: exit %d or file changed", code)
	}
}

func TestInitRefusesOverwriteWithoutForce(t *testing.T) {
	a := initNode(t, "alpha", "beta", "0.0.0.0:7946", "192.0.2.12:7946")
	files := map[string]string{a.config: readFile(t, a.config), a.key: readFile(t, a.key), a.cert: readFile(t, a.cert)}
	args := []string{"init", "--config", a.config, "--name", "alpha", "--peer-name", "beta", "--peer-address", "192.0.2.12:7946"}

	code, stdout, stderr := runCLI(t, args...)
	if code != exitFail || stdout != "" {
		t.Fatalf("second init: exit %d, stdout %q", code, stdout)
	}
	for path, content := range files {
		if !strings.Contains(stderr, path) {
			t.Errorf("refusal does not name %s: %s", path, stderr)
		}
		if readFile(t, path) != content {
			t.Errorf("%s changed by a refused init", path)
		}
	}

	// Any one file in the way is enough, and nothing else gets written.
	if err := os.Remove(a.config); err != nil {
		t.Fatal(err)
	}
	if code, _, stderr := runCLI(t, args...); code != exitFail || !strings.Contains(stderr, a.key) {
		t.Fatalf("init with only the key and cert present: exit %d\n%s", code, stderr)
	}
	if _, err := os.Stat(a.config); !os.IsNotExist(err) {
		t.Fatalf("a refused init wrote the config: %v", err)
	}

	code, stdout, stderr = runCLI(t, append(args, "--force")...)
	if code != exitOK {
		t.Fatalf("init --force: exit %d\n%s", code, stderr)
	}
	newFP := strings.TrimSpace(stdout)
	if newFP == a.fingerprint || readFile(t, a.key) == files[a.key] {
		t.Fatal("init --force kept the old credentials")
	}
	if got, _ := pki.ReadCertFingerprint(a.cert); got != newFP {
		t.Fatalf("certificate %s, printed %s", got, newFP)
	}
	if fileMode(t, a.key) != 0o600 || fileMode(t, a.config) != 0o600 {
		t.Fatal("init --force left loose modes")
	}
}

func TestInitWithoutDatasetWritesExample(t *testing.T) {
	a := initNode(t, "alpha", "beta", "0.0.0.0:7946", "192.0.2.12:7946",
		"--cert", filepath.Join(t.TempDir(), "certs", "a.crt"))
	text := readFile(t, a.config)
	if !strings.Contains(text, "; [dataset \"app\"]\n; zfs = tank/app\n") {
		t.Fatalf("no commented example dataset:\n%s", text)
	}
	// A --cert given on the command line is written as an absolute path.
	c, err := config.Decode(a.config, []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if !filepath.IsAbs(c.TLS.Cert) || !strings.HasSuffix(c.TLS.Cert, "/certs/a.crt") || fileMode(t, c.TLS.Cert) != 0o644 {
		t.Fatalf("cert at %q", c.TLS.Cert)
	}
	code, stdout, _ := runCLI(t, "check", "--config", a.config)
	if code != exitFail || !strings.Contains(stdout, `no [dataset "NAME"] section`) {
		t.Fatalf("check of a config without datasets: exit %d\n%s", code, stdout)
	}
}

func TestInitBadFlagsAreUsageErrors(t *testing.T) {
	base := map[string]string{"--name": "alpha", "--peer-name": "beta", "--peer-address": "192.0.2.12:7946"}
	cases := []struct {
		name string
		set  map[string]string // flag -> value; "" removes the flag
		args []string
		want string
	}{
		{"no name", map[string]string{"--name": ""}, nil, "--name is required"},
		{"bad name", map[string]string{"--name": "al pha"}, nil, `--name: invalid name "al pha"`},
		{"no peer", map[string]string{"--peer-name": "", "--peer-address": ""}, nil, "--peer-name is required\n  --peer-address is required"},
		{"peer is self", map[string]string{"--peer-name": "alpha"}, nil, `--peer-name: "alpha" is this node's own name`},
		{"peer host name", map[string]string{"--peer-address": "beta.example:7946"}, nil, `"beta.example" is not an IP address`},
		{"peer port 0", map[string]string{"--peer-address": "192.0.2.12:0"}, nil, "port 0 cannot be connected to"},
		{"bad listen", map[string]string{"--listen": "7946"}, nil, `--listen: invalid address "7946"`},
		{"bad role", map[string]string{"--role": "primary"}, nil, `--role: invalid role "primary"`},
		{"dataset without =", map[string]string{"--dataset": "tank/app"}, nil, `want NAME=POOL/DATASET`},
		{"dataset bad zfs", map[string]string{"--dataset": "app=tank/app;rm"}, nil, `--dataset: invalid ZFS dataset "tank/app;rm"`},
		{"dataset bad name", map[string]string{"--dataset": "a/b=tank/app"}, nil, `--dataset: invalid name "a/b"`},
		{"vip without dataset", map[string]string{"--vip": "192.0.2.1/24", "--interface": "eth0"}, nil, "--vip and --interface belong to a --dataset"},
		{"vip without interface", map[string]string{"--dataset": "app=tank/app", "--vip": "192.0.2.1/24"}, nil, "--vip needs --interface"},
		{"interface without vip", map[string]string{"--dataset": "app=tank/app", "--interface": "eth0"}, nil, "--interface needs --vip"},
		{"bad vip", map[string]string{"--dataset": "app=tank/app", "--vip": "192.0.2.1", "--interface": "eth0"}, nil, `--vip: invalid CIDR "192.0.2.1"`},
		{"bad interface", map[string]string{"--dataset": "app=tank/app", "--vip": "192.0.2.1/24", "--interface": "a/b"}, nil, `--interface: invalid interface name "a/b"`},
		{"cert is key", map[string]string{"--cert": "x.pem", "--key": "x.pem"}, nil, "must be three different files"},
		{"stray argument", nil, []string{"extra"}, `unexpected argument "extra"`},
		{"unknown flag", map[string]string{"--colour": "blue"}, nil, "flag provided but not defined: -colour"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			args := []string{"init", "--config", filepath.Join(dir, "etc", "flocker.ini")}
			flags := map[string]string{}
			for k, v := range base {
				flags[k] = v
			}
			for k, v := range c.set {
				flags[k] = v
			}
			for k, v := range flags {
				if v != "" {
					args = append(args, k, v)
				}
			}
			args = append(args, c.args...)
			code, stdout, stderr := runCLI(t, args...)
			if code != exitUsage || !strings.Contains(stderr, c.want) || stdout != "" {
				t.Fatalf("exit %d, stdout %q, stderr:\n%s\nwant exit 2 and %q", code, stdout, stderr, c.want)
			}
			if ents, _ := os.ReadDir(dir); len(ents) != 0 {
				t.Fatalf("a usage error wrote files: %v", ents)
			}
		})
	}
}

func TestTrustErrors(t *testing.T) {
	a, b := twoNodes(t)
	orig := readFile(t, a.config)
	cases := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no fingerprint", []string{"trust", "--config", a.config}, exitUsage, "want exactly one FINGERPRINT"},
		{"two fingerprints", []string{"trust", "--config", a.config, b.fingerprint, b.fingerprint}, exitUsage, "got 2 arguments"},
		{"malformed", []string{"trust", "--config", a.config, "SHA256:AB:CD"}, exitUsage, `invalid fingerprint "SHA256:AB:CD"`},
		{"uppercase", []string{"trust", "--config", a.config, strings.ToUpper(b.fingerprint[:7]) + b.fingerprint[7:]}, exitUsage, `must start with "sha256:"`},
		{"own fingerprint", []string{"trust", "--config", a.config, a.fingerprint}, exitFail, "is this node's own certificate"},
		{"missing config", []string{"trust", "--config", filepath.Join(a.dir, "nope.ini"), b.fingerprint}, exitFail, "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, c.args...)
			if code != c.code || !strings.Contains(stderr, c.want) {
				t.Fatalf("exit %d, stderr:\n%s\nwant exit %d and %q", code, stderr, c.code, c.want)
			}
			if readFile(t, a.config) != orig {
				t.Fatal("config changed")
			}
		})
	}

	t.Run("broken config", func(t *testing.T) {
		broken := strings.Replace(orig, "heartbeat = 100ms", "heartbeat = often", 1)
		if err := os.WriteFile(a.config, []byte(broken), 0o600); err != nil {
			t.Fatal(err)
		}
		code, _, stderr := runCLI(t, "trust", "--config", a.config, b.fingerprint)
		if code != exitFail || !strings.Contains(stderr, `[failover] heartbeat: invalid duration "often"`) {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		if readFile(t, a.config) != broken {
			t.Fatal("broken config was rewritten")
		}
	})

	t.Run("replacing a pin logs a warning as JSON", func(t *testing.T) {
		if err := os.WriteFile(a.config, []byte(orig), 0o600); err != nil {
			t.Fatal(err)
		}
		if code, _, _ := runCLI(t, "trust", "--config", a.config, b.fingerprint); code != exitOK {
			t.Fatal("first trust failed")
		}
		other := "sha256:" + strings.Repeat("ab", 32)
		code, _, stderr := runCLI(t, "trust", "--log-format", "json", "--config", a.config, other)
		if code != exitOK {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
		var rec map[string]any
		if err := json.Unmarshal([]byte(strings.TrimSpace(stderr)), &rec); err != nil {
			t.Fatalf("log is not one JSON record: %v\n%s", err, stderr)
		}
		if rec["level"] != "WARN" || rec["old"] != b.fingerprint || rec["new"] != other {
			t.Fatalf("log record %v", rec)
		}
		c, err := config.Load(a.config)
		if err != nil || c.Peer.Fingerprint != other {
			t.Fatalf("after re-pinning: %v, %+v", err, c)
		}
	})
}

func TestCheckReportsEveryProblem(t *testing.T) {
	a, b := twoNodes(t)
	for _, args := range [][]string{{a.config, b.fingerprint}, {b.config, a.fingerprint}} {
		if code, _, stderr := runCLI(t, "trust", "--config", args[0], args[1]); code != exitOK {
			t.Fatal(stderr)
		}
	}
	good := readFile(t, a.config)
	// at is "file:N" for the line of text that holds sub.
	at := func(text, sub string) string {
		for i, l := range strings.Split(text, "\n") {
			if strings.Contains(l, sub) {
				return fmt.Sprintf("%s:%d", a.config, i+1)
			}
		}
		t.Fatalf("no line holds %q", sub)
		return ""
	}

	t.Run("broken values", func(t *testing.T) {
		broken := strings.Replace(good, "timeout = 1s", "timeout = 1x", 1)
		broken = strings.Replace(broken, "name = alpha\n", "name = alpha\ncolour = blue\n", 1)
		broken = strings.Replace(broken, "vip = 192.0.2.100/24", "vip = 192.0.2.100", 1)
		writeConfig(t, a.config, broken)
		code, stdout, stderr := runCLI(t, "check", "--config", a.config)
		want := at(broken, "colour") + ": [node] colour: unknown key (known in [node]: listen, name, status)\n" +
			at(broken, "vip = ") + `: [dataset "app"] vip: invalid CIDR "192.0.2.100": want ADDRESS/PREFIXLEN, e.g. 192.0.2.100/24` + "\n" +
			at(broken, "timeout = ") + `: [failover] timeout: invalid duration "1x" (want a number with a unit, e.g. 100ms or 2s)` + "\n"
		if code != exitFail || stdout != want || !strings.Contains(stderr, "3 problem(s)") {
			t.Fatalf("exit %d\nstdout:\n%s\nwant:\n%s\nstderr: %s", code, stdout, want, stderr)
		}
	})

	t.Run("key readable by others", func(t *testing.T) {
		writeConfig(t, a.config, good)
		if err := os.Chmod(a.key, 0o640); err != nil {
			t.Fatal(err)
		}
		defer os.Chmod(a.key, 0o600)
		code, stdout, _ := runCLI(t, "check", "--config", a.config)
		want := at(good, "key = node.key") + ": [tls] key: key file " + a.key + ": mode 0640 lets group or others access the key; want 0600 (chmod 600 " + a.key + ")\n"
		if code != exitFail || stdout != want {
			t.Fatalf("exit %d\n%s\nwant\n%s", code, stdout, want)
		}
	})

	t.Run("key of the other node", func(t *testing.T) {
		writeConfig(t, a.config, strings.Replace(good, "key = node.key", "key = "+b.key, 1))
		code, stdout, _ := runCLI(t, "check", "--config", a.config)
		if code != exitFail || !strings.Contains(stdout, "[tls] key: key file "+b.key+": does not match certificate "+a.cert) {
			t.Fatalf("exit %d\n%s", code, stdout)
		}
	})

	t.Run("missing certificate", func(t *testing.T) {
		writeConfig(t, a.config, strings.Replace(good, "cert = node.crt", "cert = gone.crt", 1))
		code, stdout, _ := runCLI(t, "check", "--config", a.config)
		want := at(good, "cert = node.crt") + ": [tls] cert: certificate file " + filepath.Join(a.dir, "gone.crt") + ": no such file or directory\n"
		if code != exitFail || stdout != want {
			t.Fatalf("exit %d\n%s\nwant\n%s", code, stdout, want)
		}
	})

	t.Run("own fingerprint pinned", func(t *testing.T) {
		writeConfig(t, a.config, strings.Replace(good, b.fingerprint, a.fingerprint, 1))
		code, stdout, _ := runCLI(t, "check", "--config", a.config)
		if code != exitFail || !strings.Contains(stdout, "[peer] fingerprint: is this node's own certificate") {
			t.Fatalf("exit %d\n%s", code, stdout)
		}
	})

	t.Run("missing file", func(t *testing.T) {
		code, _, stderr := runCLI(t, "check", "--config", filepath.Join(a.dir, "none.ini"))
		if code != exitFail || !strings.Contains(stderr, "no such file") {
			t.Fatalf("exit %d\n%s", code, stderr)
		}
	})

	t.Run("stray argument", func(t *testing.T) {
		if code, _, _ := runCLI(t, "check", "--config", a.config, "more"); code != exitUsage {
			t.Fatalf("exit %d", code)
		}
	})
}

func writeConfig(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
