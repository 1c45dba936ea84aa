package config

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The scan reads the file line by line beside ini.v1, which knows no line
// numbers and forgives too much. It records where every section and key is
// (for messages, and for SetKeys to edit the text in place), reports the
// lines ini.v1 would misread or silently merge, and blanks those lines in the
// copy handed to ini.v1, so the two never disagree about what a line is.

// block is one section as written.
type block struct {
	raw  string // between the brackets: the name ini.v1 gives it
	name string // canonical name used in messages and lookups
	line int
	end  int // offset just past the last key line, or the header if none
	dup  bool
	keys []*keyLine
}

// keyLine is one `key = value` line.
type keyLine struct {
	name             string
	line             int
	valStart, valEnd int // the value as ini.v1 reads it, as offsets into the source
}

type layout struct {
	blocks   []*block
	eol      string // the file's line ending, for lines SetKeys adds
	clean    []byte // the source with refused lines blanked, for ini.v1
	problems Problems
}

func (l *layout) block(name string) *block {
	for _, b := range l.blocks {
		if b.name == name && !b.dup {
			return b
		}
	}
	return nil
}

var (
	datasetHeader = regexp.MustCompile(`^dataset\s+"(.*)"$`)
	keyName       = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	utf8BOM       = []byte("\xef\xbb\xbf")
)

// canonicalSection names a section the way messages and lookups do: a
// dataset header is normalised to `dataset "NAME"`, anything else is kept.
func canonicalSection(raw string) string {
	if m := datasetHeader.FindStringSubmatch(raw); m != nil {
		return DatasetSection(m[1])
	}
	return raw
}

func scan(data []byte) *layout {
	l := &layout{eol: "\n"}
	var clean bytes.Buffer
	clean.Grow(len(data))
	var cur *block
	broken := false // under a header that was refused
	for off, n := 0, 1; off < len(data); n++ {
		end := bytes.IndexByte(data[off:], '\n')
		next := len(data)
		if end < 0 {
			end = len(data)
		} else {
			end += off
			next = end + 1
		}
		lineStart := off
		if n == 1 && bytes.HasPrefix(data[off:end], utf8BOM) {
			lineStart += len(utf8BOM)
		}
		contentEnd := end
		if contentEnd > lineStart && data[contentEnd-1] == '\r' {
			contentEnd--
			if n == 1 {
				l.eol = "\r\n"
			}
		}
		nl := data[end:next] // "\n", or nothing on a last line without one
		off = next

		section := ""
		if cur != nil {
			section = cur.name
		}
		refuse := func(key, format string, args ...any) {
			l.problems = append(l.problems, Problem{Line: n, Section: section, Key: key, Msg: fmt.Sprintf(format, args...)})
			clean.Write(nl)
		}
		content := string(data[lineStart:contentEnd])
		if !utf8.ValidString(content) {
			refuse("", "line is not valid UTF-8")
			continue
		}
		t := strings.TrimLeftFunc(content, unicode.IsSpace)
		indent := len(content) - len(t)
		switch {
		case t == "" || t[0] == '#' || t[0] == ';':
			clean.Write(data[lineStart:next])
			continue

		case t[0] == '[':
			section, cur, broken = "", nil, true
			closing := strings.IndexByte(t, ']')
			if closing < 0 {
				refuse("", "unclosed section header %q", t)
				continue
			}
			raw := t[1:closing]
			if raw == "" {
				refuse("", "empty section name")
				continue
			}
			broken = false
			cur = &block{raw: raw, name: canonicalSection(raw), line: n, end: next}
			section = cur.name
			if first := l.block(cur.name); first != nil {
				cur.dup = true
				refuse("", "duplicate section (first at line %d)", first.line)
			} else {
				// Only the name goes to ini.v1: it would take the LAST ']'
				// on the line, one inside a trailing comment included.
				clean.WriteString("[" + raw + "]")
				clean.Write(nl)
			}
			l.blocks = append(l.blocks, cur)
			if rest := strings.TrimSpace(t[closing+1:]); rest != "" && rest[0] != '#' && rest[0] != ';' {
				l.problems = append(l.problems, Problem{Line: n, Section: section,
					Msg: fmt.Sprintf("unexpected text %q after section header", rest)})
			}
			continue
		}

		// A key line.
		eq := strings.IndexByte(t, '=')
		switch {
		case broken:
			clean.Write(nl) // under a refused header, reported there
			continue
		case cur == nil:
			refuse("", "%q is outside any section (put it under a [section] header)", t)
			continue
		case cur.dup:
			clean.Write(nl) // the duplicate section is reported once, at its header
			continue
		case eq < 0:
			refuse("", "expected key = value, got %q", t)
			continue
		}
		name := strings.TrimSpace(t[:eq])
		if name == "" {
			refuse("", "missing key name before '='")
			continue
		}
		if !keyName.MatchString(name) || name == "-" {
			refuse("", "malformed key name %q (letters, digits, '_', '.', '-')", name)
			continue
		}
		for _, k := range cur.keys {
			if k.name == name {
				refuse(name, "duplicate key (first at line %d)", k.line)
				name = ""
				break
			}
		}
		if name == "" {
			continue
		}
		// The value, found as ini.v1 finds it.
		valueOff := lineStart + indent + eq + 1
		rest := content[indent+eq+1:]
		v := strings.TrimLeftFunc(rest, unicode.IsSpace)
		vs := valueOff + len(rest) - len(v)
		var ve int
		switch {
		case strings.HasPrefix(v, `"""`):
			refuse(name, `values in """triple quotes""" are not supported`)
			continue
		case strings.HasPrefix(v, "`"):
			closing := strings.LastIndexByte(v[1:], '`')
			if closing < 0 {
				refuse(name, "unclosed backtick (a value ends on its line)")
				continue
			}
			vs++
			ve = vs + closing
			if after := strings.TrimSpace(v[closing+2:]); after != "" && after[0] != '#' && after[0] != ';' {
				l.problems = append(l.problems, Problem{Line: n, Section: section, Key: name,
					Msg: fmt.Sprintf("unexpected text %q after closing backtick", after)})
			}
		default:
			v = strings.TrimRightFunc(v, unicode.IsSpace)
			// ini.v1 looks for " #" first and only then for " ;".
			i := strings.Index(v, " #")
			if i < 0 {
				i = strings.Index(v, " ;")
			}
			if i >= 0 {
				v = strings.TrimRightFunc(v[:i], unicode.IsSpace)
			}
			ve = vs + len(v)
		}
		cur.keys = append(cur.keys, &keyLine{name: name, line: n, valStart: vs, valEnd: ve})
		cur.end = next
		clean.Write(data[lineStart:next])
	}
	l.clean = clean.Bytes()
	return l
}
