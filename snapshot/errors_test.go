package snapshot

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// wantFact is one failure a captured message must parse to.
type wantFact struct {
	name  string
	kinds []error
}

func w(name string, kinds ...error) wantFact { return wantFact{name: name, kinds: kinds} }

// capturedDialects are the directories under testdata/stderr, each filled by
// capture.sh on that dialect (see its header).
var capturedDialects = []string{DialectZFSFuse, DialectOpenZFS}

// capturedWant says what each captured failure parses to, per dialect. A
// case listed with one entry holds for both. Cases that exited 0 need no
// entry: their stderr must parse to nothing. Every failed case must have an
// entry, so a new capture cannot go unjudged.
var capturedWant = map[string]map[string][]wantFact{
	"bookmark_exists":           openzfs(w("cap1/app#b2", ErrExists)),
	"bookmark_missing_snapshot": openzfs(w("cap1/app@nosuch", ErrNotFound)),
	"create_exists":             both(w("cap1/app", ErrExists)),
	"create_no_parent":          both(w("cap1/nope/app", ErrNotFound)),
	"create_out_of_space":       both(w("capsmall/more", ErrPoolFull)),
	"destroy_has_children":      both(w("cap1/app", ErrHasDependents)),
	"destroy_has_clones":        both(w("cap1/app@s1", ErrHasDependents)),
	"destroy_held": {
		DialectZFSFuse: {w("cap1/app@s1", ErrBusy)},
		DialectOpenZFS: {w("cap1/app@s1", ErrHeld, ErrBusy)},
	},
	// zfs-fuse has no list form; the adapter never sends it there.
	"destroy_list_held": {
		DialectZFSFuse: nil,
		DialectOpenZFS: {w("cap1/h@a", ErrHeld, ErrBusy)},
	},
	"destroy_list_partly_missing": {DialectZFSFuse: nil},
	"destroy_missing_bookmark":    openzfs(w("cap1/app#nosuch", ErrNotFound)),
	"destroy_missing_snapshot": {
		DialectZFSFuse: {w("cap1/app@nosuch", ErrNotFound)},
		DialectOpenZFS: {w("", ErrNotFound)},
	},
	"get_bad_property":  both(w("", ErrBadProperty)),
	"get_missing":       both(w("cap1/nosuch", ErrNotFound)),
	"hold_exists":       both(w("cap1/app@s1", ErrHoldExists)),
	"hold_missing":      both(w("cap1/app@nosuch", ErrNotFound)),
	"hold_multi_exists": both(w("cap1/h@a", ErrHoldExists)),
	// zfs-fuse's holds prints its failure to stdout: stderr is empty.
	"holds_list":                           {DialectZFSFuse: nil},
	"mount_already":                        both(w("cap1/cl", ErrMounted)),
	"mount_canmount_off":                   both(),
	"permission_denied":                    both(w("", ErrPermissionDenied)),
	"recv_abort_nothing":                   openzfs(w("cap2/app", ErrNoReceiveState)),
	"recv_corrupt_full":                    both(w("", ErrBadStream)),
	"recv_corrupt_incremental":             both(w("", ErrBadStream)),
	"recv_empty":                           both(w("", ErrBadStream)),
	"recv_garbage":                         both(w("", ErrBadStream)),
	"recv_incremental_no_dest":             both(w("cap2/app", ErrNotFound)),
	"recv_mismatch":                        both(w("cap2/app", ErrIncrementalMismatch)),
	"recv_modified":                        both(w("cap2/app", ErrDestinationModified)),
	"recv_new_exists":                      both(w("cap2/app", ErrExists)),
	"recv_not_resuming":                    openzfs(w("cap2/r", ErrExists)),
	"recv_out_of_space":                    both(w("", ErrPoolFull)),
	"recv_partial_state_present":           openzfs(w("cap2/app", ErrReceiveStatePresent)),
	"recv_truncated_full":                  both(w("", ErrBadStream)),
	"recv_truncated_incremental":           both(w("", ErrBadStream)),
	"recv_truncated_resumable":             openzfs(w("", ErrBadStream, ErrResumable)),
	"recv_truncated_resumable2":            openzfs(w("", ErrBadStream, ErrResumable)),
	"recv_truncated_incremental_resumable": openzfs(w("", ErrBadStream, ErrResumable)),
	"release_multi_no_tag":                 both(w("cap1/h@a", ErrNoSuchHold)),
	"release_no_tag":                       both(w("cap1/app@s1", ErrNoSuchHold)),
	"rename_exists":                        both(w("cap1/app@s2", ErrExists)),
	// zfs-fuse mostly refuses to rename a mounted file system (OpenZFS
	// unmounts and remounts it); it succeeded in some runs.
	"rename_mounted_new_parent": {DialectZFSFuse: {w("cap1/cl", ErrBusy)}},
	"rename_no_parent":          both(w("cap1/nope/cl", ErrNotFound)),
	"rollback_missing":          both(w("cap1/app@nosuch", ErrNotFound)),
	"rollback_more_recent":      both(w("cap1/app@s1", ErrNewerSnapshots)),
	"send_missing_dataset": {
		DialectZFSFuse: {w("cap1/nosuch", ErrNotFound)},
		DialectOpenZFS: {w("cap1/nosuch@s1", ErrNotFound)},
	},
	"send_missing_snapshot": both(w("cap1/app@nosuch", ErrNotFound)),
	"send_missing_source": {
		DialectZFSFuse: {w("cap1/app@s2", ErrNotFound)},
		DialectOpenZFS: {w("cap1/app@nosuch", ErrNotFound)},
	},
	"send_not_earlier":         both(w("cap1/app@s1", ErrNotEarlier)),
	"send_token_invalid":       openzfs(w("", ErrResumeTokenInvalid)),
	"set_bad_value":            both(w("cap1/app", ErrBadProperty)),
	"set_out_of_space":         {DialectZFSFuse: {w("capsmall", ErrPoolFull)}},
	"snapshot_exists":          both(w("cap1/app@s1", ErrExists)),
	"snapshot_missing_dataset": both(w("cap1/nosuch", ErrNotFound)),
	// zfs-fuse takes one snapshot per command and prints its usage.
	"snapshot_multi_exists": {
		DialectZFSFuse: nil,
		DialectOpenZFS: {w("cap1/app@s1", ErrExists)},
	},
	"unmount_busy":        both(w("/cap1/cl", ErrBusy)),
	"unmount_not_mounted": both(w("cap1/cl", ErrNotMounted)),
}

