package snapshot

import (
	"fmt"
	"strings"
)

// MaxNameLen is the longest full dataset or snapshot name ZFS accepts:
// ZFS_MAX_DATASET_NAME_LEN (256) counts the terminating NUL.
const MaxNameLen = 255

// NameError says why a dataset or snapshot name was refused.
type NameError struct {
	Kind   string // "dataset", "snapshot" or "snapshot name"
	Name   string
	Reason string
}

func (e *NameError) Error() string {
	return fmt.Sprintf("invalid ZFS %s %q: %s", e.Kind, e.Name, e.Reason)
}

// ValidateDataset checks a filesystem or volume name such as "tank/app/db".
//
// The rules are those of OpenZFS's own name check, narrowed where flocker
// passes names to the zfs command and to operators' logs: ZFS also allows a
// space and '%' (its temporary receive clones) in a component, flocker does
// not. Every character outside [A-Za-z0-9_.:-] and the '/' separator is
// refused, which also keeps shell and option syntax ('-x', '$', ';', quotes)
// out of every name that reaches an exec argument list.
func ValidateDataset(name string) error {
	if reason := datasetReason(name); reason != "" {
		return &NameError{Kind: "dataset", Name: name, Reason: reason}
	}
	return nil
}

// ValidateSnapshot checks a full snapshot name, DATASET@NAME.
func ValidateSnapshot(name string) error {
	fail := func(reason string) error { return &NameError{Kind: "snapshot", Name: name, Reason: reason} }
	if len(name) > MaxNameLen {
		return fail(fmt.Sprintf("%d bytes, longer than the %d ZFS allows", len(name), MaxNameLen))
	}
	ds, snap, ok := strings.Cut(name, "@")
	if !ok {
		return fail("missing '@' between dataset and snapshot name")
	}
	if reason := datasetReason(ds); reason != "" {
		return fail("dataset part: " + reason)
	}
	if reason := snapshotNameReason(snap); reason != "" {
		return fail("snapshot part: " + reason)
	}
	return nil
}

// ValidateSnapshotName checks the part of a snapshot name after '@'.
func ValidateSnapshotName(name string) error {
	if reason := snapshotNameReason(name); reason != "" {
		return &NameError{Kind: "snapshot name", Name: name, Reason: reason}
	}
	return nil
}

func datasetReason(name string) string {
	switch {
	case name == "":
		return "empty"
	case len(name) > MaxNameLen:
		return fmt.Sprintf("%d bytes, longer than the %d ZFS allows", len(name), MaxNameLen)
	case strings.HasPrefix(name, "/"):
		return "leading '/' (a dataset name is not a mountpoint)"
	case strings.HasSuffix(name, "/"):
		return "trailing '/'"
	}
	if i := strings.IndexAny(name, "@#"); i >= 0 {
		return fmt.Sprintf("%q is a snapshot or bookmark delimiter, not allowed in a dataset name", name[i])
	}
	for i, comp := range strings.Split(name, "/") {
		if reason := componentReason(comp); reason != "" {
			return fmt.Sprintf("component %d (%q): %s", i+1, comp, reason)
		}
	}
	pool, _, _ := strings.Cut(name, "/")
	if c := pool[0]; !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
		return fmt.Sprintf("pool name %q must begin with a letter", pool)
	}
	if pool == "mirror" || pool == "raidz" {
		return fmt.Sprintf("pool name %q is reserved", pool)
	}
	return ""
}

func snapshotNameReason(name string) string {
	switch {
	case len(name) > MaxNameLen:
		return fmt.Sprintf("%d bytes, longer than the %d ZFS allows", len(name), MaxNameLen)
	case strings.HasPrefix(name, "-"):
		return "leading '-' (would read as a command-line option)"
	}
	if i := strings.IndexAny(name, "@#/"); i >= 0 {
		return fmt.Sprintf("%q not allowed after the '@' delimiter", name[i])
	}
	return componentReason(name)
}

// componentReason checks one '/'-separated part of a dataset name, or the
// name of a snapshot.
func componentReason(c string) string {
	switch c {
	case "":
		return "empty component"
	case ".", "..":
		return fmt.Sprintf("%q is a reserved path component", c)
	}
	if c[0] == '-' {
		return "leading '-' (would read as a command-line option)"
	}
	for _, r := range c {
		if !validChar(r) {
			return fmt.Sprintf("character %q not allowed (only letters, digits and _-.:)", r)
		}
	}
	return ""
}

