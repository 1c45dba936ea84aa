package chaos

import (
	"net/netip"
	"strings"
	"testing"
)

func TestRuleset(t *testing.T) {
	peer := []netip.Addr{netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("2001:db8::2")}
	for _, tc := range []struct {
		cut  Cut
		want []string // lines that must be there
		not  []string // and must not
	}{
		{DropBoth, []string{"hook input", "ip saddr 192.0.2.2 drop", "ip6 saddr 2001:db8::2 drop",
			"hook output", "ip daddr 192.0.2.2 drop", "ip6 daddr 2001:db8::2 drop"}, nil},
		{DropOut, []string{"hook output", "ip daddr 192.0.2.2 drop", "ip6 daddr 2001:db8::2 drop"},
			[]string{"hook input", "saddr"}},
		{DropIn, []string{"hook input", "ip saddr 192.0.2.2 drop", "ip6 saddr 2001:db8::2 drop"},
			[]string{"hook output", "daddr"}},
	} {
		got := tc.cut.Ruleset(peer...)
		if !strings.HasPrefix(got, "table inet "+table+" {\n") || !strings.HasSuffix(got, "}\n") {
			t.Errorf("%v: not one table:\n%s", tc.cut, got)
		}
		for _, w := range tc.want {
			if !strings.Contains(got, w) {
				t.Errorf("%v: lacks %q:\n%s", tc.cut, w, got)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(got, n) {
				t.Errorf("%v: has %q:\n%s", tc.cut, n, got)
			}
		}
	}
	if got := CableOut.Ruleset(peer...); got != "" {
		t.Errorf("cable-out is not an nftables cut, got:\n%s", got)
	}
}

func TestUnescape(t *testing.T) {
	for in, want := range map[string]string{
		`/tmp/a`:             "/tmp/a",
		`/tmp/with\040space`: "/tmp/with space",
		`/tmp/tab\011x\134y`: "/tmp/tab\tx\\y",
		`/tmp/trailing\04`:   `/tmp/trailing\04`,
	} {
		if got := unescape(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}
