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