func both(f ...wantFact) map[string][]wantFact {
	return map[string][]wantFact{DialectZFSFuse: f, DialectOpenZFS: f}
}

// openzfs is for cases capture.sh runs only there (resume, bookmarks).
func openzfs(f ...wantFact) map[string][]wantFact {
	return map[string][]wantFact{DialectOpenZFS: f}
}

// capturedCase is one command capture.sh ran.
type capturedCase struct {
	dialect, name string
	stderr        string
	exit          string
}

func readCaptured(t *testing.T) []capturedCase {
	t.Helper()
	var cases []capturedCase
	for _, d := range capturedDialects {
		files, err := filepath.Glob(filepath.Join("testdata", "stderr", d, "*.txt"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no captured stderr for %s: %v", d, err)
		}
		for _, f := range files {
			stderr, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			rc, err := os.ReadFile(strings.TrimSuffix(f, ".txt") + ".rc")
			if err != nil {
				t.Fatal(err)
			}
			cases = append(cases, capturedCase{d, strings.TrimSuffix(filepath.Base(f), ".txt"), string(stderr), strings.TrimSpace(string(rc))})
		}
	}
	return cases
}

// Every message both dialects printed in capture.sh's runs parses to the
// expected kinds and names.
func TestParseStderrCaptured(t *testing.T) {
	for _, c := range readCaptured(t) {
		t.Run(c.dialect+"/"+c.name, func(t *testing.T) {
			checkCaptured(t, c, committedFile(c.dialect))
		})
	}
}

// committedFile reads a file capture.sh wrote next to the committed stderr.
func committedFile(dialect string) func(name string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		return os.ReadFile(filepath.Join("testdata", "stderr", dialect, name))
	}
}

// checkCaptured judges one captured command; other reads capture.sh's
// other outputs of the same run (the resume tokens).
func checkCaptured(t *testing.T, c capturedCase, other func(name string) ([]byte, error)) {
	t.Helper()
	got := parseStderr(c.stderr)
	want, listed := capturedWant[c.name][c.dialect]
	if c.exit == "0" {
		if listed && len(want) > 0 {
			t.Fatalf("expectations for a command that succeeded")
		}
		if len(got) != 0 {
			t.Errorf("a command that succeeded parsed to failures: %+v", got)
		}
		return
	}
	if !listed {
		t.Fatalf("failed with exit %s and has no expectation; stderr:\n%s", c.exit, c.stderr)
	}
	if len(got) != len(want) {
		t.Fatalf("parsed to %d failures %+v, want %d %+v; stderr:\n%s", len(got), got, len(want), want, c.stderr)
	}
	for i := range want {
		if got[i].name != want[i].name || !slices.Equal(got[i].kinds, want[i].kinds) {
			t.Errorf("failure %d: name %q kinds %v, want %q %v; stderr:\n%s", i, got[i].name, got[i].kinds, want[i].name, want[i].kinds, c.stderr)
		}
		if slices.Contains(got[i].kinds, ErrResumable) {
			checkToken(t, c, got[i].token, other)
		} else if got[i].token != "" {
			t.Errorf("token %q without ErrResumable", got[i].token)
		}
	}
}

// checkToken compares a parsed resume token with the receive_resume_token
// property capture.sh read right after the failed receive.
func checkToken(t *testing.T, c capturedCase, token string, other func(name string) ([]byte, error)) {
	t.Helper()
	prop := map[string]string{
		"recv_truncated_resumable":             "resume_token.out",
		"recv_truncated_incremental_resumable": "resume_token_incremental.out",
	}[c.name]
	if token == "" || ValidateResumeToken(token) != nil {
		t.Errorf("resume token %q: want a valid token", token)
	}
	if prop == "" {
		return
	}
	b, err := other(prop)
	if err != nil {
		t.Fatal(err)
	}
	if want := strings.TrimSpace(string(b)); token != want {
		t.Errorf("token %q, but the dataset's receive_resume_token was %q", token, want)
	}
}

