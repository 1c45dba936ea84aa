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
// read from the tool's own usage text or property list.
type Features struct {
	ListParsable       bool `json:"list_p"`               // zfs list -p
	Bookmarks          bool `json:"bookmarks"`            // zfs bookmark
	ResumableReceive   bool `json:"resumable_receive"`    // zfs receive -s, send -t
	Holds              bool `json:"holds"`                // zfs hold/holds/release
	WrittenProperty    bool `json:"written_property"`     // the written property
	SendDryRunParsable bool `json:"send_dryrun_parsable"` // zfs send -nP
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
	cmds := parseUsage(string(usage))
	// `zfs get` without arguments prints its usage and the property table to
	// stderr and exits 2; anything else means the tool failed.
	var props map[string]bool
	if _, err := c.ZFS(ctx, "get"); err == nil {
		return d, errors.New("detecting zfs features: `zfs get` without arguments did not print its usage")
	} else if ce := asCmdError(err); ce == nil || ce.ExitCode != 2 {
		return d, fmt.Errorf("detecting zfs features: %w", err)
	} else {
		props = parseProperties(ce.Stderr)
	}
	if len(cmds) == 0 || len(props) == 0 {
		return d, errors.New("detecting zfs features: no commands or properties in the usage text")
	}
	d.Features = Features{
		ListParsable:       cmds["list"]["p"],
		Bookmarks:          cmds["bookmark"] != nil,
		ResumableReceive:   cmds["receive"]["s"] && cmds["send"]["t"],
		Holds:              cmds["hold"] != nil && cmds["holds"] != nil && cmds["release"] != nil,
		WrittenProperty:    props["written"],
		SendDryRunParsable: cmds["send"]["n"] && cmds["send"]["P"],
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
