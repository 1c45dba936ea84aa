package snapshot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	gozfs "github.com/mistifyio/go-zfs/v4"
)

// ListSnapshots returns the snapshots of one dataset (not of its children),
// oldest first by createtxg. One exec on either dialect:
//   - with `list -p` (OpenZFS): `zfs list -Hp -t snapshot -d 1 -o
//     name,guid,createtxg,creation`, one line per snapshot;
//   - without (zfs-fuse, whose list prints guid as "8.94E" and creation as a
//     date): `zfs get -Hp -d 1 -o name,property,value guid,createtxg,creation`,
//     which has no type filter, so the dataset's own rows and its children's
//     are dropped by name.
func (z *ZFS) ListSnapshots(ctx context.Context, dataset string) ([]Snapshot, error) {
	const op = "list snapshots"
	if err := validate(op, ValidateDataset(dataset)); err != nil {
		return nil, err
	}
	if z.dialect.Features.ListParsable {
		out, err := z.zfs(ctx, op, dataset, "list", "-Hp", "-t", "snapshot", "-d", "1", "-o", "name,guid,createtxg,creation", dataset)
		if err != nil {
			return nil, err
		}
		snaps, err := parseSnapshotList(string(out), dataset)
		if err != nil {
			return nil, fmt.Errorf("%s of %s: %w", op, dataset, err)
		}
		return sortedSnapshots(snaps), nil
	}
	out, err := z.zfs(ctx, op, dataset, "get", "-Hp", "-d", "1", "-o", "name,property,value", "guid,createtxg,creation", dataset)
	if err != nil {
		return nil, err
	}
	snaps, err := parseSnapshotGet(string(out), dataset+"@")
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", op, dataset, err)
	}
	return sortedSnapshots(snaps), nil
}

// GetSnapshots reads the GUID, createtxg and creation of named snapshots in
// one exec, in the order asked: what a caller that keeps its snapshot list in
// memory needs after creating or receiving snapshots, instead of a full list.
func (z *ZFS) GetSnapshots(ctx context.Context, names ...string) ([]Snapshot, error) {
	const op = "get snapshots"
	if len(names) == 0 {
		return nil, nil
	}
	if err := validate(op, validateAll(ValidateSnapshot, names)); err != nil {
		return nil, err
	}
	args := append([]string{"get", "-Hp", "-o", "name,property,value", "guid,createtxg,creation"}, names...)
	out, err := z.zfs(ctx, op, names[0], args...)
	if err != nil {
		return nil, err
	}
	snaps, err := parseSnapshotGet(string(out), "")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	byName := make(map[string]Snapshot, len(snaps))
	for _, s := range snaps {
		byName[s.Name] = s
	}
	res := make([]Snapshot, len(names))
	for i, n := range names {
		s, ok := byName[n]
		if !ok {
			return nil, fmt.Errorf("%s: zfs did not report %s", op, n)
		}
		res[i] = s
	}
	return res, nil
}

// parseSnapshotList reads `zfs list -Hp -o name,guid,createtxg,creation`.
// Rows of other datasets than want's snapshots are an error: -d 1 with
// -t snapshot lists only those.
func parseSnapshotList(out, dataset string) ([]Snapshot, error) {
	var snaps []Snapshot
	for line := range strings.Lines(out) {
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			return nil, fmt.Errorf("zfs list output line %q: %d fields, want 4", line, len(f))
		}
		if !strings.HasPrefix(f[0], dataset+"@") {
			return nil, fmt.Errorf("zfs list output line %q: not a snapshot of %s", line, dataset)
		}
		s, err := snapshotFromFields(f[0], f[1], f[2], f[3])
		if err != nil {
			return nil, err
		}
		snaps = append(snaps, s)
	}
	return snaps, nil
}