// No expectation is left without a capture (a renamed case would otherwise
// silently stop being checked).
func TestCapturedWantHasCaptures(t *testing.T) {
	have := map[string]bool{}
	for _, c := range readCaptured(t) {
		have[c.dialect+"/"+c.name] = true
	}
	for name, per := range capturedWant {
		for d := range per {
			if !have[d+"/"+name] {
				t.Errorf("expectation for %s/%s, but no capture", d, name)
			}
		}
	}
}

// zfsError shapes: one fact is a *ZFSError, several are joined, none keeps
// the command error; errors.Is sees the kinds and the CmdError beneath.
func TestZFSErrorShapes(t *testing.T) {
	ce := func(stderr string) error {
		return &CmdError{Path: "zfs", Args: []string{"x"}, ExitCode: 1, Stderr: stderr, Err: &exec.ExitError{}}
	}
	err := zfsError("hold", "p/a@s", ce("cannot hold snapshot 'p/a@s': tag already exists on this dataset\n"))
	var ze *ZFSError
	if !errors.As(err, &ze) || ze.Name != "p/a@s" || ze.Op != "hold" || !errors.Is(err, ErrHoldExists) || errors.Is(err, ErrExists) {
		t.Errorf("single fact: %#v", err)
	}
	var cmdErr *CmdError
	if !errors.As(err, &cmdErr) {
		t.Errorf("CmdError not reachable from %v", err)
	}
	if want := "hold p/a@s: hold tag already exists (zfs: cannot hold snapshot 'p/a@s': tag already exists on this dataset)"; err.Error() != want {
		t.Errorf("Error() = %q\nwant      %q", err.Error(), want)
	}

	err = zfsError("hold", "p/a@s", ce("cannot hold 'p/a@s': tag already exists on this dataset\ncannot hold 'p/a@t': dataset does not exist\n"))
	if !errors.Is(err, ErrHoldExists) || !errors.Is(err, ErrNotFound) {
		t.Errorf("two facts: want both kinds, got %v", err)
	}
	var names []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		if errors.As(e, &ze) {
			names = append(names, ze.Name)
		}
	}
	if !slices.Equal(names, []string{"p/a@s", "p/a@t"}) {
		t.Errorf("two facts named %v", names)
	}

	err = zfsError("send", "p/a@s", ce("something new\n"))
	if errors.As(err, &ze) || !errors.As(err, &cmdErr) || !strings.HasPrefix(err.Error(), "send p/a@s: ") {
		t.Errorf("unrecognised: want the CmdError wrapped, got %#v", err)
	}
	// A message that names nothing takes the operation's target.
	err = zfsError("receive", "p/b", ce("cannot receive: failed to read from stream\n"))
	if !errors.As(err, &ze) || ze.Name != "p/b" || !errors.Is(err, ErrBadStream) {
		t.Errorf("nameless: %#v", err)
	}
}

// FuzzParseStderr: any stderr parses without panic into facts that hold
// together, deterministically. Seeds: every captured message
// (testdata/fuzz/FuzzParseStderr holds them as corpus files too).
func FuzzParseStderr(f *testing.F) {
	for _, d := range capturedDialects {
		files, _ := filepath.Glob(filepath.Join("testdata", "stderr", d, "*.txt"))
		for _, file := range files {
			if b, err := os.ReadFile(file); err == nil {
				f.Add(string(b))
			}
		}
	}
	f.Fuzz(func(t *testing.T, stderr string) {
		facts := parseStderr(stderr)
		again := parseStderr(stderr)
		if len(facts) != len(again) {
			t.Fatalf("not deterministic: %d then %d facts", len(facts), len(again))
		}
		for i, fa := range facts {
			if len(fa.kinds) == 0 {
				t.Fatalf("fact %d has no kind: %+v", i, fa)
			}
			if fa.name != "" && !strings.Contains(stderr, fa.name) {
				t.Fatalf("fact %d names %q, which stderr does not contain", i, fa.name)
			}
			if (fa.token != "") != slices.Contains(fa.kinds, ErrResumable) {
				t.Fatalf("fact %d: token %q with kinds %v", i, fa.token, fa.kinds)
			}
			if fa.token != "" && !strings.Contains(stderr, fa.token) {
				t.Fatalf("fact %d: token not in stderr", i)
			}
			if i > 0 && facts[i-1].at > fa.at {
				t.Fatalf("facts out of order")
			}
			if fa.name != again[i].name || !slices.Equal(fa.kinds, again[i].kinds) {
				t.Fatalf("not deterministic at %d", i)
			}
		}
		err := zfsError("op", "t", &CmdError{Path: "zfs", Stderr: stderr, Err: errors.New("exit status 1")})
		if err == nil {
			t.Fatal("zfsError returned nil for a failed command")
		}
		_ = err.Error()
	})
}
