package treesum

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSum(t *testing.T) {
	mk := func(files map[string]string) string {
		dir := t.TempDir()
		for p, c := range files {
			full := filepath.Join(dir, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	base := map[string]string{"a": "1", "d/b": "2"}
	sum := func(dir string) string {
		s, err := Sum(dir)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	want := sum(mk(base))
	if got := sum(mk(base)); got != want {
		t.Errorf("same tree, different sums: %s %s", got, want)
	}
	for name, files := range map[string]map[string]string{
		"content": {"a": "x", "d/b": "2"},
		"name":    {"a2": "1", "d/b": "2"},
		"extra":   {"a": "1", "d/b": "2", "c": ""},
		"missing": {"a": "1"},
	} {
		if sum(mk(files)) == want {
			t.Errorf("%s changed but the sum did not", name)
		}
	}
	dir := mk(base)
	if err := os.Chmod(filepath.Join(dir, "a"), 0o600); err != nil {
		t.Fatal(err)
	}
	if sum(dir) == want {
		t.Error("mode changed but the sum did not")
	}
	if _, err := Sum(filepath.Join(dir, "nope")); err == nil {
		t.Error("Sum of a missing directory succeeded")
	}
}
