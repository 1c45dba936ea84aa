package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden .json and .err files from the current output")

// TestGoldenValid parses every testdata/valid/*.ini and compares the decoded
// Config with the .json beside it.
func TestGoldenValid(t *testing.T) {
	files := goldenInputs(t, "testdata/valid")
	for _, in := range files {
		t.Run(filepath.Base(in), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Parse(in, data)
			if err != nil {
				t.Fatalf("Parse:\n%v", err)
			}
			compareGolden(t, strings.TrimSuffix(in, ".ini")+".json", describe(t, c))
		})
	}
}

// TestGoldenInvalid parses every testdata/invalid/*.ini and compares the full
// problem list with the .err beside it.
func TestGoldenInvalid(t *testing.T) {
	files := goldenInputs(t, "testdata/invalid")
	for _, in := range files {
		t.Run(filepath.Base(in), func(t *testing.T) {
			data, err := os.ReadFile(in)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Parse(in, data)
			if err == nil {
				t.Fatalf("Parse accepted an invalid file: %+v", c)
			}
			var probs Problems
			if !errors.As(err, &probs) || len(probs) == 0 {
				t.Fatalf("error %T is not Problems: %v", err, err)
			}
			for _, p := range probs {
				if p.File != in {
					t.Errorf("problem %q names file %q", p, p.File)
				}
			}
			compareGolden(t, strings.TrimSuffix(in, ".ini")+".err", []byte(err.Error()+"\n"))
		})
	}
}

// TestGoldenCoversEveryKey keeps the valid files honest as keys are added:
// each key of the schema must be decoded by at least one of them.
func TestGoldenCoversEveryKey(t *testing.T) {
	seen := map[string]bool{}
	for _, in := range goldenInputs(t, "testdata/valid") {
		data, err := os.ReadFile(in)
		if err != nil {
			t.Fatal(err)
		}
		c, err := Parse(in, data)
		if err != nil {
			t.Fatal(err)
		}
		for sec, keys := range c.src.keys {
			if datasetHeader.MatchString(sec) {
				sec = datasetKind
			}
			for k := range keys {
				seen[sec+"."+k] = true
			}
		}
	}
	for kind, fields := range schema {
		for _, f := range fields {
			if !seen[kind+"."+f.key] {
				t.Errorf("no valid golden file sets [%s] %s", kind, f.key)
			}
		}
	}
}

func goldenInputs(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.ini"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden inputs in %s: %v", dir, err)
	}
	sort.Strings(files)
	return files
}

// describe renders a Config as indented JSON with durations spelled out.
func describe(t *testing.T, c *Config) []byte {
	t.Helper()
	raw, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber() // keep a 64-bit epoch exact
	if err := dec.Decode(&m); err != nil {
		t.Fatal(err)
	}
	fo := m["failover"].(map[string]any)
	fo["heartbeat"] = c.Failover.Heartbeat.String()
	fo["timeout"] = c.Failover.Timeout.String()
	sn := m["snapshot"].(map[string]any)
	sn["min_interval"] = c.Snapshot.MinInterval.String()
	sn["retention"] = c.Snapshot.Retention.String()
	m["notify"].(map[string]any)["interval"] = c.Notify.Interval.String()
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(out, '\n')
}

func compareGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs (go test -update rewrites it):\n--- got\n%s--- want\n%s", path, got, want)
	}
}
