package snapshot

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Dialects flocker runs on.
const (
	DialectOpenZFS = "openzfs"  // OpenZFS 2.x (kernel module)
	DialectZFSFuse = "zfs-fuse" // zfs-fuse 0.7: userspace daemon, legacy pool version 23
)

// Dialect is the ZFS implementation on this host and what its tools accept.
type Dialect struct {
	Name string
	// Version is the OpenZFS release from `zfs version` ("2.3.2"); empty
	// when the tool has no version command (zfs-fuse).
	Version string
	// PoolVersion is the newest legacy pool version `zpool upgrade -v`
	// reports (zfs-fuse: 23); 0 when not asked (OpenZFS uses feature flags).
	PoolVersion int
	Features    Features
}

// Features says which tool options and properties flocker may use. Each was
// read from the tool's own usage text or property list, except HoldsList and
// (where the usage does not list it) ReceiveNoMount, which only asking the
// tool reveals (see Detect).
type Features struct {
	ListParsable       bool `json:"list_p"`               // zfs list -p
	Bookmarks          bool `json:"bookmarks"`            // zfs bookmark
	ResumableReceive   bool `json:"resumable_receive"`    // zfs receive -s, send -t
	Holds              bool `json:"holds"`                // zfs hold/holds/release
	WrittenProperty    bool `json:"written_property"`     // the written property
	SendDryRunParsable bool `json:"send_dryrun_parsable"` // zfs send -nP

	// HoldsList: `zfs holds` prints the tags. zfs-fuse lists hold and holds
	// in its usage, but its holds needs a Python helper it does not ship.
	HoldsList bool `json:"holds_list"`
	// MultiSnapshot: `zfs snapshot a@s b@s` takes several snapshots at once,
	// atomically (all or none).
	MultiSnapshot bool `json:"snapshot_multi"`
	// DestroySnapshotList: `zfs destroy ds@a,b` destroys several snapshots of
	// one dataset in one command.
	DestroySnapshotList bool `json:"destroy_snapshot_list"`
	// SetMultiple: `zfs set a=1 b=2 ds` sets several properties at once.
	SetMultiple bool `json:"set_multi"`
	// ReceiveProperties: `zfs receive -o prop=value` (e.g. readonly=on from
	// the first byte of a replica).
	ReceiveProperties bool `json:"receive_o"`
	// ReceiveNoMount: `zfs receive -u` leaves the received file system
	// unmounted. zfs-fuse takes it, though its usage does not say so.
	ReceiveNoMount bool `json:"receive_u"`
	// SendCompressed (`send -c`) and SendLargeBlocks (`send -L`) keep blocks
	// as they are on disk instead of expanding them in the stream.
	SendCompressed  bool `json:"send_c"`
	SendLargeBlocks bool `json:"send_L"`
}

// FeatureFlag is one feature under its JSON name, for reports.
type FeatureFlag struct {
	Name      string
	Available bool
}

// Flags lists every feature in declaration order under its JSON name, so that
// reports show new features without being edited.
func (f Features) Flags() []FeatureFlag {
	return []FeatureFlag{
		{"list_p", f.ListParsable},
		{"bookmarks", f.Bookmarks},
		{"resumable_receive", f.ResumableReceive},
		{"holds", f.Holds},
		{"written_property", f.WrittenProperty},
		{"send_dryrun_parsable", f.SendDryRunParsable},
		{"holds_list", f.HoldsList},
		{"snapshot_multi", f.MultiSnapshot},
		{"destroy_snapshot_list", f.DestroySnapshotList},
		{"set_multi", f.SetMultiple},
		{"receive_o", f.ReceiveProperties},
		{"receive_u", f.ReceiveNoMount},
		{"send_c", f.SendCompressed},
		{"send_L", f.SendLargeBlocks},
	}
}

// ErrNoZFS means the zfs tool is not installed.
var ErrNoZFS = errors.New("zfs is not installed")

