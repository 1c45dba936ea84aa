package snapshot

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	gozfs "github.com/mistifyio/go-zfs/v4"
)

// Property is one property of a dataset as `zfs get -Hp` reports it.
type Property struct {
	// Value in parsable form: sizes and times as plain integers, "-" when
	// the property has no value (an unset user property, say).
	Value string
	// Source: "local", "default", "inherited from DATASET", "received",
	// "temporary", or "-" for read-only properties.
	Source string
}

// IsSet reports whether the property has a value ("-" is none).
func (p Property) IsSet() bool { return p.Value != "-" }

// Uint parses a numeric value.
func (p Property) Uint() (uint64, error) {
	return strconv.ParseUint(p.Value, 10, 64)
}

// On parses an on/off property (readonly, atime, ...).
func (p Property) On() (bool, error) {
	switch p.Value {
	case "on", "yes":
		return true, nil
	case "off", "no":
		return false, nil
	}
	return false, fmt.Errorf("value %q is neither on nor off", p.Value)
}

// getRow is one line of `zfs get -Hp -o name,property,value[,source]`.
type getRow struct {
	name, prop, value, source string
}

// parseGetRows reads tab-separated `zfs get -H` output with the given number
// of columns (3: name, property, value; 4: plus source). Names and values
// never hold tabs or newlines: names are validated and so are the values
// flocker sets, and zfs prints nothing else in those columns.
func parseGetRows(out string, cols int) ([]getRow, error) {
	var rows []getRow
	for line := range strings.Lines(out) {
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != cols {
			return nil, fmt.Errorf("zfs get output line %q: %d fields, want %d", line, len(f), cols)
		}
		r := getRow{name: f[0], prop: f[1], value: f[2]}
		if cols == 4 {
			r.source = f[3]
		}
		rows = append(rows, r)
	}
	return rows, nil
}

// GetProperties reads properties of a dataset, snapshot or bookmark in one
// `zfs get -Hp`. Every asked property is in the result; a user property
// never set has the value "-".
//
// zfs-fuse quirk (measured): while a file system is mounted, zfs-fuse reports
// the properties that are also mount options (readonly, atime, exec,
// devices, setuid, xattr) from the FUSE mount, which is always "rw": readonly
// reads "off" with source "temporary" even when it is set to on, which
// zfs-fuse nevertheless enforces (writes fail with EROFS). Unmounted, the
// set value is reported.
func (z *ZFS) GetProperties(ctx context.Context, name string, props ...string) (map[string]Property, error) {
	const op = "get properties"
	if len(props) == 0 {
		return nil, fmt.Errorf("%s of %s: no properties asked", op, name)
	}
	if err := validate(op, validateAnyName(name), validateAll(ValidatePropertyName, props)); err != nil {
		return nil, err
	}
	out, err := z.zfs(ctx, op, name, "get", "-Hp", "-o", "name,property,value,source", strings.Join(props, ","), name)
	if err != nil {
		return nil, err
	}
	rows, err := parseGetRows(string(out), 4)
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", op, name, err)
	}
	got := make(map[string]Property, len(rows))
	for _, r := range rows {
		if r.name == name {
			got[r.prop] = Property{Value: r.value, Source: r.source}
		}
	}
	for _, p := range props {
		if _, ok := got[p]; !ok {
			return nil, fmt.Errorf("%s of %s: zfs did not report %s", op, name, p)
		}
	}
	return got, nil
}

// GetProperty reads one property.
func (z *ZFS) GetProperty(ctx context.Context, name, prop string) (Property, error) {
	m, err := z.GetProperties(ctx, name, prop)
	if err != nil {
		return Property{}, err
	}
	return m[prop], nil
}

// SetProperties sets properties on a dataset or snapshot: one `zfs set` where
// the dialect takes several (SetMultiple, atomic there), else one per
// property in key order (then a failure leaves the earlier ones set).
func (z *ZFS) SetProperties(ctx context.Context, name string, props map[string]string) error {
	const op = "set properties"
	if len(props) == 0 {
		return nil
	}
	if err := validate(op, validateAnyName(name)); err != nil {
		return err
	}
	var pairs []string
	for _, k := range slices.Sorted(maps.Keys(props)) {
		if err := validate(op, ValidatePropertyName(k), ValidatePropertyValue(k, props[k])); err != nil {
			return err
		}
		pairs = append(pairs, k+"="+props[k])
	}
	if len(pairs) == 1 && z.useGoZFS(goOpSetProperty) {
		k, v, _ := strings.Cut(pairs[0], "=")
		return z.goZFS(ctx, goOpSetProperty, op, name, []string{"set", pairs[0], name}, func() error {
			return goDataset(name).SetProperty(k, v)
		})
	}
	if z.dialect.Features.SetMultiple {
		_, err := z.zfs(ctx, op, name, append(append([]string{"set"}, pairs...), name)...)
		return err
	}
	for _, p := range pairs {
		if _, err := z.zfs(ctx, op, name, "set", p, name); err != nil {
			return err
		}
	}
	return nil
}

// SetProperty sets one property.
func (z *ZFS) SetProperty(ctx context.Context, name, prop, value string) error {
	return z.SetProperties(ctx, name, map[string]string{prop: value})
}

