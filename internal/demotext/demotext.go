// Package demotext holds what the host demo (test/demo) and the VM demo
// (internal/vmdemo) both print: the probe summary and text helpers.
package demotext

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
)

type probeReport struct {
	Kernel struct {
		Release string `json:"release"`
	} `json:"kernel"`
	Tiers []struct {
		Name      string `json:"name"`
		Available bool   `json:"available"`
		Reason    string `json:"reason"`
	} `json:"tiers"`
	ZFS struct {
		Dialect  string          `json:"dialect"`
		Version  string          `json:"version"`
		Features map[string]bool `json:"features"`
	} `json:"zfs"`
}

// SummarizeProbe turns `flocker probe --json` into a few lines: kernel,
// ZFS, each notifier tier and why it was refused, ZFS features.
func SummarizeProbe(raw string) (string, error) {
	var r probeReport
	if err := json.Unmarshal([]byte(raw), &r); err != nil {
		return "", fmt.Errorf("decoding probe JSON: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "kernel %s; ZFS %s (%s)\n", r.Kernel.Release, r.ZFS.Dialect, r.ZFS.Version)
	for _, t := range r.Tiers {
		if t.Available {
			fmt.Fprintf(&b, "  tier %-10s available\n", t.Name)
		} else {
			fmt.Fprintf(&b, "  tier %-10s refused: %s\n", t.Name, FirstLine(t.Reason, 90))
		}
	}
	var have, lack []string
	for f, ok := range r.ZFS.Features {
		if ok {
			have = append(have, f)
		} else {
			lack = append(lack, f)
		}
	}
	fmt.Fprintf(&b, "  zfs features present: %s; absent: %s\n", strings.Join(slices.Sorted(slices.Values(have)), ", "), strings.Join(slices.Sorted(slices.Values(lack)), ", "))
	return b.String(), nil
}

// FirstLine is s up to its first newline, cut to max bytes with "...".
func FirstLine(s string, max int) string {
	s, _, _ = strings.Cut(s, "\n")
	if len(s) > max {
		s = s[:max] + "..."
	}
	return s
}

// Indent prefixes every line of s; the result ends in one newline.
func Indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return prefix + strings.Join(lines, "\n"+prefix) + "\n"
}

// Human renders a byte count in binary units.
func Human(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f B", n)
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}
