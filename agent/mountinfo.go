//go:build linux

package agent

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Mount is one line of /proc/self/mountinfo, the fields the watcher uses.
type Mount struct {
	Dev        uint64 // st_dev of files on it (unix.Mkdev of major:minor)
	Root       string // the filesystem's directory mounted here ("/", or a bind mount's subtree)
	Mountpoint string
	FSType     string
	Source     string // for ZFS: the dataset
}

// MountTable maps each mountpoint to the mount on top of it (the last one
// listed when mounts are stacked).
type MountTable map[string]Mount

// ReadMounts reads this process's mount table.
func ReadMounts() (MountTable, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	return ParseMountinfo(b)
}

// ParseMountinfo parses /proc/PID/mountinfo (proc(5)): "ID PARENT
// MAJOR:MINOR ROOT MOUNTPOINT OPTIONS [OPTIONAL...] - FSTYPE SOURCE SUPER".
func ParseMountinfo(b []byte) (MountTable, error) {
	t := MountTable{}
	for i, line := range bytes.Split(b, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		f := strings.Fields(string(line))
		sep := -1
		for j := 6; j < len(f); j++ {
			if f[j] == "-" {
				sep = j
				break
			}
		}
		if len(f) < 5 || sep < 0 || sep+2 >= len(f) {
			return nil, fmt.Errorf("mountinfo line %d: malformed: %q", i+1, line)
		}
		maj, min, ok := strings.Cut(f[2], ":")
		ma, err1 := strconv.ParseUint(maj, 10, 32)
		mi, err2 := strconv.ParseUint(min, 10, 32)
		// The kernel's dev_t has 12 bits of major and 20 of minor.
		if !ok || err1 != nil || err2 != nil || ma >= 1<<12 || mi >= 1<<20 {
			return nil, fmt.Errorf("mountinfo line %d: device %q is not MAJOR:MINOR", i+1, f[2])
		}
		m := Mount{
			Dev:        unix.Mkdev(uint32(ma), uint32(mi)),
			Root:       unescapeMountinfo(f[3]),
			Mountpoint: unescapeMountinfo(f[4]),
			FSType:     f[sep+1],
			Source:     unescapeMountinfo(f[sep+2]),
		}
		t[m.Mountpoint] = m
	}
	return t, nil
}

// unescapeMountinfo undoes the kernel's octal escapes (\040 for a space,
// \011, \012, \134) in mountinfo paths.
func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// KernelDev is Dev in the kernel's encoding (major<<20|minor), the s_dev
// BPF programs compare.
func (m Mount) KernelDev() uint32 { return kernelDev(m.Dev) }

// IsZFS reports whether m is a ZFS dataset: OpenZFS mounts as "zfs",
// zfs-fuse as "fuse.zfs".
func (m Mount) IsZFS() bool { return m.FSType == "zfs" || m.FSType == "fuse.zfs" }
