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

func TestValidateBookmark(t *testing.T) {
	cases := []struct {
		name string
		err  string
	}{
		{"tank/app#flocker-base", ""},
		{"tank/app", `invalid ZFS bookmark "tank/app": missing '#' between dataset and bookmark name`},
		{"tank/app#", `invalid ZFS bookmark "tank/app#": bookmark part: empty component`},
		{"tank/app#-x", `invalid ZFS bookmark "tank/app#-x": bookmark part: leading '-' (would read as a command-line option)`},
		{"tank/a b#m", `invalid ZFS bookmark "tank/a b#m": dataset part: component 2 ("a b"): character ' ' not allowed (only letters, digits and _-.:)`},
		{"tank/app#a#b", `invalid ZFS bookmark "tank/app#a#b": bookmark part: '#' not allowed after the '#' delimiter`},
	}
	for _, c := range cases {
		checkNameErr(t, "ValidateBookmark", c.name, ValidateBookmark(c.name), c.err)
	}
}

func TestValidateHoldTagAndProperties(t *testing.T) {
	for _, c := range []struct {
		fn, in string
		err    error
		want   string
	}{
		{"tag", "flocker", ValidateHoldTag("flocker"), ""},
		{"tag", "-r", ValidateHoldTag("-r"), `invalid ZFS hold tag "-r": leading '-' (would read as a command-line option)`},
		{"tag", "a b", ValidateHoldTag("a b"), `invalid ZFS hold tag "a b": character ' ' not allowed (only letters, digits and _-.:)`},
		{"prop", "flocker:epoch", ValidatePropertyName("flocker:epoch"), ""},
		{"prop", "readonly", ValidatePropertyName("readonly"), ""},
		{"prop", "-o", ValidatePropertyName("-o"), `invalid ZFS property "-o": must begin with a lowercase letter`},
		{"prop", "Readonly", ValidatePropertyName("Readonly"), `invalid ZFS property "Readonly": must begin with a lowercase letter`},
		{"prop", "a=b", ValidatePropertyName("a=b"), `invalid ZFS property "a=b": character '=' not allowed (only lowercase letters, digits and _-.:)`},
		{"prop", "", ValidatePropertyName(""), `invalid ZFS property "": empty`},
		{"value", "a:b=/srv/my data", ValidatePropertyValue("a:b", "/srv/my data"), ""},
		{"value", "a:b=x\ny", ValidatePropertyValue("a:b", "x\ny"), `invalid ZFS property value "a:b=x\ny": control character '\n' not allowed`},
		{"value", "a:b=x\ty", ValidatePropertyValue("a:b", "x\ty"), `invalid ZFS property value "a:b=x\ty": control character '\t' not allowed`},
		{"token", "1-b07f2ccfc-b8-789c63", ValidateResumeToken("1-b07f2ccfc-b8-789c63"), ""},
		{"token", "-", ValidateResumeToken("-"), `invalid ZFS resume token "-": empty`},
		{"token", "-t", ValidateResumeToken("-t"), `invalid ZFS resume token "-t": must begin with a digit (the token version)`},
		{"token", "1-ab;cd", ValidateResumeToken("1-ab;cd"), `invalid ZFS resume token "1-ab;cd": character ';' not allowed (only hex digits and '-')`},
	} {
		got := ""
		if c.err != nil {
			got = c.err.Error()
		}
		if got != c.want {
			t.Errorf("%s %q:\n got %s\nwant %s", c.fn, c.in, got, c.want)
		}
	}
	long := strings.Repeat("v", maxPropValueLen+1)
	if err := ValidatePropertyValue("a:b", long); err == nil || !strings.Contains(err.Error(), "longer than") {
		t.Errorf("an oversized value: %v", err)
	}
}

// FuzzValidateNames: whatever passes validation is safe to put in an
// argument list: no option syntax, nothing outside the allowed characters,
// within ZFS's length limit.
func FuzzValidateNames(f *testing.F) {
	for _, s := range []string{"tank/app", "tank/app@flocker-1-2", "tank/app#b", "-R", "tank/-x", "tank/a;b", "tank/$(id)@s", "tank/a b", "tank/app@", "@s", "tank//a", "tank/./a", "mirror/x", "1tank"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		for kind, check := range map[string]func(string) error{
			"dataset": ValidateDataset, "snapshot": ValidateSnapshot, "bookmark": ValidateBookmark,
			"snapshot name": ValidateSnapshotName, "hold tag": ValidateHoldTag,
		} {
			err := check(name)
			if err != nil {
				var ne *NameError
				if !errors.As(err, &ne) || ne.Name != name {
					t.Fatalf("%s %q: error without the name: %v", kind, name, err)
				}
				continue
			}
			if name == "" || len(name) > MaxNameLen || name[0] == '-' {
				t.Fatalf("%s %q accepted", kind, name)
			}
			for _, part := range strings.FieldsFunc(name, func(r rune) bool { return r == '/' || r == '@' || r == '#' }) {
				if part == "" || part[0] == '-' || part == "." || part == ".." {
					t.Fatalf("%s %q accepted with part %q", kind, name, part)
				}
			}
			for _, r := range name {
				if !validChar(r) && r != '/' && r != '@' && r != '#' {
					t.Fatalf("%s %q accepted with %q", kind, name, r)
				}
			}
		}
	})
}
