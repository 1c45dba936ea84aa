package bpf

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/flockerha/flocker/internal/testutil"
)

// The committed objects must come out byte-identical from any checkout path
// (CI clones elsewhere) and on every run, or `make generate-check` fails for
// reasons that have nothing to do with the sources. This regenerates them in
// a temporary copy of the module (a different path) and compares.
func TestGenerateIsReproducibleAcrossPaths(t *testing.T) {
	for _, tool := range []string{"clang-14", "llvm-strip-14", "go"} {
		_, err := exec.LookPath(tool)
		testutil.RequireNoError(t, tool+" in PATH (make setup installs it)", err)
	}
	committed, err := filepath.Glob("*_bpfel.*")
	if err != nil || len(committed) == 0 {
		t.Fatalf("no committed generated files (%v)", err)
	}

	mod := filepath.Join(t.TempDir(), "elsewhere", "flocker")
	copyTree(t, "..", mod, func(rel string) bool {
		return rel == "go.mod" || rel == "go.sum" ||
			(strings.HasPrefix(rel, "bpf"+string(filepath.Separator)) && !strings.Contains(rel, "_bpfel."))
	})
	cmd := exec.Command("go", "generate", "./bpf/...")
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "BPF_CLANG=clang-14", "BPF_STRIP=llvm-strip-14")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go generate in %s: %v\n%s", mod, err, out)
	}

	for _, name := range committed {
		want, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(mod, "bpf", name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s generated in %s differs from the committed file: stale (run make generate) or path-dependent", name, mod)
		}
	}
	fresh, _ := filepath.Glob(filepath.Join(mod, "bpf", "*_bpfel.*"))
	if len(fresh) != len(committed) {
		t.Errorf("generate made %d files, %d are committed", len(fresh), len(committed))
	}
}

// copyTree copies the regular files under src for which keep(relative path) holds.
func copyTree(t *testing.T, src, dst string, keep func(rel string) bool) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		if d.IsDir() {
			if rel == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() || !keep(rel) {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dst, rel)), 0o755); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatalf("copying %s to %s: %v", src, dst, err)
	}
}
