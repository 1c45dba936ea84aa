package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"gopkg.in/ini.v1"

	"github.com/flockerha/flocker/snapshot"
	"github.com/flockerha/flocker/transport/pki"
)

// iniOptions turns off the ini.v1 features that would let a mistake pass (see
// the package comment). The scan blanks duplicate and malformed lines before
// ini.v1 sees them, so AllowShadows and friends stay off.
var iniOptions = ini.LoadOptions{
	KeyValueDelimiters:       "=",
	IgnoreContinuation:       true,
	SpaceBeforeInlineComment: true,
	PreserveSurroundedQuote:  true,
}

// source remembers where a Config's values were written.
type source struct {
	file     string
	sections map[string]int            // section -> header line
	keys     map[string]map[string]int // section -> key -> line
	bad      map[string]map[string]bool
}

func (s *source) line(section, key string) int {
	if n := s.keys[section][key]; n > 0 {
		return n
	}
	return s.sections[section]
}

// field is one key of a section and how to store its value.
type field struct {
	key string
	set func(c *Config, d *Dataset, v string) error
}

// datasetKind stands for every `dataset "NAME"` section in the schema.
const datasetKind = `dataset "NAME"`

// sectionKinds lists the sections in the order the documentation gives them.
var sectionKinds = []string{"node", "peer", "tls", "admin", datasetKind, "snapshot", "replication", "notify", "failover", "state"}

var schema = map[string][]field{
	"node": {
		{"name", func(c *Config, _ *Dataset, v string) error { return setName(&c.Node.Name, v) }},
		{"listen", func(c *Config, _ *Dataset, v string) (err error) { c.Node.Listen, err = ParseAddrPort(v); return }},
		{"status", func(c *Config, _ *Dataset, v string) (err error) { c.Node.Status, err = ParseAddrPort(v); return }},
	},
	"peer": {
		{"name", func(c *Config, _ *Dataset, v string) error { return setName(&c.Peer.Name, v) }},
		{"address", func(c *Config, _ *Dataset, v string) (err error) { c.Peer.Address, err = ParsePeerAddress(v); return }},
		{"fingerprint", func(c *Config, _ *Dataset, v string) error {
			if _, err := pki.ParseFingerprint(v); err != nil {
				return err
			}
			c.Peer.Fingerprint = v
			return nil
		}},
		{"status", func(c *Config, _ *Dataset, v string) (err error) { c.Peer.Status, err = ParsePeerAddress(v); return }},
	},
	"tls": {
		{"cert", func(c *Config, _ *Dataset, v string) error { c.TLS.Cert = v; return nil }},
		{"key", func(c *Config, _ *Dataset, v string) error { c.TLS.Key = v; return nil }},
	},
	"admin": {
		{"token_file", func(c *Config, _ *Dataset, v string) error { c.Admin.TokenFile = v; return nil }},
		{"socket", func(c *Config, _ *Dataset, v string) error {
			if v == "" {
				return errors.New("empty: name the admin socket's path (default " + DefaultAdminSocket + ")")
			}
			c.Admin.Socket = v
			return nil
		}},
	},
	datasetKind: {
		{"zfs", func(_ *Config, d *Dataset, v string) error {
			if err := snapshot.ValidateDataset(v); err != nil {
				return err
			}
			d.ZFS = v
			return nil
		}},
		{"vip", func(_ *Config, d *Dataset, v string) (err error) {
			if v != "" {
				d.VIP, err = ParseVIP(v)
			}
			return
		}},
		{"interface", func(_ *Config, d *Dataset, v string) error {
			if v != "" {
				if err := CheckInterface(v); err != nil {
					return err
				}
			}
			d.Interface = v
			return nil
		}},
		{"start", func(_ *Config, d *Dataset, v string) error { d.Start = v; return nil }},
		{"stop", func(_ *Config, d *Dataset, v string) error { d.Stop = v; return nil }},
		{"check", func(_ *Config, d *Dataset, v string) error { d.Check = v; return nil }},
		{"probe", func(_ *Config, d *Dataset, v string) (err error) {
			if v != "" {
				d.ProbePort, err = ParseProbe(v)
			}
			return
		}},
	},
	"snapshot": {
		{"min_interval", func(c *Config, _ *Dataset, v string) (err error) {
			c.Snapshot.MinInterval, err = parseDuration(v)
			return
		}},
		{"retention", func(c *Config, _ *Dataset, v string) (err error) {
			c.Snapshot.Retention, err = snapshot.ParseRetention(v)
			return
		}},
	},
	"replication": {
		{"bandwidth", func(c *Config, _ *Dataset, v string) (err error) {
			c.Replication.Bandwidth, err = ParseBandwidth(v)
			return
		}},
		{"lag_threshold", func(c *Config, _ *Dataset, v string) (err error) {
			c.Replication.LagThreshold, err = parsePositiveDuration(v)
			return
		}},
	},
	"notify": {
		{"mode", func(c *Config, _ *Dataset, v string) (err error) { c.Notify.Mode, err = parseNotifyMode(v); return }},
		{"interval", func(c *Config, _ *Dataset, v string) (err error) {
			c.Notify.Interval, err = parsePositiveDuration(v)
			return
		}},
	},
	"failover": {
		{"heartbeat", func(c *Config, _ *Dataset, v string) (err error) {
			c.Failover.Heartbeat, err = parsePositiveDuration(v)
			return
		}},
		{"timeout", func(c *Config, _ *Dataset, v string) (err error) {
			c.Failover.Timeout, err = parsePositiveDuration(v)
			return
		}},
		{"witness", func(c *Config, _ *Dataset, v string) (err error) {
			if v != "" {
				c.Failover.Witness, err = ParseIP(v)
			}
			return
		}},
		{"divergence", func(c *Config, _ *Dataset, v string) (err error) {
			c.Failover.Divergence, err = parseDivergence(v)
			return
		}},
		{"check_failures", func(c *Config, _ *Dataset, v string) (err error) {
			c.Failover.CheckFailures, err = parseCount(v)
			return
		}},
	},
	"state": {
		{"role", func(c *Config, _ *Dataset, v string) (err error) { c.State.Role, err = ParseRole(v); return }},
		{"epoch", func(c *Config, _ *Dataset, v string) (err error) { c.State.Epoch, err = parseUint(v); return }},
	},
}