// Detect asks the installed tools which dialect they are and what they accept:
// `zfs version`, the usage text of `zfs -?` (commands and their flags), the
// property list `zfs get` prints, and for a tool without a version command
// `zpool upgrade -v`. Nothing is inferred from the dialect's name.
func (c *CLI) Detect(ctx context.Context) (Dialect, error) {
	var d Dialect
	out, err := c.ZFS(ctx, "version")
	// OpenZFS prints its userland version first and exits 1 when the kernel
	// module is not loaded, so stdout counts even on failure.
	if v, ok := parseZFSVersion(string(out)); ok {
		d.Name, d.Version = DialectOpenZFS, v
	} else if err == nil {
		return d, fmt.Errorf("detecting zfs dialect: unrecognized `zfs version` output %q", firstLine(string(out)))
	} else if notStarted(err) {
		return d, fmt.Errorf("detecting zfs dialect: %w (%v)", ErrNoZFS, err)
	} else if ce := asCmdError(err); ce == nil || !strings.Contains(ce.Stderr, "unrecognized command") {
		// Not "no such command": the tool itself is broken or its daemon down.
		return d, fmt.Errorf("detecting zfs dialect: %w", err)
	}

	usage, err := c.ZFS(ctx, "-?")
	if err != nil {
		return d, fmt.Errorf("detecting zfs features: %w", err)
	}
	// `zfs get` without arguments prints its usage and the property table to
	// stderr and exits 2; anything else means the tool failed.
	var getUsage string
	if _, err := c.ZFS(ctx, "get"); err == nil {
		return d, errors.New("detecting zfs features: `zfs get` without arguments did not print its usage")
	} else if ce := asCmdError(err); ce == nil || ce.ExitCode != 2 {
		return d, fmt.Errorf("detecting zfs features: %w", err)
	} else {
		getUsage = ce.Stderr
	}
	d.Features, err = featuresFromUsage(string(usage), getUsage)
	if err != nil {
		return d, fmt.Errorf("detecting zfs features: %w", err)
	}
	if d.Features.Holds {
		d.Features.HoldsList, err = c.holdsAnswers(ctx)
		if err != nil {
			return d, fmt.Errorf("detecting zfs features: %w", err)
		}
	}
	if !d.Features.ReceiveNoMount {
		d.Features.ReceiveNoMount, err = c.receiveTakesU(ctx)
		if err != nil {
			return d, fmt.Errorf("detecting zfs features: %w", err)
		}
	}
	if d.Name != "" {
		return d, nil
	}

	// No version command: a legacy pool version without feature flags is
	// zfs-fuse (OpenZFS has had feature flags since 0.6.1 and `zfs version`
	// since 0.8, so no OpenZFS on Linux answers like this).
	out, err = c.Zpool(ctx, "upgrade", "-v")
	if err != nil {
		return d, fmt.Errorf("detecting zfs dialect: %w", err)
	}
	v, flags, err := parsePoolVersions(string(out))
	if err != nil {
		return d, fmt.Errorf("detecting zfs dialect: %w", err)
	}
	if flags {
		// OpenZFS before 0.8: feature flags but no version command.
		d.Name = DialectOpenZFS
		return d, nil
	}
	d.Name, d.PoolVersion = DialectZFSFuse, v
	return d, nil
}

// featuresFromUsage reads the features the usage texts of `zfs -?` and `zfs
// get` show (all but HoldsList).
func featuresFromUsage(usage, getUsage string) (Features, error) {
	cmds := parseUsage(usage)
	syn := parseSynopses(usage)
	props := parseProperties(getUsage)
	if len(cmds) == 0 || len(props) == 0 {
		return Features{}, errors.New("no commands or properties in the usage text")
	}
	return Features{
		ListParsable:        cmds["list"]["p"],
		Bookmarks:           cmds["bookmark"] != nil,
		ResumableReceive:    cmds["receive"]["s"] && cmds["send"]["t"],
		Holds:               cmds["hold"] != nil && cmds["holds"] != nil && cmds["release"] != nil,
		WrittenProperty:     props["written"],
		SendDryRunParsable:  cmds["send"]["n"] && cmds["send"]["P"],
		MultiSnapshot:       anySynopsis(syn["snapshot"], takesSeveralSnapshots),
		DestroySnapshotList: anySynopsis(syn["destroy"], func(s string) bool { return strings.Contains(s, "@") && strings.Contains(s, "[,...]") }),
		SetMultiple:         anySynopsis(syn["set"], func(s string) bool { return strings.Contains(s, "<property=value> ...") }),
		ReceiveProperties:   cmds["receive"]["o"],
		ReceiveNoMount:      cmds["receive"]["u"],
		SendCompressed:      cmds["send"]["c"],
		SendLargeBlocks:     cmds["send"]["L"],
	}, nil
}

