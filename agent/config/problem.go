package config

import (
	"sort"
	"strconv"
	"strings"
)

// Problem is one thing wrong in a config file.
type Problem struct {
	File    string // as given to Parse; "" for a Config built in code
	Line    int    // 1-based; 0 when no line applies (a missing section)
	Section string // e.g. "failover" or `dataset "app"`; "" for the file as a whole
	Key     string // "" for the section as a whole
	Msg     string
}

// String renders the problem as `file:line: [section] key: message`, leaving
// out the parts that are not known.
func (p Problem) String() string {
	var b strings.Builder
	if p.File != "" {
		b.WriteString(p.File)
		if p.Line > 0 {
			b.WriteString(":" + strconv.Itoa(p.Line))
		}
		b.WriteString(": ")
	} else if p.Line > 0 {
		b.WriteString("line " + strconv.Itoa(p.Line) + ": ")
	}
	if p.Section != "" {
		b.WriteString("[" + p.Section + "]")
		if p.Key != "" {
			b.WriteString(" " + p.Key)
		}
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in a config; it is the error Parse, Load
// and Validate return.
type Problems []Problem

func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Sort orders problems by line; those without a line (a missing section)
// come last, and equal lines keep the order they were found in.
func (ps Problems) Sort() {
	sort.SliceStable(ps, func(i, j int) bool {
		li, lj := ps[i].Line, ps[j].Line
		if li == 0 || lj == 0 {
			return li != 0 && lj == 0
		}
		return li < lj
	})
}

// errOrNil returns ps as an error, or nil when it is empty (a nil Problems
// in an error interface would not compare equal to nil).
func (ps Problems) errOrNil() error {
	if len(ps) == 0 {
		return nil
	}
	ps.Sort()
	return ps
}
