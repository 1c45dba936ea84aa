package snapshot

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// allFeatures is a dialect with everything, so that only name checks stand
// between a call and its exec.
var allFeatures = Dialect{Name: DialectOpenZFS, Version: "2.3.2", Features: Features{
	ListParsable: true, Bookmarks: true, ResumableReceive: true, Holds: true, WrittenProperty: true,
	SendDryRunParsable: true, HoldsList: true, MultiSnapshot: true, DestroySnapshotList: true,
	SetMultiple: true, ReceiveProperties: true, ReceiveNoMount: true, SendCompressed: true, SendLargeBlocks: true,
}}

// zfsFuseDialect is what Detect finds on this host's zfs-fuse (asserted by
// TestDetectZFSFuse).
var zfsFuseDialect = Dialect{Name: DialectZFSFuse, PoolVersion: 23, Features: Features{Holds: true, ReceiveNoMount: true}}

// kernelZFSEnv is set in the VM guest (TestOpenZFSInGuest), where ZFS is
// OpenZFS's kernel module: tests expect OpenZFS there, and make their pools
// without holding the zfs-fuse daemon.
const kernelZFSEnv = "FLOCKER_TEST_KERNEL_ZFS"

func TestShortFlags(t *testing.T) {
	for in, want := range map[string]string{
		"[-Hp] [-r|-d max] [-o property[,...]]": "H p r d o",
		"[-RDp] [-[iI] snapshot] <snapshot>":    "R D p i I",
		"[-DnP] [-[i|I] snapshot] --redact <b>": "D n P i I",
		"<-a | filesystem|mountpoint>":          "a",
		"[-rH][-d max]":                         "r H d",
		"user-defined <pool-name> a-b":          "",
		"--saved filesystem":                    "",
		"-V <size> <volume>":                    "V",
	} {
		if got := strings.Join(shortFlags(in), " "); got != want {
			t.Errorf("shortFlags(%q) = %q, want %q", in, got, want)
		}
	}
}

// The synopsis shapes below follow the two tools' usage layouts: a tab, the
// command, its flags, and continuation lines indented further.
func TestParseUsage(t *testing.T) {
	text := "usage: zfs command args ...\nwhere 'command' is one of the following:\n\n" +
		"\tversion\n\n" +
		"\tlist [-Hp] [-r|-d max] [-o property[,...]]\n\t    [-S property]... [-t type[,...]] [filesystem] ...\n" +
		"\treceive [-vnsF] [-o <property>=<value>] ...\n\t    <filesystem|volume|snapshot>\n" +
		"\treceive -A <filesystem|volume>\n" +
		"\tsend [-DnPp] [-[i|I] snapshot] <snapshot>\n\tsend [-nP] -t <receive_resume_token>\n" +
		"\tbookmark <snapshot> <newbookmark>\n" +
		"\nEach dataset is of the form: pool/[dataset/]*dataset[@name]\n"
	got := parseUsage(text)
	want := map[string]string{
		"version":  "",
		"list":     "H S d o p r t",
		"receive":  "A F n o s v",
		"send":     "D I P i n p t",
		"bookmark": "",
	}
	if k := slices.Sorted(maps.Keys(got)); !slices.Equal(k, slices.Sorted(maps.Keys(want))) {
		t.Fatalf("commands %v, want %v", k, slices.Sorted(maps.Keys(want)))
	}
	for cmd, flags := range want {
		if g := strings.Join(slices.Sorted(maps.Keys(got[cmd])), " "); g != flags {
			t.Errorf("%s flags %q, want %q", cmd, g, flags)
		}
	}
}

func TestParseProperties(t *testing.T) {
	text := "missing property argument\nusage:\n\tget [-rHp] <\"all\" | property[,...]>\n\n" +
		"The following properties are supported:\n\n" +
		"\tPROPERTY       EDIT  INHERIT   VALUES\n\n" +
		"\tavailable        NO       NO   <size>\n" +
		"\twritten          NO       NO   <size>\n" +
		"\tusedbyrefreservation  NO       NO   <size>\n" +
		"\nSizes are specified in bytes with standard units such as K, M, G, etc.\n"
	got := slices.Sorted(maps.Keys(parseProperties(text)))
	if want := []string{"available", "usedbyrefreservation", "written"}; !slices.Equal(got, want) {
		t.Errorf("properties %v, want %v", got, want)
	}
	if p := parseProperties("no table here"); len(p) != 0 {
		t.Errorf("properties from text without a table: %v", p)
	}
}

