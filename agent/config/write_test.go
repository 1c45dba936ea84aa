package config

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/flockerha/flocker/internal/testutil"
)

const fp = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

// operatorFile is a config as an operator might leave it: comments
// everywhere, odd spacing, inline comments on the values to change.
const operatorFile = `# flocker on alpha -- edited by hand, keep these notes!
[node]
name = alpha   ; the left box

[peer]
name = beta
address = 192.0.2.12:7946
fingerprint=sha256:ffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff   # old pin

; ---- datasets ----
[dataset "app"]
zfs = tank/app

[state]     ; written by the agent
role   =   slave    ; keep this comment
  epoch	= 3
# trailing note
`

func writeTemp(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "flocker.ini")
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

func readString(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriteStateChangesOnlyTheValues(t *testing.T) {
	path := writeTemp(t, operatorFile, 0o644)
	if err := WriteState(path, State{Role: RoleMaster, Epoch: 18}); err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(operatorFile, "role   =   slave    ;", "role   =   master    ;", 1)
	want = strings.Replace(want, "  epoch\t= 3\n", "  epoch\t= 18\n", 1)
	if got := readString(t, path); got != want {
		t.Fatalf("rewritten file:\n%s\nwant:\n%s", got, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != FileMode {
		t.Fatalf("mode %04o, want %04o", fi.Mode().Perm(), FileMode)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatalf("Load after WriteState: %v", err)
	}
	if c.State != (State{Role: RoleMaster, Epoch: 18}) {
		t.Fatalf("state read back as %+v", c.State)
	}
}

func TestSetKeysReplacesKeepingInlineComment(t *testing.T) {
	path := writeTemp(t, operatorFile, 0o600)
	if err := SetKeys(path, "peer", "fingerprint", fp); err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(operatorFile, "fingerprint=sha256:"+strings.Repeat("f", 64), "fingerprint="+fp, 1)
	if got := readString(t, path); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if c.Peer.Fingerprint != fp {
		t.Fatalf("fingerprint read back as %q", c.Peer.Fingerprint)
	}
}

func TestSetKeysAppendsKeyAtEndOfSection(t *testing.T) {
	in := "[node]\nname = alpha\n\n; about the peer\n[peer]\nname = beta\naddress = 192.0.2.12:7946\n\n; datasets follow\n[dataset \"app\"]\nzfs = tank/app\n"
	path := writeTemp(t, in, 0o600)
	if err := SetKeys(path, "peer", "fingerprint", fp); err != nil {
		t.Fatal(err)
	}
	want := strings.Replace(in, "address = 192.0.2.12:7946\n", "address = 192.0.2.12:7946\nfingerprint = "+fp+"\n", 1)
	if got := readString(t, path); got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	if _, err := Load(path); err != nil {
		t.Fatalf("result does not validate: %v", err)
	}
}

func TestSetKeysAppendsSection(t *testing.T) {
	for name, in := range map[string]string{
		"newline at end":    "[node]\nname = alpha\n",
		"no newline at end": "[node]\nname = alpha",
		"empty file":        "",
	} {
		t.Run(name, func(t *testing.T) {
			path := writeTemp(t, in, 0o600)
			if err := WriteState(path, State{Role: RoleSlave, Epoch: 1}); err != nil {
				t.Fatal(err)
			}
			want := in
			if want != "" {
				want = strings.TrimSuffix(want, "\n") + "\n\n"
			}
			want += "[state]\nrole = slave\nepoch = 1\n"
			if got := readString(t, path); got != want {
				t.Fatalf("got %q\nwant %q", got, want)
			}
		})
	}
}

func TestSetKeysEmptyValueAndLastLineWithoutNewline(t *testing.T) {
	path := writeTemp(t, "[state]\nrole =\nepoch = 2", 0o600)
	if err := SetKeys(path, "state", "role", "master", "epoch", "3"); err != nil {
		t.Fatal(err)
	}
	if got, want := readString(t, path), "[state]\nrole = master\nepoch = 3"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
	// A key added to a section that ends the file without a newline.
	if err := SetKeys(path, "node", "name", "alpha"); err != nil {
		t.Fatal(err)
	}
	if got, want := readString(t, path), "[state]\nrole = master\nepoch = 3\n\n[node]\nname = alpha\n"; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestSetKeysKeepsCRLF(t *testing.T) {
	in := "[node]\r\nname = alpha\r\n[state]\r\nrole = slave ; c\r\n"
	path := writeTemp(t, in, 0o600)
	if err := WriteState(path, State{Role: RoleMaster, Epoch: 5}); err != nil {
		t.Fatal(err)
	}
	want := "[node]\r\nname = alpha\r\n[state]\r\nrole = master ; c\r\nepoch = 5\r\n"
	if got := readString(t, path); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// TestWriteStateOnGoldenFiles rewrites the state of every valid golden file:
// every line outside [state] stays as it was, and the file still parses to
// the same config with the new state.
func TestWriteStateOnGoldenFiles(t *testing.T) {
	for _, in := range goldenInputs(t, "testdata/valid") {
		t.Run(filepath.Base(in), func(t *testing.T) {
			orig, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(t.TempDir(), filepath.Base(in))
			if err := os.WriteFile(path, orig, 0o600); err != nil {
				t.Fatal(err)
			}
			if err := WriteState(path, State{Role: RoleMaster, Epoch: 424242}); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if a, b := outsideSection(orig, "state"), outsideSection(got, "state"); a != b {
				t.Fatalf("text outside [state] changed:\n%s\n---\n%s", a, b)
			}
			before, err := Parse(path, orig)
			if err != nil {
				t.Fatal(err)
			}
			after, err := Load(path)
			if err != nil {
				t.Fatal(err)
			}
			if after.State != (State{Role: RoleMaster, Epoch: 424242}) {
				t.Fatalf("state read back as %+v", after.State)
			}
			before.State = after.State
			if a, b := describe(t, before), describe(t, after); !bytes.Equal(a, b) {
				t.Fatalf("config changed beyond [state]:\n%s\n---\n%s", a, b)
			}
		})
	}
}

// outsideSection drops the lines of one section (and any blank lines that
// the writer may have added before it).
func outsideSection(data []byte, section string) string {
	var out []string
	in := false
	for _, line := range strings.SplitAfter(string(data), "\n") {
		t := strings.TrimSpace(strings.TrimPrefix(line, "\xef\xbb\xbf"))
		if strings.HasPrefix(t, "[") {
			in = strings.HasPrefix(t, "["+section+"]")
		}
		if !in {
			out = append(out, line)
		}
	}
	return strings.TrimRight(strings.Join(out, ""), "\r\n")
}

func TestSetKeysRefusesAndLeavesFile(t *testing.T) {
	cases := []struct {
		name    string
		content string
		set     func(path string) error
		want    string // in the error
	}{
		{"bad role", operatorFile,
			func(p string) error { return WriteState(p, State{Role: "boss"}) }, `invalid role "boss"`},
		{"bad fingerprint", operatorFile,
			func(p string) error { return SetKeys(p, "peer", "fingerprint", "sha256:abc") }, `[peer] fingerprint: invalid fingerprint "sha256:abc"`},
		{"value misread as a comment", operatorFile,
			func(p string) error { return SetKeys(p, `dataset "app"`, "start", "a ; b") }, `[dataset "app"] start = "a ; b" would read back as "a"`},
		{"line break", operatorFile,
			func(p string) error { return SetKeys(p, "peer", "name", "be\nta") }, `holds a line break`},
		{"unknown section", operatorFile,
			func(p string) error { return SetKeys(p, "bogus", "k", "v") }, `[bogus]: unknown section`},
		{"unknown key", operatorFile,
			func(p string) error { return SetKeys(p, "state", "epcoh", "1") }, `[state] epcoh: unknown key`},
		{"odd arguments", operatorFile,
			func(p string) error { return SetKeys(p, "state", "role") }, `odd number`},
		{"broken file", operatorFile + "[failover]\ntimeout = soon\n",
			func(p string) error { return WriteState(p, State{Role: RoleMaster, Epoch: 1}) }, `[failover] timeout: invalid duration "soon"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := writeTemp(t, c.content, 0o640)
			err := c.set(path)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one containing %q", err, c.want)
			}
			if got := readString(t, path); got != c.content {
				t.Fatalf("file changed after a refusal:\n%s", got)
			}
			if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
				t.Fatalf("mode changed to %04o after a refusal", fi.Mode().Perm())
			}
			checkDirHolds(t, filepath.Dir(path), 1)
		})
	}
}

// TestSetKeysFullDiskLeavesFile fails the write for real: the config sits on
// a tiny tmpfs that is then filled.
func TestSetKeysFullDiskLeavesFile(t *testing.T) {
	testutil.RequireRoot(t)
	dir := t.TempDir()
	testutil.RequireNoError(t, "mounting a small tmpfs", syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=16k"))
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmounting %s: %v", dir, err)
		}
	})
	path := filepath.Join(dir, "flocker.ini")
	if err := os.WriteFile(path, []byte(operatorFile), 0o600); err != nil {
		t.Fatal(err)
	}
	fill, err := os.Create(filepath.Join(dir, "fill"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = fill.Write(make([]byte, 1<<20))
	fill.Close()
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("filling the tmpfs: %v", err)
	}
	err = WriteState(path, State{Role: RoleMaster, Epoch: 99})
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("WriteState on a full disk: %v, want ENOSPC", err)
	}
	if got := readString(t, path); got != operatorFile {
		t.Fatalf("file changed by a failed write:\n%s", got)
	}
	checkDirHolds(t, dir, 2)
}

func TestSetKeysKeepsOwner(t *testing.T) {
	testutil.RequireRoot(t)
	path := writeTemp(t, operatorFile, 0o644)
	if err := os.Chown(path, 2345, 3456); err != nil {
		t.Fatal(err)
	}
	if err := WriteState(path, State{Role: RoleMaster, Epoch: 4}); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 2345 || st.Gid != 3456 || fi.Mode().Perm() != FileMode {
		t.Fatalf("owner %d:%d mode %04o, want 2345:3456 %04o", st.Uid, st.Gid, fi.Mode().Perm(), FileMode)
	}
}

func checkDirHolds(t *testing.T, dir string, n int) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != n {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Fatalf("%s holds %v: a temporary file was left behind", dir, names)
	}
}
