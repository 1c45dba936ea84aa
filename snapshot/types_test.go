package snapshot

import (
	"strings"
	"testing"
)

func TestFlockerNameRoundTrip(t *testing.T) {
	for _, n := range []FlockerName{{0, 0}, {1, 1}, {7, 42}, {1<<64 - 1, 1<<64 - 1}} {
		got, err := ParseFlockerName(n.String())
		if err != nil {
			t.Fatalf("ParseFlockerName(%q): %v", n.String(), err)
		}
		if got != n {
			t.Fatalf("ParseFlockerName(%q) = %+v, want %+v", n.String(), got, n)
		}
	}
	if got := (FlockerName{Epoch: 7, Seq: 42}).String(); got != "flocker-7-42" {
		t.Fatalf("String = %q", got)
	}
}

func TestParseFlockerNameRejects(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "does not start with"},
		{"hourly-1-2", "does not start with"},
		{"Flocker-1-2", "does not start with"},
		{"flocker-", "want flocker-<epoch>-<seq>"},
		{"flocker-1", "want flocker-<epoch>-<seq>"},
		{"flocker--2", "epoch: empty number"},
		{"flocker-1-", "sequence: empty number"},
		{"flocker-01-2", "epoch: \"01\" has a leading zero"},
		{"flocker-1-02", "sequence: \"02\" has a leading zero"},
		{"flocker-+1-2", "epoch: \"+1\" is not a decimal number"},
		{"flocker-1-2-before-upgrade", "sequence: \"2-before-upgrade\" is not a decimal number"},
		{"flocker-1-2 ", "is not a decimal number"},
		{"flocker-18446744073709551616-1", "epoch: \"18446744073709551616\" out of range"},
	} {
		_, err := ParseFlockerName(tc.in)
		if err == nil {
			t.Errorf("ParseFlockerName(%q) accepted", tc.in)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), tc.in) {
			t.Errorf("ParseFlockerName(%q) = %q, want it to name the input and say %q", tc.in, err, tc.want)
		}
		if IsFlockerName(tc.in) {
			t.Errorf("IsFlockerName(%q) = true", tc.in)
		}
	}
}

func TestSnapshotOursAndShortName(t *testing.T) {
	for _, tc := range []struct {
		name  string
		short string
		ours  bool
	}{
		{"tank/app@flocker-3-9", "flocker-3-9", true},
		{"tank/app@flocker-03-9", "flocker-03-9", false},
		{"tank/app@manual", "manual", false},
		{"flocker-3-9", "flocker-3-9", false}, // no dataset: not a snapshot name
		{"@flocker-3-9", "flocker-3-9", false},
		{"tank/app#flocker-3-9", "tank/app#flocker-3-9", false},
	} {
		s := Snapshot{Name: tc.name}
		if got := s.ShortName(); got != tc.short {
			t.Errorf("%q.ShortName() = %q, want %q", tc.name, got, tc.short)
		}
		if got := s.Ours(); got != tc.ours {
			t.Errorf("%q.Ours() = %t, want %t", tc.name, got, tc.ours)
		}
	}
}