func validChar(c rune) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '_' || c == '-' || c == '.' || c == ':'
}

// ValidateBookmark checks a full bookmark name, DATASET#NAME. The part after
// '#' follows the rules of a snapshot's short name.
func ValidateBookmark(name string) error {
	fail := func(reason string) error { return &NameError{Kind: "bookmark", Name: name, Reason: reason} }
	if len(name) > MaxNameLen {
		return fail(fmt.Sprintf("%d bytes, longer than the %d ZFS allows", len(name), MaxNameLen))
	}
	ds, mark, ok := strings.Cut(name, "#")
	if !ok {
		return fail("missing '#' between dataset and bookmark name")
	}
	if reason := datasetReason(ds); reason != "" {
		return fail("dataset part: " + reason)
	}
	if reason := snapshotNameReason(mark); reason != "" {
		return fail("bookmark part: " + strings.Replace(reason, "'@' delimiter", "'#' delimiter", 1))
	}
	return nil
}

// maxTagLen is the longest hold tag ZFS accepts (MAXNAMELEN less the NUL).
const maxTagLen = 255

// ValidateHoldTag checks a `zfs hold` tag. ZFS accepts almost any string;
// flocker keeps to the characters of a name component, so a tag can never
// read as an option or carry shell or output syntax.
func ValidateHoldTag(tag string) error {
	if len(tag) > maxTagLen {
		return &NameError{Kind: "hold tag", Name: tag, Reason: fmt.Sprintf("%d bytes, longer than the %d ZFS allows", len(tag), maxTagLen)}
	}
	if reason := componentReason(tag); reason != "" {
		return &NameError{Kind: "hold tag", Name: tag, Reason: reason}
	}
	return nil
}

// Property limits: ZAP_MAXNAMELEN for a user property's name, ZAP_MAXVALUELEN
// (8 KiB) for a user property's value.
const (
	maxPropNameLen  = 255
	maxPropValueLen = 8191
)

// ValidatePropertyName checks a native property ("readonly") or a user
// property ("flocker:epoch": lowercase letters, digits and -_.: with a colon).
func ValidatePropertyName(prop string) error {
	fail := func(reason string) error { return &NameError{Kind: "property", Name: prop, Reason: reason} }
	switch {
	case prop == "":
		return fail("empty")
	case len(prop) > maxPropNameLen:
		return fail(fmt.Sprintf("%d bytes, longer than the %d ZFS allows", len(prop), maxPropNameLen))
	case !('a' <= prop[0] && prop[0] <= 'z'):
		return fail("must begin with a lowercase letter")
	}
	for _, r := range prop {
		if !('a' <= r && r <= 'z' || '0' <= r && r <= '9' || r == '_' || r == '-' || r == '.' || r == ':') {
			return fail(fmt.Sprintf("character %q not allowed (only lowercase letters, digits and _-.:)", r))
		}
	}
	return nil
}

// ValidatePropertyValue checks a value for `zfs set`/`create -o`: printable
// text without tabs or newlines, which would break the tab-separated output
// the adapter parses.
func ValidatePropertyValue(prop, value string) error {
	if len(value) > maxPropValueLen {
		return &NameError{Kind: "property value", Name: prop + "=" + value[:32] + "...", Reason: fmt.Sprintf("%d bytes, longer than the %d ZFS allows", len(value), maxPropValueLen)}
	}
	for _, r := range value {
		if r < ' ' || r == 0x7f {
			return &NameError{Kind: "property value", Name: prop + "=" + value, Reason: fmt.Sprintf("control character %q not allowed", r)}
		}
	}
	return nil
}

// ValidateResumeToken checks a receive_resume_token before it is passed to
// `zfs send -t`: OpenZFS writes "1-" followed by hex fields joined by '-'.
func ValidateResumeToken(token string) error {
	fail := func(reason string) error { return &NameError{Kind: "resume token", Name: token, Reason: reason} }
	if token == "" || token == "-" {
		return fail("empty")
	}
	if token[0] < '0' || token[0] > '9' {
		return fail("must begin with a digit (the token version)")
	}
	for _, r := range token {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f' || 'A' <= r && r <= 'F' || r == '-') {
			return fail(fmt.Sprintf("character %q not allowed (only hex digits and '-')", r))
		}
	}
	return nil
}
