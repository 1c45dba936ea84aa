package main

import (
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/flockerha/flocker/internal/testutil"
)

func keys(m map[string]any) []string { return slices.Sorted(maps.Keys(m)) }

func object(t *testing.T, v any, where string) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	if !ok {
		t.Fatalf("%s: want an object, got %T", where, v)
	}
	return m
}

func wantKeys(t *testing.T, m map[string]any, where string, want ...string) {
	t.Helper()
	slices.Sort(want)
	if got := keys(m); !slices.Equal(got, want) {
		t.Errorf("%s keys %v, want %v", where, got, want)
	}
}

// `flocker probe --json` prints exactly the documented shape.
func TestProbeJSON(t *testing.T) {
	testutil.RequireRoot(t)
	code, stdout, stderr := runCLI(t, "probe", "--json", "--mountpoint", t.TempDir())
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var doc map[string]any
	if err := json.Unmarshal([]byte(stdout), &doc); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, stdout)
	}
	wantKeys(t, doc, "report", "kernel", "tiers", "zfs", "selection")
	// A temporary directory is no mount root: nothing can watch it.
	sel := object(t, doc["selection"], "selection")
	wantKeys(t, sel, "selection", "mountpoint", "tier", "refused", "error")
	if e, _ := sel["error"].(string); !strings.Contains(e, "not a mounted filesystem") || sel["tier"] != "" {
		t.Errorf("selection for a plain directory: %v", sel)
	}

	kernel := object(t, doc["kernel"], "kernel")
	features := []string{"btf", "ringbuf", "tp_btf", "tracepoint", "raw_tracepoint", "fentry", "fexit",
		"kprobe", "lsm", "block_tracepoint", "fanotify", "fanotify_fid"}
	wantKeys(t, kernel, "kernel", append([]string{"release", "mountpoint"}, features...)...)
	for _, f := range features {
		wantKeys(t, object(t, kernel[f], f), "kernel."+f, "available", "reason")
	}
	wantKeys(t, object(t, kernel["mountpoint"], "mountpoint"), "kernel.mountpoint", "path", "fsid")

	tiers, ok := doc["tiers"].([]any)
	if !ok {
		t.Fatalf("tiers: want an array, got %T", doc["tiers"])
	}
	var names []string
	for i, tier := range tiers {
		m := object(t, tier, "tier")
		wantKeys(t, m, "tiers[]", "name", "available", "reason")
		name, _ := m["name"].(string)
		names = append(names, name)
		if i == len(tiers)-1 && m["available"] != true {
			t.Errorf("the last tier (%s) must always be available", name)
		}
	}
	if want := []string{"fentry", "kprobe", "tracepoint", "block", "fanotify", "timer"}; !slices.Equal(names, want) {
		t.Errorf("tiers %v, want %v", names, want)
	}

	zfs := object(t, doc["zfs"], "zfs")
	if _, hasReason := zfs["reason"]; hasReason { // only when no ZFS answered
		wantKeys(t, zfs, "zfs", "dialect", "version", "features", "reason")
	} else {
		wantKeys(t, zfs, "zfs", "dialect", "version", "features")
	}
	wantKeys(t, object(t, zfs["features"], "zfs.features"), "zfs.features",
		"list_p", "bookmarks", "resumable_receive", "holds", "written_property", "send_dryrun_parsable",
		"holds_list", "snapshot_multi", "destroy_snapshot_list", "set_multi", "receive_o", "receive_u", "send_c", "send_L")
}

func TestProbeText(t *testing.T) {
	testutil.RequireRoot(t)
	code, stdout, stderr := runCLI(t, "probe")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, want := range []string{"kernel ", "FEATURE", "tp_btf", "notifier tiers (best first)", "timer", "zfs "} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
}

func TestProbeMissingMountpointIsUsageError(t *testing.T) {
	code, _, stderr := runCLI(t, "probe", "--mountpoint", "/nonexistent/flocker-mnt")
	if code != exitUsage || !strings.Contains(stderr, "/nonexistent/flocker-mnt") {
		t.Fatalf("code=%d stderr=%q", code, stderr)
	}
}

func TestProbeStrayArgumentIsUsageError(t *testing.T) {
	code, _, stderr := runCLI(t, "probe", "extra")
	if code != exitUsage || !strings.Contains(stderr, `"extra"`) {
		t.Fatalf("code=%d stderr=%q", code, stderr)
	}
}
