package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestProblemString(t *testing.T) {
	cases := []struct {
		p    Problem
		want string
	}{
		{Problem{File: "flocker.ini", Line: 12, Section: "failover", Key: "timeout", Msg: `invalid duration "1x"`},
			`flocker.ini:12: [failover] timeout: invalid duration "1x"`},
		{Problem{File: "f.ini", Line: 3, Section: "node", Msg: "m"}, "f.ini:3: [node]: m"},
		{Problem{File: "f.ini", Section: "peer", Key: "name", Msg: "m"}, "f.ini: [peer] name: m"},
		{Problem{File: "f.ini", Msg: "m"}, "f.ini: m"},
		{Problem{Section: "node", Key: "name", Msg: "m"}, "[node] name: m"},
		{Problem{Line: 2, Msg: "m"}, "line 2: m"},
	}
	for _, c := range cases {
		if got := c.p.String(); got != c.want {
			t.Errorf("%+v: got %q, want %q", c.p, got, c.want)
		}
	}
	if got := (Problems{cases[0].p, cases[1].p}).Error(); got != cases[0].want+"\n"+cases[1].want {
		t.Errorf("Problems.Error() = %q", got)
	}
}

// TestValidateBuiltInCode covers a Config that never saw a file: problems
// carry no file or line, and the zero values that a file could never produce
// are caught.
func TestValidateBuiltInCode(t *testing.T) {
	c := &Config{}
	err := c.Validate()
	var probs Problems
	if !errors.As(err, &probs) {
		t.Fatalf("Validate() = %v", err)
	}
	want := []string{
		"[node] name: missing: this node's name, e.g. alpha",
		"[peer] name: missing: the other node's name, e.g. beta",
		"[peer] address: missing: the other node's IP:PORT, e.g. 192.0.2.12:7946",
		"[peer] fingerprint: missing: pin the peer's certificate: run 'flocker trust --config PATH FINGERPRINT' with the fingerprint 'flocker init' printed on the peer",
		"[tls] cert: empty: name the certificate file (default node.crt beside the config)",
		"[tls] key: empty: name the key file (default node.key beside the config)",
		`no [dataset "NAME"] section: there is nothing to protect`,
		"[failover] heartbeat: must be positive, not 0s",
		"[failover] timeout: must be positive, not 0s",
	}
	if got := strings.Split(err.Error(), "\n"); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", err, strings.Join(want, "\n"))
	}

	good := &Config{
		Node:     Node{Name: "alpha"},
		Peer:     Peer{Name: "beta", Address: netip.MustParseAddrPort("192.0.2.12:7946"), Fingerprint: fp},
		TLS:      TLS{Cert: "/c", Key: "/k"},
		Datasets: []Dataset{{Name: "app", ZFS: "tank/app"}},
		Failover: Failover{Heartbeat: time.Second, Timeout: 3 * time.Second},
	}
	if err := good.Validate(); err != nil {
		t.Fatalf("Validate(good) = %v", err)
	}
	if good.Line("node", "name") != 0 || good.File() != "" {
		t.Fatal("a Config built in code claims a source")
	}
}

func TestLineAndFile(t *testing.T) {
	c, err := Load("testdata/valid/full.ini")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		section, key string
		line         int
	}{
		{"node", "name", 3},
		{"failover", "timeout", 46},
		{"replication", "bandwidth", 38},
		{`dataset "db.main"`, "interface", 31},
		{`dataset "db.main"`, "stop", 28}, // absent: the header
		{"nosuch", "key", 0},
	} {
		if got := c.Line(tc.section, tc.key); got != tc.line {
			t.Errorf("Line(%s, %s) = %d, want %d", tc.section, tc.key, got, tc.line)
		}
	}
	if c.File() != "testdata/valid/full.ini" {
		t.Errorf("File() = %q", c.File())
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "none.ini")
	_, err := Load(path)
	if !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), path) {
		t.Fatalf("Load(missing) = %v", err)
	}
}

func TestDecodeSkipsValidate(t *testing.T) {
	data := []byte("[node]\nname = alpha\n[peer]\nname = beta\naddress = 192.0.2.12:7946\n")
	c, err := Decode("f.ini", data)
	if err != nil || c.Node.Name != "alpha" || c.TLS.Cert != DefaultCert {
		t.Fatalf("Decode = %+v, %v", c, err)
	}
	c, err = Parse("f.ini", data)
	if err == nil || !strings.Contains(err.Error(), "[peer] fingerprint: missing") {
		t.Fatalf("Parse = %v", err)
	}
	// With problems, Parse still hands back what decoded, for reports.
	if c == nil || c.Node.Name != "alpha" || c.Peer.Address.Port() != 7946 {
		t.Fatalf("Parse with problems returned %+v", c)
	}
	if _, err := Decode("f.ini", []byte("[node]\nname = -x\n")); err == nil {
		t.Fatal("Decode accepted a bad value")
	}
}

// FuzzParse checks that no input makes Parse panic, and that the scan and
// ini.v1 agree on every value the scan located (SetKeys edits by the scan's
// offsets, so they must).
func FuzzParse(f *testing.F) {
	for _, dir := range []string{"testdata/valid", "testdata/invalid"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.ini"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("[state]\nrole = `a ; b` ; c\nepoch = x #y ;z\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Parse("fuzz.ini", data)
		lay := scan(data)
		for _, b := range lay.blocks {
			if b.dup {
				continue
			}
			for _, k := range b.keys {
				got, ok := readValue(data, b.name, k.name)
				if !ok {
					t.Fatalf("[%s] %s located by the scan but not read by ini.v1", b.name, k.name)
				}
				if span := string(data[k.valStart:k.valEnd]); span != got {
					t.Fatalf("[%s] %s: scan located %q, ini.v1 read %q", b.name, k.name, span, got)
				}
			}
		}
	})
}

func TestParseBandwidth(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want uint64
		bad  bool
	}{
		{"0", 0, false},
		{"0/s", 0, false},
		{"1B", 1, false},
		{"500kB/s", 500_000, false},
		{"20MB", 20_000_000, false},
		{"20MiB", 20 << 20, false},
		{"3GiB/s", 3 << 30, false},
		{"1GB", 1_000_000_000, false},
		{"20", 0, true},     // a unit is required (0 excepted)
		{"20Mbit", 0, true}, // bits are not bytes
		{"MiB", 0, true},
		{"-1MiB", 0, true},
		{"+1MiB", 0, true},
		{"1.5MiB", 0, true},
		{"20 MiB", 0, true},
		{"20mib", 0, true},
		{"17179869184GiB", 0, true}, // overflows uint64
		{"", 0, true},
	} {
		got, err := ParseBandwidth(tc.in)
		if tc.bad {
			if err == nil || !strings.Contains(err.Error(), tc.in) {
				t.Errorf("ParseBandwidth(%q) = %d, %v; want an error naming the value", tc.in, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParseBandwidth(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}
