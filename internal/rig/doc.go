// Package rig builds two flocker "hosts" on one machine with real ZFS and a
// real network, for end-to-end tests, the demo and the benchmarks.
//
// It is a library, not only a test helper: every constructor returns an error
// and an object with an idempotent Close that joins its teardown errors.
// Package rigtest wraps it for tests (skip or fail through testutil, cleanup
// through t.Cleanup, logs to t.Log).
//
// The parts:
//
//   - EnsureZFS: makes sure the zfs-fuse daemon answers, starting it when it
//     does not; Close stops it only when this handle started it and no other
//     rig user and no pool is left on it.
//   - CreatePool: a pool on a sparse file in a rig-owned directory, with a
//     unique name (flkrig-<pid>-<n>-<random>) and its mountpoints under that
//     directory; Close destroys it and removes the directory.
//   - NewNetwork: hosts A, B and client C on one L2 segment, each in its own
//     network namespace, cabled to a bridge in a fourth "switch" namespace.
//   - EnsureKernelFS: mounts tracefs and bpffs when they are missing.
//
// Everything shared on the machine that rig creates (pools, namespaces) is
// recorded in an owner file under RunDir (default /run/flocker-rig) that the
// creating process holds flock'ed. Sweep (run by CreatePool and NewNetwork)
// removes what owners that died without Close left behind; a live owner's
// lock keeps its resources safe from other processes' sweeps.
//
// zfs-fuse caveat: never force an unmount (`zfs unmount -f`, `zpool destroy
// -f`) of a zfs-fuse file system that has a file open. Once the file is
// closed the pool stays busy for good; with `zfs unmount -f` the daemon even
// loops in its unmount handler holding the lock every FUSE request needs, so
// every zfs-fuse mount on the machine hangs. Only a daemon restart recovers.
// Pool teardown here therefore uses plain `zpool destroy`, which refuses a busy
// pool without changing anything, and retries it.
package rig