func setName(dst *string, v string) error {
	if err := CheckName(v); err != nil {
		return err
	}
	*dst = v
	return nil
}

// Load reads and parses the config file at path (see Parse).
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes and validates a config. filename names it in problems and
// anchors its relative paths. The error, when not nil, is Problems listing
// everything found; the Config then holds what did decode (a refused value
// keeps its default), for tools that report on a broken file, and must not
// be acted on.
func Parse(filename string, data []byte) (*Config, error) {
	c, probs := decode(filename, data)
	probs = append(probs, c.validate()...)
	return c, probs.errOrNil()
}

// Decode is Parse without Validate: every value is checked, but required
// keys and cross-field rules are not. It serves tools that edit a config
// that is not complete yet (flocker trust).
func Decode(filename string, data []byte) (*Config, error) {
	c, probs := decode(filename, data)
	return c, probs.errOrNil()
}

func decode(filename string, data []byte) (*Config, Problems) {
	c := defaults()
	src := &source{file: filename, sections: map[string]int{}, keys: map[string]map[string]int{}, bad: map[string]map[string]bool{}}
	c.src = src
	lay := scan(data)
	probs := lay.problems
	add := func(line int, section, key, msg string) {
		probs = append(probs, Problem{Line: line, Section: section, Key: key, Msg: msg})
	}
	f, err := ini.LoadSources(iniOptions, lay.clean)
	if err != nil {
		// The scan refuses every line ini.v1 can fail on; reaching this is a
		// bug in the scan, reported rather than hidden.
		add(0, "", "", "ini: "+err.Error())
		return c, withFile(probs, filename)
	}
	for _, b := range lay.blocks {
		if b.dup {
			continue
		}
		kind, d := b.name, (*Dataset)(nil)
		if m := datasetHeader.FindStringSubmatch(b.raw); m != nil {
			kind = datasetKind
			if err := CheckName(m[1]); err != nil {
				add(b.line, b.name, "", err.Error())
			}
			c.Datasets = append(c.Datasets, Dataset{Name: m[1]})
			d = &c.Datasets[len(c.Datasets)-1]
		}
		fields, known := schema[kind]
		if !known {
			add(b.line, b.name, "", unknownSection(b.raw))
			continue
		}
		src.sections[b.name] = b.line
		src.keys[b.name] = map[string]int{}
		src.bad[b.name] = map[string]bool{}
		sec, err := f.GetSection(b.raw)
		if err != nil {
			add(b.line, b.name, "", "ini: "+err.Error())
			continue
		}
		for _, k := range b.keys {
			fld := lookupField(fields, k.name)
			if fld == nil {
				add(k.line, b.name, k.name, unknownKey(kind, k.name))
				continue
			}
			src.keys[b.name][k.name] = k.line
			key, err := sec.GetKey(k.name)
			if err != nil {
				add(k.line, b.name, k.name, "ini: "+err.Error())
				continue
			}
			// Value, not String: String would expand %(name)s references.
			if err := fld.set(c, d, key.Value()); err != nil {
				src.bad[b.name][k.name] = true
				add(k.line, b.name, k.name, err.Error())
			}
		}
	}
	dir := filepath.Dir(filename)
	c.TLS.Cert = resolve(dir, c.TLS.Cert)
	c.TLS.Key = resolve(dir, c.TLS.Key)
	c.Admin.TokenFile = resolve(dir, c.Admin.TokenFile)
	c.Admin.Socket = resolve(dir, c.Admin.Socket)
	return c, withFile(probs, filename)
}

func withFile(ps Problems, file string) Problems {
	for i := range ps {
		ps[i].File = file
	}
	return ps
}

// resolve makes a path from the file relative to the file's directory.
func resolve(dir, p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

func lookupField(fields []field, key string) *field {
	for i := range fields {
		if fields[i].key == key {
			return &fields[i]
		}
	}
	return nil
}

func unknownSection(raw string) string {
	lower := strings.ToLower(raw)
	for _, k := range sectionKinds {
		if lower == k || k == datasetKind && datasetHeader.MatchString(lower) {
			return fmt.Sprintf("unknown section (names are case-sensitive: [%s])", k)
		}
	}
	if strings.HasPrefix(lower, "dataset") {
		return `unknown section (a dataset section is written [dataset "NAME"])`
	}
	names := make([]string, len(sectionKinds))
	for i, k := range sectionKinds {
		names[i] = "[" + k + "]"
	}
	return "unknown section (known: " + strings.Join(names, " ") + ")"
}

func unknownKey(kind, key string) string {
	fields := schema[kind]
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.key
		if strings.EqualFold(f.key, key) {
			return fmt.Sprintf("unknown key (names are case-sensitive: %s)", f.key)
		}
	}
	sort.Strings(names)
	return fmt.Sprintf("unknown key (known in [%s]: %s)", kind, strings.Join(names, ", "))
}
