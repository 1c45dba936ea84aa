package snapshot

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Kinds of ZFS failure, parsed from the tools' stderr. A *ZFSError matches
// each kind it carries with errors.Is. The texts they come from, as both
// dialects print them, are in testdata/stderr.
var (
	ErrNotFound         = errors.New("does not exist")
	ErrExists           = errors.New("already exists")
	ErrBusy             = errors.New("dataset is busy")
	ErrHeld             = errors.New("snapshot is held") // comes with ErrBusy
	ErrPoolFull         = errors.New("out of space")
	ErrPermissionDenied = errors.New("permission denied")
	ErrHasDependents    = errors.New("has children or dependent clones")
	// ErrNewerSnapshots: a rollback refused because it would destroy
	// snapshots (or bookmarks) newer than its target.
	ErrNewerSnapshots = errors.New("more recent snapshots exist")
	ErrMounted        = errors.New("already mounted")
	ErrNotMounted     = errors.New("not mounted")
	ErrBadProperty    = errors.New("invalid property or value")

	ErrHoldExists = errors.New("hold tag already exists")
	ErrNoSuchHold = errors.New("no such hold tag")

	// ErrNotEarlier: `send -i A B` where A is not an earlier snapshot of B's
	// dataset (or its origin).
	ErrNotEarlier = errors.New("not an earlier snapshot of the same dataset")
	// ErrBadStream: the stream ended early or failed its checksums.
	ErrBadStream = errors.New("send stream corrupted or truncated")
	// ErrDestinationModified: the receiving dataset changed since its newest
	// snapshot (for a mounted replica even an atime update counts).
	ErrDestinationModified = errors.New("destination modified since its most recent snapshot")
	// ErrIncrementalMismatch: the receiver's newest snapshot is not the
	// stream's incremental source.
	ErrIncrementalMismatch = errors.New("most recent snapshot does not match the incremental source")
	// ErrResumable: the receive failed but kept its partial state; ZFSError
	// carries the token (`zfs send -t TOKEN` continues it).
	ErrResumable = errors.New("partial receive saved; resumable")
	// ErrResumeTokenInvalid: `send -t` refused the token (corrupt, or the
	// snapshot it names changed or is gone).
	ErrResumeTokenInvalid = errors.New("resume token cannot be used")
	// ErrNoReceiveState: `receive -A` found no partial receive to abort.
	ErrNoReceiveState = errors.New("no resumable receive state")
	// ErrReceiveStatePresent: a plain receive into a dataset that holds the
	// partial state of a resumable one; resume it or abort it first.
	ErrReceiveStatePresent = errors.New("destination holds partial receive state")

	// ErrUnsupported: this dialect lacks what the call needs. Returned
	// before anything is run.
	ErrUnsupported = errors.New("not supported by this zfs")
)

// ZFSError is a zfs command that failed for a reason the adapter recognised.
// When one command fails for several objects (a batch of holds, say), the
// adapter returns one ZFSError per object joined with errors.Join.
type ZFSError struct {
	Op    string  // the adapter operation: "snapshot", "receive", ...
	Name  string  // the object zfs named, or the operation's target
	Kinds []error // the Err* values above; errors.Is matches each
	Token string  // with ErrResumable: the receive_resume_token, when zfs printed it
	Msg   string  // zfs's own words
	Cmd   *CmdError
}

func (e *ZFSError) Error() string {
	kinds := make([]string, len(e.Kinds))
	for i, k := range e.Kinds {
		kinds[i] = k.Error()
	}
	return fmt.Sprintf("%s %s: %s (zfs: %s)", e.Op, e.Name, strings.Join(kinds, ", "), e.Msg)
}

// Unwrap gives errors.Is and errors.As the kinds and the command error (and
// through it a context error when the command was cancelled).
func (e *ZFSError) Unwrap() []error {
	errs := slices.Clone(e.Kinds)
	if e.Cmd != nil {
		errs = append(errs, e.Cmd)
	}
	return errs
}

// maxStderr is how much stderr is kept from a streaming command and read by
// the parser: zfs says what failed in a few lines (-v, never used, would
// print a line per second).
const maxStderr = 64 << 10

