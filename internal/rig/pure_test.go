package rig

import (
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestUnescapeMount(t *testing.T) {
	cases := map[string]string{
		`/tmp/plain`:          "/tmp/plain",
		`/tmp/with\040space`:  "/tmp/with space",
		`/tmp/tab\011and\134`: "/tmp/tab\tand\\",
		`/tmp/not\08octal`:    `/tmp/not\08octal`,
		`/tmp/short\04`:       `/tmp/short\04`,
	}
	for in, want := range cases {
		if got := unescapeMount(in); got != want {
			t.Errorf("unescapeMount(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCheckChildName(t *testing.T) {
	for _, ok := range []string{"app", "app/db", "a.b", "a-b_c:d"} {
		if err := checkChildName(ok); err != nil {
			t.Errorf("checkChildName(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "/app", "app/", "a//b", "..", "a/../b", "./a", "a@s", "a#b", "a b"} {
		if err := checkChildName(bad); err == nil {
			t.Errorf("checkChildName(%q) accepted a bad name", bad)
		}
	}
}

func TestNewIDIsUniqueAndNamesThePID(t *testing.T) {
	re := regexp.MustCompile(`^(\d+)-\d+-[0-9a-f]{6}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := newID()
		m := re.FindStringSubmatch(id)
		if m == nil || m[1] != strconv.Itoa(os.Getpid()) {
			t.Fatalf("id %q: want <pid>-<n>-<6 hex>", id)
		}
		if seen[id] {
			t.Fatalf("id %q repeated", id)
		}
		seen[id] = true
	}
}

func TestProcessNameOfSelf(t *testing.T) {
	comm, err := os.ReadFile("/proc/self/comm")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := processName(os.Getpid()), string(comm[:len(comm)-1]); got != want {
		t.Errorf("processName(self) = %q, want %q", got, want)
	}
	if got := processName(1 << 30); got != "" {
		t.Errorf("processName(no such pid) = %q, want empty", got)
	}
}

func TestProbeMountsKstatAndPoolRoots(t *testing.T) {
	const base = `22 1 0:21 / /proc rw - proc proc rw
90 22 0:50 / /zfs-kstat rw,nosuid - fuse kstat rw,user_id=0
91 22 0:51 / /tmp/r-1/mnt rw - fuse.zfs flkrig-1 rw
92 91 0:52 / /tmp/r-1/mnt/app rw - fuse.zfs flkrig-1/app rw
93 91 0:53 / /tmp/r-1/mnt/flocker-stash/app-0-20261121T233751Z rw - fuse.zfs flkrig-1/flocker-stash/app-0-20261121T233751Z rw
94 22 0:54 / /tmp/my\040pool/mnt rw - fuse.zfs flkrig-2 rw
95 22 0:55 / /mnt/other rw - fuse sshfs rw
`
	got, err := probeMountsIn(base)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	if want := []string{"/tmp/my pool/mnt", "/tmp/r-1/mnt", "/zfs-kstat"}; !slices.Equal(got, want) {
		t.Errorf("probes %q, want kstat and the pool roots %q (no dataset below a root)", got, want)
	}
}

func probeMountsIn(mountinfo string) ([]string, error) {
	paths, sources, err := parseDaemonMounts(strings.NewReader(mountinfo))
	return pickProbes(paths, sources), err
}
