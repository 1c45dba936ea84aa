//go:build linux

package agent

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// mountEntry is one line of /proc/self/mountinfo, as far as the notifiers
// need it.
type mountEntry struct {
	dev    uint32 // kernel encoding, major<<20|minor
	root   string // the directory of the filesystem mounted here
	point  string // where it is mounted, unescaped
	fstype string
}

func readMountinfo() ([]mountEntry, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	return parseMountinfo(string(b))
}

// parseMountinfo parses mountinfo text (proc(5)):
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
func parseMountinfo(text string) ([]mountEntry, error) {
	var out []mountEntry
	for n, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		if line == "" {
			continue
		}
		f := strings.Fields(line)
		sep := -1
		for i := 6; i < len(f); i++ {
			if f[i] == "-" {
				sep = i
				break
			}
		}
		if len(f) < 7 || sep < 0 || sep+1 >= len(f) {
			return nil, fmt.Errorf("mountinfo line %d: malformed: %q", n+1, line)
		}
		majS, minS, ok := strings.Cut(f[2], ":")
		maj, err1 := strconv.ParseUint(majS, 10, 32)
		min, err2 := strconv.ParseUint(minS, 10, 32)
		if !ok || err1 != nil || err2 != nil || maj >= 1<<12 || min >= 1<<20 {
			return nil, fmt.Errorf("mountinfo line %d: device %q: want major:minor", n+1, f[2])
		}
		out = append(out, mountEntry{
			dev:    uint32(maj<<20 | min),
			root:   unescapeMount(f[3]),
			point:  unescapeMount(f[4]),
			fstype: f[sep+1],
		})
	}
	return out, nil
}

// unescapeMount undoes the kernel's octal escapes (\040 for a space, \011,
// \012, \134) in mountinfo paths.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
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