// detectMissingDataset names a dataset no pool has: pool names start with a
// letter, and this one is longer than any test or operator would choose.
const (
	detectMissingDataset  = "flocker-detect-no-such-pool-5e0c1a/none"
	detectMissingSnapshot = detectMissingDataset + "@none"
)

// holdsAnswers asks `zfs holds` about a snapshot that does not exist: a
// working tool says so, zfs-fuse's fails to start its Python helper.
func (c *CLI) holdsAnswers(ctx context.Context) (bool, error) {
	out, err := c.ZFS(ctx, "holds", "-H", detectMissingSnapshot)
	if err == nil {
		return false, fmt.Errorf("`zfs holds %s` succeeded: %q", detectMissingSnapshot, firstLine(string(out)))
	}
	ce := asCmdError(err)
	if ce == nil {
		return false, err
	}
	if strings.Contains(ce.Stderr, "does not exist") {
		return true, nil
	}
	if ctx.Err() != nil || notStarted(err) {
		return false, err
	}
	// zfs-fuse prints "internal error: /usr/lib/zfs/pyzfs.py not found" to
	// stdout and exits 255; any other refusal also means "cannot list".
	return false, nil
}

// receiveTakesU asks `zfs receive -u` to read a stream from an empty stdin
// into a dataset no pool has: it fails either way, and says whether -u was
// the problem. zfs-fuse takes -u without listing it in its usage.
func (c *CLI) receiveTakesU(ctx context.Context) (bool, error) {
	_, err := c.ZFS(ctx, "receive", "-u", detectMissingDataset)
	if err == nil {
		return false, fmt.Errorf("`zfs receive -u` from an empty stream succeeded")
	}
	ce := asCmdError(err)
	if ce == nil || ctx.Err() != nil || notStarted(err) {
		return false, err
	}
	return !strings.Contains(ce.Stderr, "invalid option"), nil
}

// zfsVersionRe matches the userland line of `zfs version`: "zfs-2.3.2-1".
var zfsVersionRe = regexp.MustCompile(`(?m)^zfs-(\d+\.\d+\.\d+)`)

func parseZFSVersion(out string) (string, bool) {
	m := zfsVersionRe.FindStringSubmatch(out)
	if m == nil {
		return "", false
	}
	return m[1], true
}

// parseUsage reads the command synopses of `zfs -?`: lines "\tNAME [flags]
// ...", continued on lines indented further. It returns each command's
// single-letter flags ("[-Hp]", "-d max", "-[iI]", "<-a | fs>"); long
// options (--raw) are not collected. A command without flags maps to an
// empty, non-nil set.
func parseUsage(text string) map[string]map[string]bool {
	cmds := map[string]map[string]bool{}
	var cur map[string]bool
	for line := range strings.SplitSeq(text, "\n") {
		if !strings.HasPrefix(line, "\t") {
			cur = nil
			continue
		}
		body := strings.TrimPrefix(line, "\t")
		if body == "" {
			cur = nil
			continue
		}
		if body[0] != ' ' && body[0] != '\t' { // a new synopsis, not a continuation
			name, rest, _ := strings.Cut(body, " ")
			if !isCommandName(name) {
				cur = nil
				continue
			}
			if cmds[name] == nil {
				cmds[name] = map[string]bool{}
			}
			cur = cmds[name]
			body = rest
		}
		if cur != nil {
			for _, f := range shortFlags(body) {
				cur[f] = true
			}
		}
	}
	return cmds
}