func TestParseZFSVersion(t *testing.T) {
	for in, want := range map[string]string{
		"zfs-2.3.2-1\nzfs-kmod-2.3.2-1\n":     "2.3.2",
		"zfs-2.3.2-1~bpo12+1\n":               "2.3.2",
		"zfs-0.8.6-1\nzfs-kmod-0.8.6-1\n":     "0.8.6",
		"unrecognized command 'version'\n":    "",
		"zfs-kmod-2.3.2-1\n":                  "",
		"could not read zfs version\nzfs-x\n": "",
	} {
		got, ok := parseZFSVersion(in)
		if got != want || ok != (want != "") {
			t.Errorf("parseZFSVersion(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestParsePoolVersions(t *testing.T) {
	v, flags, err := parsePoolVersions("This system is currently running ZFS pool version 23.\n\nThe following versions are supported:\n")
	if err != nil || v != 23 || flags {
		t.Errorf("legacy: %d %v %v", v, flags, err)
	}
	v, flags, err = parsePoolVersions("This system supports ZFS pool feature flags.\n\nThe following features are supported:\n")
	if err != nil || v != 0 || !flags {
		t.Errorf("feature flags: %d %v %v", v, flags, err)
	}
	if _, _, err := parsePoolVersions("something else\n"); err == nil || !strings.Contains(err.Error(), "something else") {
		t.Errorf("unrecognized output: want an error quoting it, got %v", err)
	}
}

// Detect on the real ZFS: zfs-fuse 0.7 (pool version 23) on this host, or
// OpenZFS 2.3 with everything when TestOpenZFSInGuest runs this in a guest.
func TestDetect(t *testing.T) {
	cli := requireZFSFuse(t)
	d, err := cli.Detect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := zfsFuseDialect
	if os.Getenv(kernelZFSEnv) != "" {
		want = allFeatures
		want.Version = d.Version
		if !strings.HasPrefix(d.Version, "2.3.") {
			t.Errorf("OpenZFS version %q, want 2.3.x", d.Version)
		}
	}
	if d != want {
		t.Errorf("Detect = %+v\nwant     %+v", d, want)
	}
}

// The features the usage texts both dialects printed (captured by
// capture.sh) show; HoldsList is asked of the tool, not read, and so is
// receive -u where the usage lacks it (zfs-fuse).
func TestFeaturesFromCapturedUsage(t *testing.T) {
	for dialect, want := range map[string]Features{
		DialectZFSFuse: {Holds: true},
		DialectOpenZFS: func() Features { f := allFeatures.Features; f.HoldsList = false; return f }(),
	} {
		dir := filepath.Join("testdata", "stderr", dialect)
		usage, err1 := os.ReadFile(filepath.Join(dir, "usage.out"))
		getUsage, err2 := os.ReadFile(filepath.Join(dir, "get-usage.out"))
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		got, err := featuresFromUsage(string(usage), string(getUsage))
		if err != nil || got != want {
			t.Errorf("%s: %+v %v\nwant %+v", dialect, got, err, want)
		}
	}
	if _, err := featuresFromUsage("nothing", "nothing"); err == nil {
		t.Error("features from text without usage")
	}
}

// Each detected feature must agree with what the tool does when actually
// given that option, command or property: the usage text is only trusted
// because these direct asks give the same answer. The commands are harmless:
// they stop at argument checking or name a dataset that does not exist.
func TestDetectAgreesWithTheTool(t *testing.T) {
	cli := requireZFSFuse(t)
	ctx := context.Background()
	d, err := cli.Detect(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// accepts reports whether the tool took the arguments: it ran, or it
	// failed for a reason other than an unknown option/command/property.
	accepts := func(args ...string) bool {
		out, err := cli.ZFS(ctx, args...)
		ce := asCmdError(err)
		if err != nil && ce == nil {
			t.Fatalf("zfs %v: %v", args, err)
		}
		if err == nil {
			return true
		}
		// "invalid dataset name": zfs-fuse reading the second of several
		// operands, or a comma list, as one dataset; "too many arguments":
		// one operand only; pyzfs: zfs-fuse's holds (on stdout).
		for _, refusal := range []string{"invalid option", "unrecognized command", "invalid property", "invalid dataset name", "too many arguments", "pyzfs"} {
			if strings.Contains(ce.Stderr+ce.Error(), refusal) || strings.Contains(string(out), refusal) {
				return false
			}
		}
		return true
	}
	missing := "flocker-no-such-pool-" + strings.ReplaceAll(t.Name(), "/", "-")
	for name, c := range map[string]struct {
		detected bool
		tool     bool
	}{
		"list_p":                {d.Features.ListParsable, accepts("list", "-p", "-H", "-o", "name", missing)},
		"bookmarks":             {d.Features.Bookmarks, accepts("bookmark")},
		"resumable_receive":     {d.Features.ResumableReceive, accepts("receive", "-s") && accepts("send", "-t", "x")},
		"holds":                 {d.Features.Holds, accepts("hold") && accepts("release")},
		"written_property":      {d.Features.WrittenProperty, accepts("get", "-H", "-o", "value", "written", missing)},
		"send_dryrun_parsable":  {d.Features.SendDryRunParsable, accepts("send", "-n", "-P")},
		"holds_list":            {d.Features.HoldsList, accepts("holds", "-H", missing+"@x")},
		"snapshot_multi":        {d.Features.MultiSnapshot, accepts("snapshot", missing+"@x", missing+"/y@x")},
		"destroy_snapshot_list": {d.Features.DestroySnapshotList, accepts("destroy", missing+"@a,b")},
		"set_multi":             {d.Features.SetMultiple, accepts("set", "flocker:a=1", "flocker:b=2", missing)},
		"receive_o":             {d.Features.ReceiveProperties, accepts("receive", "-o", "readonly=on", missing)},
		"receive_u":             {d.Features.ReceiveNoMount, accepts("receive", "-u", missing)},
		"send_c":                {d.Features.SendCompressed, accepts("send", "-c", missing+"@x")},
		"send_L":                {d.Features.SendLargeBlocks, accepts("send", "-L", missing+"@x")},
	} {
		if c.detected != c.tool {
			t.Errorf("%s: detected %v, but the tool accepting it says %v", name, c.detected, c.tool)
		}
	}
}

func TestDetectWithoutZFS(t *testing.T) {
	_, err := NewCLI("/nonexistent/zfs", "/nonexistent/zpool", testLog(t)).Detect(context.Background())
	if !errors.Is(err, ErrNoZFS) {
		t.Fatalf("want ErrNoZFS, got %v", err)
	}
}
