package snapshot

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
)

// ZFS is flocker's one adapter to ZFS: every zfs and zpool command flocker
// runs goes through one of its methods. Each method validates every name it
// is given before anything is executed, runs the tool without a shell,
// bounded by the caller's context, and turns a failure into typed errors
// (ZFSError and the Err* kinds) parsed from the tool's stderr. What a method
// needs from the dialect is checked against the detected Features; a
// missing feature is ErrUnsupported, returned before anything runs.
//
// Two backends run the commands: github.com/mistifyio/go-zfs/v4 where it
// serves, and CLI, our own context-aware exec, where it falls short or the
// dialect differs. go-zfs serves only where its command lines and parsing
// hold: OpenZFS with `list -p` and the written property (detected: every
// go-zfs dataset call ends in `zfs list -Hp -o ...,written,logicalused`,
// which zfs-fuse refuses), and when the adapter's binaries are the zfs and
// zpool in PATH (go-zfs cannot be given others). Otherwise everything runs
// on CLI. Per operation, on such an OpenZFS:
//
//   - go-zfs: CreateDataset without Parents (CreateFilesystem), Exists of a
//     dataset or snapshot, Space, Written and Mountpoint (GetDataset; plus
//     `get mounted` for Mountpoint), SetProperty and SetProperties of one
//     property, Snapshot of one snapshot, DestroySnapshots of one snapshot
//     per dataset (and the one-by-one retry), DestroyDataset, Rollback and
//     RollbackDestroying (after our own listing check), Clone (after a
//     check that the parent exists: go-zfs always passes -p), Rename,
//     Mount, Unmount (never forced), Pools (ListZpools).
//   - CLI, go-zfs having no such call or the wrong shape: GetProperty and
//     GetProperties (go-zfs returns the value without its source, and one
//     property per exec), InheritProperty, Promote, batches (several
//     snapshots atomically, `destroy ds@a,b`, `set a=1 b=2` atomically),
//     create -p, ListSnapshots/GetSnapshots (guid, createtxg, creation in
//     one exec), holds, bookmarks, Exists of a bookmark, send and receive
//     (cancellable streams, resume tokens, -A, bookmarks as sources,
//     receive -o/-u, send -nP), Detect.
//
// How the go-zfs calls are held to the same rules:
//   - names are validated before the call is made, as for CLI;
//   - context: go-zfs takes none. The call runs in a goroutine; when the
//     context ends first the method returns the context's error at once
//     and the call is abandoned, its command killed by go-zfs v4's
//     package-level Runner (SIGTERM after goZFSChildLimit, SIGKILL
//     goZFSGrace later), which the first such adapter installs;
//   - errors: go-zfs's *zfs.Error carries the stderr, parsed by the same
//     parser into ZFSError; a panic in go-zfs's parsing becomes an error;
//   - logging: go-zfs's logger is a package global and stays unset; each
//     call is logged on the CLI's logger like an exec, with via=go-zfs;
//   - go-zfs re-reads the dataset after create, snapshot, clone, rename,
//     mount and unmount (one more `zfs list`), so a failure of that read
//     is reported although the change was made;
//   - go-zfs runs the tools with the process's environment, not LC_ALL=C.
//
// Resolving a mountpoint to its dataset reads /proc/self/mountinfo: no exec.
type ZFS struct {
	cli     *CLI
	dialect Dialect
	log     *slog.Logger
	// pathBinaries: the CLI runs the zfs and zpool PATH gives, which are
	// the ones go-zfs runs.
	pathBinaries bool
	goStats      *goZFSStats
}

// New detects the dialect of the tools cli runs (see Detect) and returns an
// adapter for it. log may be nil.
func New(ctx context.Context, cli *CLI, log *slog.Logger) (*ZFS, error) {
	d, err := cli.Detect(ctx)
	if err != nil {
		return nil, err
	}
	return NewWithDialect(cli, d, log), nil
}

// NewWithDialect returns an adapter for a dialect detected earlier (Detect
// costs several zfs executions; an agent detects once).
func NewWithDialect(cli *CLI, d Dialect, log *slog.Logger) *ZFS {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	z := &ZFS{cli: cli, dialect: d, log: log, pathBinaries: runsPathBinaries(cli), goStats: &goZFSStats{}}
	if goZFSFits(d) && z.pathBinaries {
		setGoZFSRunner()
	}
	log.Debug("zfs adapter", "dialect", d.Name, "go-zfs", goZFSFits(d) && z.pathBinaries, "go-zfs fits dialect", goZFSFits(d), "path binaries", z.pathBinaries)
	return z
}

// Dialect is what the adapter was built for.
func (z *ZFS) Dialect() Dialect { return z.dialect }

// zfs runs one zfs command for operation op on target and parses a failure.
func (z *ZFS) zfs(ctx context.Context, op, target string, args ...string) ([]byte, error) {
	out, err := z.cli.ZFS(ctx, args...)
	if err != nil {
		return out, zfsError(op, target, err)
	}
	return out, nil
}

// require returns ErrUnsupported for op when the dialect lacks feature.
func (z *ZFS) require(op string, ok bool, feature string) error {
	if ok {
		return nil
	}
	return fmt.Errorf("%s: %w: %s has no %s", op, ErrUnsupported, z.dialectName(), feature)
}

func (z *ZFS) dialectName() string {
	if z.dialect.Name == "" {
		return "this zfs"
	}
	return z.dialect.Name
}

// validate runs the checks on names and wraps the first failure with op.
func validate(op string, checks ...error) error {
	for _, err := range checks {
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}

// validateAll applies check to each name.
func validateAll(check func(string) error, names []string) error {
	for _, n := range names {
		if err := check(n); err != nil {
			return err
		}
	}
	return nil
}

// validateDatasetOrSnapshot accepts "pool/fs" and "pool/fs@snap".
func validateDatasetOrSnapshot(name string) error {
	if strings.Contains(name, "@") {
		return ValidateSnapshot(name)
	}
	return ValidateDataset(name)
}

// propArgs validates properties and returns them as "-o", "k=v" pairs in
// key order, so that commands (and their logs) do not depend on map order.
func propArgs(props map[string]string) ([]string, error) {
	var args []string
	for _, k := range slices.Sorted(maps.Keys(props)) {
		if err := ValidatePropertyName(k); err != nil {
			return nil, err
		}
		if err := ValidatePropertyValue(k, props[k]); err != nil {
			return nil, err
		}
		args = append(args, "-o", k+"="+props[k])
	}
	return args, nil
}

// datasetOf returns the dataset part of a snapshot or bookmark name.
func datasetOf(name string) string {
	if i := strings.IndexAny(name, "@#"); i >= 0 {
		return name[:i]
	}
	return name
}
