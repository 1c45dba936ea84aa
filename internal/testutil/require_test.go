package testutil

import (
	"errors"
	"testing"
)

// recorder stands in for *testing.T to observe which way Require went.
type recorder struct {
	testing.TB
	skipped, failed bool
	msg             string
}

func (r *recorder) Helper() {}
func (r *recorder) Skipf(format string, args ...any) {
	r.skipped = true
	r.msg = format
}
func (r *recorder) Fatalf(format string, args ...any) {
	r.failed = true
	r.msg = format
}

func TestRequire(t *testing.T) {
	cases := []struct {
		name               string
		ci                 string
		ok                 bool
		wantSkip, wantFail bool
	}{
		{"available outside CI", "", true, false, false},
		{"available in CI", "true", true, false, false},
		{"missing outside CI skips", "", false, true, false},
		{"missing in CI fails", "true", false, false, true},
		{"CI=false is not CI", "false", false, true, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Setenv("CI", c.ci)
			r := &recorder{TB: t}
			Require(r, c.ok, "kernel lacks %s", "fentry")
			if r.skipped != c.wantSkip || r.failed != c.wantFail {
				t.Fatalf("skipped=%v failed=%v, want skipped=%v failed=%v", r.skipped, r.failed, c.wantSkip, c.wantFail)
			}
		})
	}
}

func TestRequireNoError(t *testing.T) {
	t.Setenv("CI", "true")
	r := &recorder{TB: t}
	RequireNoError(r, "fentry", errors.New("operation not permitted"))
	if !r.failed {
		t.Fatal("a missing feature in CI must fail the test")
	}
	r = &recorder{TB: t}
	RequireNoError(r, "fentry", nil)
	if r.failed || r.skipped {
		t.Fatal("a present feature must neither skip nor fail")
	}
}