// InheritProperty clears a local value: a user property becomes unset, a
// native one takes its parent's or the default value.
func (z *ZFS) InheritProperty(ctx context.Context, name, prop string) error {
	const op = "inherit property"
	if err := validate(op, validateAnyName(name), ValidatePropertyName(prop)); err != nil {
		return err
	}
	_, err := z.zfs(ctx, op, name, "inherit", prop, name)
	return err
}

// Written returns the bytes written to a dataset since its newest snapshot
// (the written property; OpenZFS only).
func (z *ZFS) Written(ctx context.Context, dataset string) (uint64, error) {
	const op = "written"
	if err := validate(op, ValidateDataset(dataset)); err != nil {
		return 0, err
	}
	if err := z.require(op, z.dialect.Features.WrittenProperty, "written property"); err != nil {
		return 0, err
	}
	if z.useGoZFS(goOpWritten) {
		var n uint64
		err := z.goZFS(ctx, goOpWritten, op, dataset, goZFSListArgs(dataset), func() error {
			ds, err := gozfs.GetDataset(dataset)
			if err == nil {
				n = ds.Written
			}
			return err
		})
		return n, err
	}
	p, err := z.GetProperty(ctx, dataset, "written")
	if err != nil {
		return 0, err
	}
	n, err := p.Uint()
	if err != nil {
		return 0, fmt.Errorf("%s of %s: %w", op, dataset, err)
	}
	return n, nil
}

// Head says whether a dataset changed since its newest snapshot, for the
// divergence planner: from the written property where the dialect has it;
// HeadUnknown without running anything where it does not (zfs-fuse), which
// the planner treats as changed.
func (z *ZFS) Head(ctx context.Context, dataset string) (HeadState, error) {
	if !z.dialect.Features.WrittenProperty {
		if err := validate("head state", ValidateDataset(dataset)); err != nil {
			return HeadUnknown, err
		}
		return HeadUnknown, nil
	}
	n, err := z.Written(ctx, dataset)
	if err != nil {
		return HeadUnknown, err
	}
	if n == 0 {
		return HeadClean, nil
	}
	return HeadChanged, nil
}

// Space is a dataset's space accounting in bytes. For a pool's root dataset,
// Available is what the pool can still take (after ZFS's reserved slop).
type Space struct {
	Used      uint64
	Available uint64
}

// Space reads used and available for a dataset (a pool name gives the
// pool's root dataset). `zfs get -Hp` works on every dialect, unlike
// `zpool list -p`, which zfs-fuse lacks.
func (z *ZFS) Space(ctx context.Context, dataset string) (Space, error) {
	const op = "space"
	if !strings.ContainsAny(dataset, "@#") && z.useGoZFS(goOpSpace) {
		if err := validate(op, ValidateDataset(dataset)); err != nil {
			return Space{}, err
		}
		var sp Space
		err := z.goZFS(ctx, goOpSpace, op, dataset, goZFSListArgs(dataset), func() error {
			ds, err := gozfs.GetDataset(dataset)
			if err == nil {
				sp = Space{Used: ds.Used, Available: ds.Avail}
			}
			return err
		})
		return sp, err
	}
	m, err := z.GetProperties(ctx, dataset, "used", "available")
	if err != nil {
		return Space{}, err
	}
	used, err1 := m["used"].Uint()
	avail, err2 := m["available"].Uint()
	if err1 != nil || err2 != nil {
		return Space{}, fmt.Errorf("%s of %s: used %q, available %q: not numbers", op, dataset, m["used"].Value, m["available"].Value)
	}
	return Space{Used: used, Available: avail}, nil
}

// Pool is one imported pool.
type Pool struct {
	Name   string
	Health string // ONLINE, DEGRADED, FAULTED, ...
}

// Pools lists the imported pools with their health.
func (z *ZFS) Pools(ctx context.Context) ([]Pool, error) {
	if z.useGoZFS(goOpPools) {
		// `zpool list -Ho name`, then `zpool get -Hp ...` per pool.
		var pools []Pool
		err := z.goZFS(ctx, goOpPools, goOpPools, "", []string{"list", "-Ho", "name"}, func() error {
			zps, err := gozfs.ListZpools()
			for _, zp := range zps {
				pools = append(pools, Pool{Name: zp.Name, Health: zp.Health})
			}
			return err
		})
		if err != nil {
			return nil, err
		}
		return pools, nil
	}
	out, err := z.cli.Zpool(ctx, "list", "-H", "-o", "name,health")
	if err != nil {
		if strings.Contains(string(out)+stderrOf(err), "no pools available") {
			return nil, nil
		}
		return nil, zfsError("list pools", "", err)
	}
	var pools []Pool
	for line := range strings.Lines(string(out)) {
		line = strings.TrimSuffix(line, "\n")
		if line == "" || line == "no pools available" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 2 {
			return nil, fmt.Errorf("list pools: output line %q: want name and health", line)
		}
		pools = append(pools, Pool{Name: f[0], Health: f[1]})
	}
	return pools, nil
}

func stderrOf(err error) string {
	if ce := asCmdError(err); ce != nil {
		return ce.Stderr
	}
	return ""
}

// validateAnyName accepts a dataset, snapshot or bookmark name.
func validateAnyName(name string) error {
	switch {
	case strings.Contains(name, "@"):
		return ValidateSnapshot(name)
	case strings.Contains(name, "#"):
		return ValidateBookmark(name)
	}
	return ValidateDataset(name)
}