// fact is one failure stderr reports: what kind, about which object.
type fact struct {
	kinds []error
	name  string // "" when the message names nothing
	token string
	msg   string
	at    int // byte offset in stderr, for ordering
}

// Messages whose shape is their own (not "cannot VERB 'NAME': REASON"), from
// both dialects. \s+ stands where the tools wrap a message over two lines.
var specialPatterns = []struct {
	re    *regexp.Regexp
	kinds []error
}{
	{regexp.MustCompile(`most recent snapshot of (\S+) does not\s+match incremental source`), []error{ErrIncrementalMismatch}},
	{regexp.MustCompile(`destination (\S+) has been modified\s+since most recent snapshot`), []error{ErrDestinationModified}},
	{regexp.MustCompile(`destination (\S+) contains partially-complete state from "zfs receive -s"`), []error{ErrReceiveStatePresent}},
	{regexp.MustCompile(`destination '([^']+)' exists`), []error{ErrExists}},
	{regexp.MustCompile(`destination '([^']+)' does not exist`), []error{ErrNotFound}},
	{regexp.MustCompile(`could not send (\S+): does not exist`), []error{ErrNotFound}},
	{regexp.MustCompile(`bookmark '([^']+)' does not exist`), []error{ErrNotFound}},
	{regexp.MustCompile(`could not find any snapshots to destroy()`), []error{ErrNotFound}},
	{regexp.MustCompile(`'([^']+)' does not have any resumable receive state to abort`), []error{ErrNoReceiveState}},
	// zfs-fuse's client cannot reach the daemon's socket as a non-root user;
	// OpenZFS's tools refuse a non-root user outright.
	{regexp.MustCompile(`connect: Permission denied()`), []error{ErrPermissionDenied}},
	{regexp.MustCompile(`Permission denied the ZFS utilities must be run as root()`), []error{ErrPermissionDenied}},
	{regexp.MustCompile(`bad property list: invalid property '[^'\n]*'()`), []error{ErrBadProperty}},
	// zfs-fuse's unmount prints umount(8)'s refusal before its own line.
	{regexp.MustCompile(`umount: (\S+): target is busy`), []error{ErrBusy}},
}

// cannotRe is the common shape: "cannot VERB [NOUN] 'NAME'[ from 'NAME2']:
// REASON", or with the name unquoted ("cannot destroy snapshot a/b@c: ...";
// then it must look like a dataset path), or with no name at all ("cannot
// receive new filesystem stream: ..."). A leading "warning: " is allowed.
var cannotRe = regexp.MustCompile(`(?m)^(?:warning: |WARNING: )?cannot ([a-z]+(?: [a-z]+)*?)(?: (?:'([^'\n]*)'|([^\s:']*[/@#][^\s:']*)))?(?: from '([^'\n]*)')?: (.*)$`)

// reasons maps the REASON of a "cannot ..." line to kinds, first match wins;
// matching is on substrings of the lowercased reason.
var reasons = []struct {
	text  string
	kinds []error
}{
	{"it's being held", []error{ErrHeld, ErrBusy}},
	{"dataset is busy", []error{ErrBusy}},
	{"pool or dataset is busy", []error{ErrBusy}},
	{"device or resource busy", []error{ErrBusy}},
	{"out of space", []error{ErrPoolFull}},
	{"no space left on device", []error{ErrPoolFull}},
	{"permission denied", []error{ErrPermissionDenied}},
	{"tag already exists", []error{ErrHoldExists}},
	{"no such tag", []error{ErrNoSuchHold}},
	{"already exists", []error{ErrExists}},
	{"bookmark exists", []error{ErrExists}},
	{"does not exist", []error{ErrNotFound}},
	{"has children", []error{ErrHasDependents}},
	{"has dependent clones", []error{ErrHasDependents}},
	{"more recent snapshots", []error{ErrNewerSnapshots}},
	{"already mounted", []error{ErrMounted}},
	{"not currently mounted", []error{ErrNotMounted}},
	{"not an earlier snapshot", []error{ErrNotEarlier}},
	{"resume token is corrupt", []error{ErrResumeTokenInvalid}},
	{"used in the initial send", []error{ErrResumeTokenInvalid}},
	{"must be one of", []error{ErrBadProperty}},
	{"invalid property", []error{ErrBadProperty}},
	{"checksum mismatch", []error{ErrBadStream}},
	{"incomplete stream", []error{ErrBadStream}},
	{"invalid backup stream", []error{ErrBadStream}},
	{"invalid stream", []error{ErrBadStream}},
	{"failed to read from stream", []error{ErrBadStream}},
}

