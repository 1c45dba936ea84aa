// Package contrib tests `make install` and the systemd unit it installs.
package contrib

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flockerha/flocker/internal/testutil"
)

// makeInstall runs `make install` in the repository with vars and returns
// the temp dir the caller's vars point into.
func makeInstall(t *testing.T, vars ...string) {
	t.Helper()
	_, err := exec.LookPath("make")
	testutil.RequireNoError(t, "make", err)
	cmd := exec.Command("make", append([]string{"-s", "-C", "..", "install"}, vars...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make install %v: %v\n%s", vars, err, out)
	}
}

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode()
}

// TestInstallIntoDESTDIR: a staged install puts the binary, the unit (its
// paths rewritten for PREFIX) and the README under DESTDIR with the right
// modes, and the staged binary runs.
func TestInstallIntoDESTDIR(t *testing.T) {
	dest := t.TempDir()
	build := filepath.Join(t.TempDir(), "flocker")
	makeInstall(t, "DESTDIR="+dest, "PREFIX=/usr", "BIN="+build)
	for path, want := range map[string]os.FileMode{
		"usr/sbin/flocker":                       0o755,
		"usr/lib/systemd/system/flocker.service": 0o644,
		"usr/share/doc/flocker/README.md":        0o644,
		"etc/flocker":                            os.ModeDir | 0o700,
	} {
		if got := mode(t, filepath.Join(dest, path)); got != want {
			t.Errorf("%s: mode %v, want %v", path, got, want)
		}
	}
	unit, err := os.ReadFile(filepath.Join(dest, "usr/lib/systemd/system/flocker.service"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "\nExecStart=/usr/sbin/flocker agent --config /etc/flocker/flocker.ini") ||
		strings.Contains(string(unit), "/usr/local") {
		t.Errorf("installed unit does not run /usr/sbin/flocker:\n%s", unit)
	}
	out, err := exec.Command(filepath.Join(dest, "usr/sbin/flocker"), "version").CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) == 0 {
		t.Errorf("installed binary: %v %s", err, out)
	}
	if entries, _ := os.ReadDir(filepath.Join(dest, "etc/flocker")); len(entries) != 0 {
		t.Errorf("install wrote into the config directory: %v", entries)
	}
}

// TestUnitVerifies: systemd-analyze verify accepts the installed unit
// without a warning (it warns about unknown keys, bad values and a missing
// binary, and exits 0 for some of them: stderr must be empty too), and the
// unit keeps the capabilities eBPF, ZFS and the floating address need.
func TestUnitVerifies(t *testing.T) {
	_, err := exec.LookPath("systemd-analyze")
	testutil.RequireNoError(t, "systemd-analyze (systemd)", err)
	prefix := t.TempDir()
	makeInstall(t, "PREFIX="+prefix, "SYSCONFDIR="+filepath.Join(prefix, "etc"), "BIN="+filepath.Join(prefix, "build", "flocker"))
	unit := filepath.Join(prefix, "lib/systemd/system/flocker.service")
	cmd := exec.Command("systemd-analyze", "verify", unit)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil || stderr.Len() > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, stderr.Bytes())
	}
	text, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	var caps string
	for _, line := range strings.Split(string(text), "\n") {
		if v, ok := strings.CutPrefix(line, "CapabilityBoundingSet="); ok {
			caps = v
		}
	}
	for _, c := range []string{"CAP_SYS_ADMIN", "CAP_BPF", "CAP_PERFMON", "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_SYS_RESOURCE"} {
		if !strings.Contains(" "+caps+" ", " "+c+" ") {
			t.Errorf("CapabilityBoundingSet lacks %s: %q", c, caps)
		}
	}
	// A private mount namespace would hide the agent's ZFS mounts from the
	// host (see the unit's comment).
	for _, key := range []string{"ProtectSystem=", "PrivateTmp=", "ProtectHome=", "ReadWritePaths=", "PrivateDevices="} {
		if strings.Contains(string(text), "\n"+key) {
			t.Errorf("the unit sets %s: the agent's ZFS mounts would not reach the host", key)
		}
	}
}