// parseSnapshotGet reads `zfs get -Hp -o name,property,value
// guid,createtxg,creation`, keeping the names with the given prefix (all
// when empty) that contain '@'. Each kept name must have all three values.
func parseSnapshotGet(out, prefix string) ([]Snapshot, error) {
	rows, err := parseGetRows(out, 3)
	if err != nil {
		return nil, err
	}
	type partial struct{ guid, txg, creation string }
	var order []string
	seen := map[string]*partial{}
	for _, r := range rows {
		if !strings.HasPrefix(r.name, prefix) || !strings.Contains(r.name, "@") {
			continue
		}
		p := seen[r.name]
		if p == nil {
			p = &partial{}
			seen[r.name] = p
			order = append(order, r.name)
		}
		switch r.prop {
		case "guid":
			p.guid = r.value
		case "createtxg":
			p.txg = r.value
		case "creation":
			p.creation = r.value
		default:
			return nil, fmt.Errorf("zfs get: unexpected property %q for %s", r.prop, r.name)
		}
	}
	snaps := make([]Snapshot, 0, len(order))
	for _, name := range order {
		p := seen[name]
		s, err := snapshotFromFields(name, p.guid, p.txg, p.creation)
		if err != nil {
			return nil, err
		}
		snaps = append(snaps, s)
	}
	return snaps, nil
}

func snapshotFromFields(name, guid, txg, creation string) (Snapshot, error) {
	g, err := strconv.ParseUint(guid, 10, 64)
	if err != nil {
		return Snapshot{}, fmt.Errorf("%s: guid %q: %w", name, guid, err)
	}
	t, err := strconv.ParseUint(txg, 10, 64)
	if err != nil {
		return Snapshot{}, fmt.Errorf("%s: createtxg %q: %w", name, txg, err)
	}
	c, err := strconv.ParseInt(creation, 10, 64)
	if err != nil {
		return Snapshot{}, fmt.Errorf("%s: creation %q: %w", name, creation, err)
	}
	return Snapshot{Name: name, GUID: g, CreateTXG: t, Creation: time.Unix(c, 0).UTC()}, nil
}

// Snapshot creates snapshots (full names, dataset@name). Where the dialect
// takes several at once (MultiSnapshot) they go in as few execs as it
// allows: OpenZFS takes at most one snapshot per dataset in one command, so
// snapshots of different datasets share an exec (atomic: all of it or none)
// and a second snapshot of the same dataset starts the next. Elsewhere
// (zfs-fuse) it is one exec per snapshot. Either way creation stops at the
// first failure, and the execs before it stand. A single snapshot goes
// through go-zfs where it fits (see ZFS).
func (z *ZFS) Snapshot(ctx context.Context, names ...string) error {
	const op = "snapshot"
	if len(names) == 0 {
		return nil
	}
	if err := validate(op, validateAll(ValidateSnapshot, names)); err != nil {
		return err
	}
	if len(names) == 1 && z.useGoZFS(goOpSnapshot) {
		ds, short, _ := strings.Cut(names[0], "@")
		return z.goZFS(ctx, goOpSnapshot, op, names[0], []string{"snapshot", names[0]}, func() error {
			_, err := goDataset(ds).Snapshot(short, false)
			return err
		})
	}
	var batches [][]string
	if z.dialect.Features.MultiSnapshot {
		batches = snapshotBatches(names)
	} else {
		for _, n := range names {
			batches = append(batches, []string{n})
		}
	}
	for _, b := range batches {
		if _, err := z.zfs(ctx, op, b[0], append([]string{"snapshot"}, b...)...); err != nil {
			return err
		}
	}
	return nil
}

// snapshotBatches splits names, in order, into batches with at most one
// snapshot per dataset.
func snapshotBatches(names []string) [][]string {
	var batches [][]string
	var inBatch map[string]bool
	for _, n := range names {
		ds := datasetOf(n)
		if inBatch == nil || inBatch[ds] {
			batches = append(batches, nil)
			inBatch = map[string]bool{}
		}
		inBatch[ds] = true
		batches[len(batches)-1] = append(batches[len(batches)-1], n)
	}
	return batches
}