// resumeRe finds the token OpenZFS prints after a resumable receive failed:
// "Partially received snapshot is saved. ... zfs send -t 1-abc...".
var resumeRe = regexp.MustCompile(`Partially received snapshot is saved\.(?s:.*?)zfs send -t ([0-9a-zA-Z-]+)`)

// parseStderr lists the failures a zfs command's stderr reports, in the order
// it reports them. Pure: the fuzz target and the captured-message tables run
// it directly.
func parseStderr(stderr string) []fact {
	// zfs says what failed in its first lines; what may follow is a list
	// (the snapshots a -r would destroy), possibly long.
	if len(stderr) > maxStderr {
		stderr = stderr[:maxStderr]
	}
	var facts []fact
	type key struct {
		name  string
		kinds string
	}
	seen := map[key]bool{}
	add := func(f fact) {
		k := key{f.name, fmt.Sprint(f.kinds)}
		if seen[k] {
			return
		}
		seen[k] = true
		facts = append(facts, f)
	}
	// Text a special pattern explained is not read again as a "cannot" line.
	var covered [][2]int
	overlaps := func(start, end int) bool {
		for _, c := range covered {
			if start < c[1] && c[0] < end {
				return true
			}
		}
		return false
	}
	for _, p := range specialPatterns {
		for _, m := range p.re.FindAllStringSubmatchIndex(stderr, -1) {
			add(fact{kinds: p.kinds, name: stderr[m[2]:m[3]], msg: oneLine(stderr[m[0]:m[1]]), at: m[0]})
			covered = append(covered, [2]int{m[0], m[1]})
		}
	}
	for _, m := range cannotRe.FindAllStringSubmatchIndex(stderr, -1) {
		if overlaps(m[0], m[1]) {
			continue
		}
		group := func(i int) string {
			if m[2*i] < 0 {
				return ""
			}
			return stderr[m[2*i]:m[2*i+1]]
		}
		name := group(2)
		if name == "" {
			name = group(3)
		}
		if from := group(4); from != "" {
			name = from // "cannot release 'TAG' from 'SNAPSHOT'"
		}
		reason := strings.ToLower(group(5))
		for _, r := range reasons {
			if strings.Contains(reason, r.text) {
				add(fact{kinds: r.kinds, name: name, msg: group(0), at: m[0]})
				break
			}
		}
	}
	if m := resumeRe.FindStringSubmatchIndex(stderr); m != nil {
		token := stderr[m[2]:m[3]]
		// The line before says why the receive failed (a truncated stream):
		// that fact gets the token.
		attached := false
		for i := range facts {
			if facts[i].at < m[0] && slices.Contains(facts[i].kinds, ErrBadStream) {
				facts[i].kinds = append(slices.Clone(facts[i].kinds), ErrResumable)
				facts[i].token = token
				attached = true
			}
		}
		if !attached {
			add(fact{kinds: []error{ErrResumable}, token: token, msg: "partially received snapshot is saved", at: m[0]})
		}
	}
	slices.SortStableFunc(facts, func(a, b fact) int { return a.at - b.at })
	return facts
}

// oneLine folds a message the tool wrapped over lines into one.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// zfsError turns a failed command into the error an operation returns: one
// *ZFSError per fact stderr reports (joined when several), or the command
// error wrapped with the operation when stderr says nothing recognised.
// target names the object when zfs did not.
func zfsError(op, target string, err error) error {
	ce := asCmdError(err)
	if ce == nil {
		return fmt.Errorf("%s %s: %w", op, target, err)
	}
	facts := parseStderr(ce.Stderr)
	if len(facts) == 0 {
		return fmt.Errorf("%s %s: %w", op, target, err)
	}
	errs := make([]error, len(facts))
	for i, f := range facts {
		name := f.name
		if name == "" {
			name = target
		}
		errs[i] = &ZFSError{Op: op, Name: name, Kinds: f.kinds, Token: f.token, Msg: f.msg, Cmd: ce}
	}
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}
