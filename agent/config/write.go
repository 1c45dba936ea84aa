package config

import (
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"

	"gopkg.in/ini.v1"

	"github.com/flockerha/flocker/internal/atomicfile"
)

// FileMode is the mode every rewrite leaves the config with: it may name
// commands run as root and the admin token's file.
const FileMode = 0o600

// WriteState records the agent's role and epoch in the [state] section of
// the file at path (see SetKeys).
func WriteState(path string, st State) error {
	if _, err := ParseRole(string(st.Role)); err != nil {
		return fmt.Errorf("writing state to %s: %w", path, err)
	}
	return SetKeys(path, "state", "role", string(st.Role), "epoch", strconv.FormatUint(st.Epoch, 10))
}

// SetKeys sets keys (given as key, value, key, value...) in one section of
// the config file at path, changing nothing else: the text of each existing
// value is replaced in place, keeping the line's spacing and inline comment;
// a missing key is added after the section's last key; a missing section is
// added at the end of the file. Every other byte, comments and order
// included, stays as it was.
//
// The result must decode without a problem (Decode) and read back the values
// written, or nothing is written. The file is replaced atomically (temporary
// file, fsync, rename, fsync of the directory), keeps its owner and ends up
// with mode 0600. SetKeys does not lock: the agent owns the file while it
// runs, and operator commands edit it while it does not.
func SetKeys(path, section string, kv ...string) error {
	if len(kv)%2 != 0 {
		return fmt.Errorf("updating %s: odd number of key/value arguments", path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("updating config: %w", err)
	}
	out, err := setKeys(data, section, kv)
	if err != nil {
		return fmt.Errorf("updating %s: %w", path, err)
	}
	if _, err := Decode(path, out); err != nil {
		return fmt.Errorf("updating %s: refused, the result would not parse (nothing written):\n%w", path, err)
	}
	for i := 0; i < len(kv); i += 2 {
		got, ok := readValue(out, section, kv[i])
		if !ok || got != kv[i+1] {
			return fmt.Errorf("updating %s: refused, [%s] %s = %q would read back as %q (nothing written)",
				path, section, kv[i], kv[i+1], got)
		}
	}
	if err := atomicfile.Write(path, out, FileMode); err != nil {
		return fmt.Errorf("updating config: %w", err)
	}
	return nil
}

// edit replaces data[at:end] with text.
type edit struct {
	at, end int
	text    string
}

// setKeys computes the new file content; it does no I/O.
func setKeys(data []byte, section string, kv []string) ([]byte, error) {
	for i := 0; i < len(kv); i += 2 {
		if !keyName.MatchString(kv[i]) {
			return nil, fmt.Errorf("malformed key name %q", kv[i])
		}
		if strings.ContainsAny(kv[i+1], "\r\n") {
			return nil, fmt.Errorf("[%s] %s: value %q holds a line break", section, kv[i], kv[i+1])
		}
	}
	lay := scan(data)
	eol := lay.eol
	var edits []edit
	b := lay.block(section)
	if b == nil {
		var s strings.Builder
		if len(data) > 0 {
			if data[len(data)-1] != '\n' {
				s.WriteString(eol)
			}
			s.WriteString(eol) // a blank line before the new section
		}
		s.WriteString("[" + section + "]" + eol)
		for i := 0; i < len(kv); i += 2 {
			s.WriteString(kv[i] + " = " + kv[i+1] + eol)
		}
		edits = append(edits, edit{len(data), len(data), s.String()})
	} else {
		var added strings.Builder
		for i := 0; i < len(kv); i += 2 {
			k := b.key(kv[i])
			if k == nil {
				added.WriteString(kv[i] + " = " + kv[i+1] + eol)
				continue
			}
			text := kv[i+1]
			if k.valStart == k.valEnd && k.valStart > 0 && data[k.valStart-1] == '=' {
				text = " " + text // `key =` had no value: keep the usual spacing
			}
			edits = append(edits, edit{k.valStart, k.valEnd, text})
		}
		if added.Len() > 0 {
			text := added.String()
			if b.end == len(data) && (len(data) == 0 || data[len(data)-1] != '\n') {
				text = eol + text // the section's last line ends the file without a newline
			}
			edits = append(edits, edit{b.end, b.end, text})
		}
	}
	// Apply from the end so earlier offsets stay valid; insertions at one
	// place keep their order because SliceStable keeps it.
	sort.SliceStable(edits, func(i, j int) bool { return edits[i].at > edits[j].at })
	out := bytes.Clone(data)
	for _, e := range edits {
		out = append(out[:e.at:e.at], append([]byte(e.text), out[e.end:]...)...)
	}
	return out, nil
}

func (b *block) key(name string) *keyLine {
	for _, k := range b.keys {
		if k.name == name {
			return k
		}
	}
	return nil
}

// readValue reads one value the way decode does.
func readValue(data []byte, section, key string) (string, bool) {
	lay := scan(data)
	b := lay.block(section)
	if b == nil || b.key(key) == nil {
		return "", false
	}
	f, err := ini.LoadSources(iniOptions, lay.clean)
	if err != nil {
		return "", false
	}
	sec, err := f.GetSection(b.raw)
	if err != nil {
		return "", false
	}
	k, err := sec.GetKey(key)
	if err != nil {
		return "", false
	}
	return k.Value(), true
}
