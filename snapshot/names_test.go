package snapshot

import (
	"errors"
	"strings"
	"testing"
)

func TestValidateDataset(t *testing.T) {
	long := "tank/" + strings.Repeat("a", MaxNameLen-len("tank/"))
	cases := []struct {
		name string
		err  string // "" = valid; otherwise the exact error text
	}{
		{"tank", ""},
		{"tank/app", ""},
		{"Tank2/app_1/db-x/v1.2:blue", ""},
		{long, ""},
		{"", `invalid ZFS dataset "": empty`},
		{long + "b", `invalid ZFS dataset "` + long + `b": 256 bytes, longer than the 255 ZFS allows`},
		{"/tank/app", `invalid ZFS dataset "/tank/app": leading '/' (a dataset name is not a mountpoint)`},
		{"tank/app/", `invalid ZFS dataset "tank/app/": trailing '/'`},
		{"tank//app", `invalid ZFS dataset "tank//app": component 2 (""): empty component`},
		{"tank/./app", `invalid ZFS dataset "tank/./app": component 2 ("."): "." is a reserved path component`},
		{"tank/..", `invalid ZFS dataset "tank/..": component 2 (".."): ".." is a reserved path component`},
		{"tank/app@snap", `invalid ZFS dataset "tank/app@snap": '@' is a snapshot or bookmark delimiter, not allowed in a dataset name`},
		{"tank/app#bm", `invalid ZFS dataset "tank/app#bm": '#' is a snapshot or bookmark delimiter, not allowed in a dataset name`},
		{"tank/my app", `invalid ZFS dataset "tank/my app": component 2 ("my app"): character ' ' not allowed (only letters, digits and _-.:)`},
		{"tank/app\n", `invalid ZFS dataset "tank/app\n": component 2 ("app\n"): character '\n' not allowed (only letters, digits and _-.:)`},
		{"tank/%recv", `invalid ZFS dataset "tank/%recv": component 2 ("%recv"): character '%' not allowed (only letters, digits and _-.:)`},
		{"tank/a;rm", `invalid ZFS dataset "tank/a;rm": component 2 ("a;rm"): character ';' not allowed (only letters, digits and _-.:)`},
		{"tank/$(id)", `invalid ZFS dataset "tank/$(id)": component 2 ("$(id)"): character '$' not allowed (only letters, digits and _-.:)`},
		{"tank/a`b`", `invalid ZFS dataset "tank/a` + "`b`" + `": component 2 ("a` + "`b`" + `"): character '` + "`" + `' not allowed (only letters, digits and _-.:)`},
		{"tank/é", `invalid ZFS dataset "tank/é": component 2 ("é"): character 'é' not allowed (only letters, digits and _-.:)`},
		{"-R", `invalid ZFS dataset "-R": component 1 ("-R"): leading '-' (would read as a command-line option)`},
		{"tank/-x", `invalid ZFS dataset "tank/-x": component 2 ("-x"): leading '-' (would read as a command-line option)`},
		{"1tank/app", `invalid ZFS dataset "1tank/app": pool name "1tank" must begin with a letter`},
		{"mirror/app", `invalid ZFS dataset "mirror/app": pool name "mirror" is reserved`},
		{"raidz", `invalid ZFS dataset "raidz": pool name "raidz" is reserved`},
	}
	for _, c := range cases {
		err := ValidateDataset(c.name)
		checkNameErr(t, "ValidateDataset", c.name, err, c.err)
	}
}

func TestValidateSnapshot(t *testing.T) {
	cases := []struct {
		name string
		err  string
	}{
		{"tank/app@flocker-7-12", ""},
		{"tank@a:b.c_d", ""},
		{"tank/app", `invalid ZFS snapshot "tank/app": missing '@' between dataset and snapshot name`},
		{"tank/app@", `invalid ZFS snapshot "tank/app@": snapshot part: empty component`},
		{"@snap", `invalid ZFS snapshot "@snap": dataset part: empty`},
		{"tank/app@a@b", `invalid ZFS snapshot "tank/app@a@b": snapshot part: '@' not allowed after the '@' delimiter`},
		{"tank/app@a/b", `invalid ZFS snapshot "tank/app@a/b": snapshot part: '/' not allowed after the '@' delimiter`},
		{"tank/app@a#b", `invalid ZFS snapshot "tank/app@a#b": snapshot part: '#' not allowed after the '@' delimiter`},
		{"tank/app@-r", `invalid ZFS snapshot "tank/app@-r": snapshot part: leading '-' (would read as a command-line option)`},
		{"tank/app@..", `invalid ZFS snapshot "tank/app@..": snapshot part: ".." is a reserved path component`},
		{"tank/app@a b", `invalid ZFS snapshot "tank/app@a b": snapshot part: character ' ' not allowed (only letters, digits and _-.:)`},
		{"tank/app@a|b", `invalid ZFS snapshot "tank/app@a|b": snapshot part: character '|' not allowed (only letters, digits and _-.:)`},
		{"tank/./x@s", `invalid ZFS snapshot "tank/./x@s": dataset part: component 2 ("."): "." is a reserved path component`},
		{"tank/" + strings.Repeat("a", 200) + "@" + strings.Repeat("b", 60),
			`invalid ZFS snapshot "tank/` + strings.Repeat("a", 200) + "@" + strings.Repeat("b", 60) + `": 266 bytes, longer than the 255 ZFS allows`},
	}
	for _, c := range cases {
		checkNameErr(t, "ValidateSnapshot", c.name, ValidateSnapshot(c.name), c.err)
	}
}

func TestValidateSnapshotName(t *testing.T) {
	cases := []struct {
		name string
		err  string
	}{
		{"flocker-1-2", ""},
		{"", `invalid ZFS snapshot name "": empty component`},
		{"a/b", `invalid ZFS snapshot name "a/b": '/' not allowed after the '@' delimiter`},
		{"-d", `invalid ZFS snapshot name "-d": leading '-' (would read as a command-line option)`},
		{"a*", `invalid ZFS snapshot name "a*": character '*' not allowed (only letters, digits and _-.:)`},
	}
	for _, c := range cases {
		checkNameErr(t, "ValidateSnapshotName", c.name, ValidateSnapshotName(c.name), c.err)
	}
}

func checkNameErr(t *testing.T, fn, name string, err error, want string) {
	t.Helper()
	if want == "" {
		if err != nil {
			t.Errorf("%s(%q) = %v, want valid", fn, name, err)
		}
		return
	}
	if err == nil {
		t.Errorf("%s(%q) = nil, want %s", fn, name, want)
		return
	}
	if err.Error() != want {
		t.Errorf("%s(%q):\n got %s\nwant %s", fn, name, err, want)
	}
	var ne *NameError
	if !errors.As(err, &ne) || ne.Name != name {
		t.Errorf("%s(%q): error %T does not carry the name", fn, name, err)
	}
}
