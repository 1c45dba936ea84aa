package rig

import (
	"os"
	"regexp"
	"strconv"
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
