package main

import (
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// pipedWidth is the table width when stdout is not a terminal.
const pipedWidth = 100

// minWidth keeps a tiny terminal from squeezing cells to nothing.
const minWidth = 40

// maxCellLines bounds a wrapped cell; the rest is cut with an ellipsis
// (--json keeps the whole text).
const maxCellLines = 3

// outputWidth is the terminal's width when w is a terminal, else
// pipedWidth.
func outputWidth(w io.Writer) int {
	f, ok := w.(*os.File)
	if !ok {
		return pipedWidth
	}
	ws, err := unix.IoctlGetWinsize(int(f.Fd()), unix.TIOCGWINSZ)
	if err != nil || ws.Col == 0 {
		return pipedWidth
	}
	return max(int(ws.Col), minWidth)
}

// table lays out rows of a label and two values within a width: the
// values' columns share what the labels leave, and longer cells wrap onto
// continuation lines.
type table struct {
	rows [][3]string
}

func (t *table) row(label, a, b string) { t.rows = append(t.rows, [3]string{label, a, b}) }

const tableGap = 3

func (t *table) render(w io.Writer, width int) {
	var natural [3]int
	for _, r := range t.rows {
		for i, c := range r {
			natural[i] = max(natural[i], runeLen(c))
		}
	}
	label := natural[0]
	avail := max(width-label-2*tableGap, 2)
	a, b := natural[1], natural[2]
	if a+b > avail {
		// Each value column gets half, and whatever the other leaves.
		half := avail / 2
		a = min(a, max(half, avail-b))
		b = min(b, avail-a)
		a = max(a, 1)
		b = max(b, 1)
	}
	var sb strings.Builder
	for _, r := range t.rows {
		la, lb := wrap(r[1], a), wrap(r[2], b)
		for i := range max(len(la), len(lb)) {
			cells := [3]string{"", at(la, i), at(lb, i)}
			if i == 0 {
				cells[0] = r[0]
			}
			line := pad(cells[0], label) + strings.Repeat(" ", tableGap) + pad(cells[1], a) + strings.Repeat(" ", tableGap) + cells[2]
			sb.WriteString(strings.TrimRight(line, " "))
			sb.WriteByte('\n')
		}
	}
	io.WriteString(w, sb.String())
}

func at(lines []string, i int) string {
	if i < len(lines) {
		return lines[i]
	}
	return ""
}

func pad(s string, n int) string {
	return s + strings.Repeat(" ", max(n-runeLen(s), 0))
}

func runeLen(s string) int { return utf8.RuneCountInString(s) }

// wrapWords breaks s into lines of at most width runes, at spaces where
// it can and inside words longer than width.
func wrapWords(s string, width int) []string {
	width = max(width, 1)
	var lines []string
	var cur []rune
	flush := func() {
		lines = append(lines, string(cur))
		cur = cur[:0]
	}
	for _, word := range strings.Fields(s) {
		rw := []rune(word)
		if len(cur) > 0 && len(cur)+1+len(rw) > width {
			flush()
		}
		if len(cur) > 0 {
			cur = append(cur, ' ')
		}
		for len(cur)+len(rw) > width {
			n := width - len(cur)
			cur = append(cur, rw[:n]...)
			rw = rw[n:]
			flush()
		}
		cur = append(cur, rw...)
	}
	if len(cur) > 0 || len(lines) == 0 {
		flush()
	}
	return lines
}

// wrap is wrapWords cut after maxCellLines lines, the last ending in an
// ellipsis.
func wrap(s string, width int) []string {
	if runeLen(s) <= width {
		return []string{s}
	}
	lines := wrapWords(s, width)
	if len(lines) > maxCellLines {
		last := []rune(lines[maxCellLines-1])
		if len(last) >= width {
			last = last[:max(width-1, 0)]
		}
		lines = append(lines[:maxCellLines-1], string(last)+"…")
	}
	return lines
}

// wrapIndented wraps text to width after a prefix that takes prefixWidth
// columns on screen (it may hold colour codes); continuation lines are
// indented to line up under the text. It does not cut.
func wrapIndented(prefix string, prefixWidth int, text string, width int) string {
	indent := strings.Repeat(" ", prefixWidth)
	var sb strings.Builder
	for i, l := range wrapWords(text, max(width-prefixWidth, 20)) {
		if i == 0 {
			sb.WriteString(prefix)
		} else {
			sb.WriteString(indent)
		}
		sb.WriteString(l)
		sb.WriteByte('\n')
	}
	return sb.String()
}