// parseSynopses returns the synopsis lines of each command in a usage text,
// continuation lines joined to theirs with one space: "snapshot [-r] [-o
// property=value] ... <filesystem|volume>@<snap> ...".
func parseSynopses(text string) map[string][]string {
	syn := map[string][]string{}
	var name string
	for line := range strings.SplitSeq(text, "\n") {
		body, ok := strings.CutPrefix(line, "\t")
		if !ok || strings.TrimSpace(body) == "" {
			name = ""
			continue
		}
		if body[0] == ' ' || body[0] == '\t' {
			if name != "" {
				last := len(syn[name]) - 1
				syn[name][last] += " " + strings.TrimSpace(body)
			}
			continue
		}
		cmd, _, _ := strings.Cut(body, " ")
		if !isCommandName(cmd) {
			name = ""
			continue
		}
		name = cmd
		syn[name] = append(syn[name], strings.TrimSpace(body))
	}
	return syn
}

func anySynopsis(lines []string, f func(string) bool) bool {
	for _, l := range lines {
		if f(l) {
			return true
		}
	}
	return false
}

// takesSeveralSnapshots reports a snapshot synopsis whose snapshot operand
// repeats: "... <filesystem|volume>@<snap> ..." (OpenZFS), unlike
// "... <filesystem@snapname|volume@snapname>" (zfs-fuse), where the only "..."
// repeats -o.
func takesSeveralSnapshots(s string) bool {
	f := strings.Fields(s)
	return len(f) >= 2 && f[len(f)-1] == "..." && strings.Contains(f[len(f)-2], "@")
}

func isCommandName(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && r != '-' {
			return false
		}
	}
	return true
}

// shortFlags returns the option letters in one synopsis fragment. A dash
// opens options when it follows the start, a space, '[', '|' or '<' (so
// "user-defined" is no option); letters after it up to a non-letter are each
// a flag; "-[iI]" lists alternatives; "--name" is a long option.
func shortFlags(s string) []string {
	var flags []string
	for i := 0; i < len(s); i++ {
		if s[i] != '-' || (i > 0 && !strings.ContainsRune(" [|<", rune(s[i-1]))) {
			continue
		}
		j := i + 1
		if j < len(s) && s[j] == '-' { // long option: skip the word
			for j < len(s) && s[j] != ' ' && s[j] != ']' {
				j++
			}
			i = j
			continue
		}
		if j < len(s) && s[j] == '[' { // -[iI] or -[i|I]
			for j++; j < len(s) && s[j] != ']'; j++ {
				if isLetter(s[j]) {
					flags = append(flags, string(s[j]))
				}
			}
			i = j
			continue
		}
		for ; j < len(s) && isLetter(s[j]); j++ {
			flags = append(flags, string(s[j]))
		}
		i = j - 1
	}
	return flags
}

func isLetter(b byte) bool { return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') }

// parseProperties reads the property table `zfs get` prints after "The
// following properties are supported:": one "\tNAME  EDIT  INHERIT  VALUES"
// row per property.
func parseProperties(text string) map[string]bool {
	props := map[string]bool{}
	_, table, ok := strings.Cut(text, "properties are supported:")
	if !ok {
		return props
	}
	for line := range strings.SplitSeq(table, "\n") {
		if !strings.HasPrefix(line, "\t") {
			continue
		}
		fields := strings.Fields(line)
		if len(fields) < 2 || fields[0] == "PROPERTY" {
			continue
		}
		props[fields[0]] = true
	}
	return props
}

var (
	poolVersionRe  = regexp.MustCompile(`running ZFS pool version (\d+)`)
	featureFlagsRe = regexp.MustCompile(`(?i)supports ZFS pool feature flags`)
)

// parsePoolVersions reads `zpool upgrade -v`: the legacy pool version the
// system runs, or whether it uses feature flags instead.
func parsePoolVersions(out string) (version int, featureFlags bool, err error) {
	if featureFlagsRe.MatchString(out) {
		return 0, true, nil
	}
	m := poolVersionRe.FindStringSubmatch(out)
	if m == nil {
		return 0, false, fmt.Errorf("no pool version in `zpool upgrade -v` output %q", firstLine(out))
	}
	v, err := strconv.Atoi(m[1])
	if err != nil {
		return 0, false, fmt.Errorf("pool version %q: %w", m[1], err)
	}
	return v, false, nil
}