// DestroySnapshots destroys snapshots (full names), trying every one: a
// held snapshot or one with clones is refused (ErrBusy/ErrHeld,
// ErrHasDependents) and the others are still destroyed; the errors of the
// refused ones are joined. Never -r, -R, -d or -f.
//
// Where the dialect takes a list (DestroySnapshotList) the snapshots of one
// dataset go in one exec as dataset@a,b,c; zfs skips names that do not
// exist there. That exec is atomic on OpenZFS (one refusal and none is
// destroyed), so when it fails each snapshot of that dataset is retried on
// its own. Elsewhere it is one exec per snapshot. A dataset's only snapshot
// in the list, and each retried alone, goes through go-zfs where it fits.
func (z *ZFS) DestroySnapshots(ctx context.Context, names ...string) error {
	const op = "destroy snapshots"
	if err := validate(op, validateAll(ValidateSnapshot, names)); err != nil {
		return err
	}
	one := func(n string) error {
		z.log.Info("destroying snapshot", "snapshot", n)
		if z.useGoZFS(goOpDestroySnapshot) {
			return z.goZFS(ctx, goOpDestroySnapshot, op, n, []string{"destroy", n}, func() error {
				return goDataset(n).Destroy(gozfs.DestroyDefault)
			})
		}
		_, err := z.zfs(ctx, op, n, "destroy", n)
		return err
	}
	var errs []error
	if !z.dialect.Features.DestroySnapshotList {
		for _, n := range names {
			if err := one(n); err != nil {
				errs = append(errs, err)
				if ctx.Err() != nil {
					break
				}
			}
		}
		return errors.Join(errs...)
	}
	var datasets []string
	short := map[string][]string{}
	for _, n := range names {
		ds, s, _ := strings.Cut(n, "@")
		if short[ds] == nil {
			datasets = append(datasets, ds)
		}
		short[ds] = append(short[ds], s)
	}
	for _, ds := range datasets {
		if len(short[ds]) == 1 {
			if err := one(ds + "@" + short[ds][0]); err != nil {
				errs = append(errs, err)
			}
			continue
		}
		arg := ds + "@" + strings.Join(short[ds], ",")
		z.log.Info("destroying snapshots", "dataset", ds, "snapshots", short[ds])
		_, err := z.zfs(ctx, op, arg, "destroy", arg)
		if err == nil {
			continue
		}
		if ctx.Err() != nil {
			errs = append(errs, err)
			continue
		}
		for _, s := range short[ds] {
			if err := one(ds + "@" + s); err != nil && !errors.Is(err, ErrNotFound) {
				// A missing name was skipped in the list form too.
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// Rollback rolls a dataset back to its newest snapshot, discarding changes
// made since. A snapshot that is not the newest is refused by zfs with
// ErrNewerSnapshots: destroying newer snapshots takes RollbackDestroying.
func (z *ZFS) Rollback(ctx context.Context, snapshot string) error {
	const op = "rollback"
	if err := validate(op, ValidateSnapshot(snapshot)); err != nil {
		return err
	}
	z.log.Info("rolling back", "to", snapshot)
	if z.useGoZFS(goOpRollback) {
		return z.goZFS(ctx, goOpRollback, op, snapshot, []string{"rollback", snapshot}, func() error {
			return goDataset(snapshot).Rollback(false)
		})
	}
	_, err := z.zfs(ctx, op, snapshot, "rollback", snapshot)
	return err
}

// RollbackDestroying rolls back to snapshot with `zfs rollback -r`, which
// destroys the snapshots (and bookmarks) newer than it. The caller names
// exactly the snapshots it accepts to lose, after making sure their data
// exists elsewhere (the policy is the caller's: DESIGN.md's "nothing is
// lost"); the adapter lists the dataset first and refuses, running nothing
// destructive, unless the newer snapshots are exactly those. Newer bookmarks
// are not checked: they hold no data.
func (z *ZFS) RollbackDestroying(ctx context.Context, snapshot string, destroyed []string) error {
	const op = "rollback destroying newer snapshots"
	if err := validate(op, ValidateSnapshot(snapshot), validateAll(ValidateSnapshot, destroyed)); err != nil {
		return err
	}
	ds := datasetOf(snapshot)
	snaps, err := z.ListSnapshots(ctx, ds)
	if err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	i := slices.IndexFunc(snaps, func(s Snapshot) bool { return s.Name == snapshot })
	if i < 0 {
		return &ZFSError{Op: op, Name: snapshot, Kinds: []error{ErrNotFound}, Msg: "snapshot not in the dataset's list"}
	}
	var newer []string
	for _, s := range snaps[i+1:] {
		newer = append(newer, s.Name)
	}
	want := slices.Sorted(slices.Values(destroyed))
	slices.Sort(newer)
	if !slices.Equal(newer, want) {
		return fmt.Errorf("%s to %s: refusing, %w: it would destroy %v, the caller accepted %v", op, snapshot, ErrNewerSnapshots, newer, want)
	}
	z.log.Warn("rolling back, destroying newer snapshots", "to", snapshot, "destroyed", newer)
	if z.useGoZFS(goOpRollback) {
		return z.goZFS(ctx, goOpRollback, op, snapshot, []string{"rollback", "-r", snapshot}, func() error {
			return goDataset(snapshot).Rollback(true)
		})
	}
	_, err = z.zfs(ctx, op, snapshot, "rollback", "-r", snapshot)
	return err
}

// Hold places the hold tag on snapshots in one `zfs hold`. Not atomic on
// every dialect: when some fail, the errors name each (ErrHoldExists,
// ErrNotFound) and the others may be held.
func (z *ZFS) Hold(ctx context.Context, tag string, snapshots ...string) error {
	const op = "hold"
	return z.holdOrRelease(ctx, op, tag, snapshots)
}

// Release removes the hold tag from snapshots in one `zfs release`; a
// snapshot without it gives ErrNoSuchHold (callers cleaning up stale holds
// ignore that).
func (z *ZFS) Release(ctx context.Context, tag string, snapshots ...string) error {
	const op = "release"
	return z.holdOrRelease(ctx, op, tag, snapshots)
}

func (z *ZFS) holdOrRelease(ctx context.Context, op, tag string, snapshots []string) error {
	if len(snapshots) == 0 {
		return nil
	}
	if err := validate(op, ValidateHoldTag(tag), validateAll(ValidateSnapshot, snapshots)); err != nil {
		return err
	}
	if err := z.require(op, z.dialect.Features.Holds, "holds"); err != nil {
		return err
	}
	_, err := z.zfs(ctx, op, snapshots[0], append([]string{op, tag}, snapshots...)...)
	return err
}

// SnapshotHolds are the holds on one snapshot.
type SnapshotHolds struct {
	Snapshot string
	Count    int // the userrefs property: holds of any tag
	// Tags are the hold tags, sorted; nil when the dialect cannot list them
	// (HoldsList false: zfs-fuse), where only Count is known.
	Tags []string
}

// Holds returns the held snapshots of a dataset: one exec for the userrefs
// of every snapshot, plus, where the dialect lists tags, one `zfs holds` for
// the held ones. Where tags cannot be listed, a caller that needs to drop a
// stale hold of its own releases its tag and ignores ErrNoSuchHold.
func (z *ZFS) Holds(ctx context.Context, dataset string) ([]SnapshotHolds, error) {
	const op = "holds"
	if err := validate(op, ValidateDataset(dataset)); err != nil {
		return nil, err
	}
	if err := z.require(op, z.dialect.Features.Holds, "holds"); err != nil {
		return nil, err
	}
	// No type filter (zfs-fuse's get has none): the dataset's own row and
	// its children's are dropped by name below.
	out, err := z.zfs(ctx, op, dataset, "get", "-Hp", "-d", "1", "-o", "name,property,value", "userrefs", dataset)
	if err != nil {
		return nil, err
	}
	rows, err := parseGetRows(string(out), 3)
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", op, dataset, err)
	}
	var held []SnapshotHolds
	for _, r := range rows {
		if !strings.HasPrefix(r.name, dataset+"@") || r.prop != "userrefs" {
			continue
		}
		n, err := strconv.Atoi(r.value)
		if err != nil {
			return nil, fmt.Errorf("%s of %s: userrefs %q of %s: %w", op, dataset, r.value, r.name, err)
		}
		if n > 0 {
			held = append(held, SnapshotHolds{Snapshot: r.name, Count: n})
		}
	}
	if len(held) == 0 || !z.dialect.Features.HoldsList {
		return held, nil
	}
	names := make([]string, len(held))
	for i, h := range held {
		names[i] = h.Snapshot
	}
	out, err = z.zfs(ctx, op, dataset, append([]string{"holds", "-H"}, names...)...)
	if err != nil {
		return nil, err
	}
	tags, err := parseHolds(string(out))
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", op, dataset, err)
	}
	for i := range held {
		held[i].Tags = tags[held[i].Snapshot]
		if held[i].Tags == nil {
			held[i].Tags = []string{}
		}
	}
	return held, nil
}

// parseHolds reads `zfs holds -H`: "SNAPSHOT\tTAG\tTIMESTAMP" per hold.
func parseHolds(out string) (map[string][]string, error) {
	tags := map[string][]string{}
	for line := range strings.Lines(out) {
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			return nil, fmt.Errorf("zfs holds output line %q: %d fields, want 3", line, len(f))
		}
		tags[f[0]] = append(tags[f[0]], f[1])
	}
	for _, t := range tags {
		slices.Sort(t)
	}
	return tags, nil
}

// CreateBookmark bookmarks a snapshot (or copies a bookmark): bookmark is
// the full new name, dataset#name.
func (z *ZFS) CreateBookmark(ctx context.Context, source, bookmark string) error {
	const op = "bookmark"
	srcCheck := ValidateSnapshot(source)
	if strings.Contains(source, "#") {
		srcCheck = ValidateBookmark(source)
	}
	if err := validate(op, srcCheck, ValidateBookmark(bookmark)); err != nil {
		return err
	}
	if err := z.require(op, z.dialect.Features.Bookmarks, "bookmarks"); err != nil {
		return err
	}
	_, err := z.zfs(ctx, op, bookmark, "bookmark", source, bookmark)
	return err
}

// ListBookmarks returns the bookmarks of one dataset, oldest first.
func (z *ZFS) ListBookmarks(ctx context.Context, dataset string) ([]Bookmark, error) {
	const op = "list bookmarks"
	if err := validate(op, ValidateDataset(dataset)); err != nil {
		return nil, err
	}
	if err := z.require(op, z.dialect.Features.Bookmarks && z.dialect.Features.ListParsable, "bookmarks"); err != nil {
		return nil, err
	}
	out, err := z.zfs(ctx, op, dataset, "list", "-Hp", "-t", "bookmark", "-d", "1", "-o", "name,guid,createtxg", dataset)
	if err != nil {
		return nil, err
	}
	marks, err := parseBookmarkList(string(out), dataset)
	if err != nil {
		return nil, fmt.Errorf("%s of %s: %w", op, dataset, err)
	}
	return marks, nil
}

func parseBookmarkList(out, dataset string) ([]Bookmark, error) {
	var marks []Bookmark
	for line := range strings.Lines(out) {
		line = strings.TrimSuffix(line, "\n")
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 3 {
			return nil, fmt.Errorf("zfs list output line %q: %d fields, want 3", line, len(f))
		}
		if !strings.HasPrefix(f[0], dataset+"#") {
			return nil, fmt.Errorf("zfs list output line %q: not a bookmark of %s", line, dataset)
		}
		g, err := strconv.ParseUint(f[1], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: guid %q: %w", f[0], f[1], err)
		}
		t, err := strconv.ParseUint(f[2], 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s: createtxg %q: %w", f[0], f[2], err)
		}
		marks = append(marks, Bookmark{Name: f[0], GUID: g, CreateTXG: t})
	}
	slices.SortFunc(marks, func(a, b Bookmark) int {
		return cmp.Or(cmp.Compare(a.CreateTXG, b.CreateTXG), strings.Compare(a.Name, b.Name))
	})
	return marks, nil
}

// DestroyBookmark destroys one bookmark.
func (z *ZFS) DestroyBookmark(ctx context.Context, bookmark string) error {
	const op = "destroy bookmark"
	if err := validate(op, ValidateBookmark(bookmark)); err != nil {
		return err
	}
	if err := z.require(op, z.dialect.Features.Bookmarks, "bookmarks"); err != nil {
		return err
	}
	_, err := z.zfs(ctx, op, bookmark, "destroy", bookmark)
	return err
}
