package rig

import "time"

// Test hooks for the external tests in package rig_test.

// ErrInjected is the error a build step fails with under WithFailAt.
var ErrInjected = errInjected

// WithFailAt makes NewNetwork fail right after the named build step
// ("switch", "host-a", "host-b", "host-c").
func WithFailAt(o NetworkOptions, step string) NetworkOptions {
	o.failAt = step
	return o
}

// SetWedgeTimings shortens the wedge probe timeout and the watchdog's period
// for a test process.
func SetWedgeTimings(probe, every time.Duration) {
	wedgeProbeTimeout, wedgeCheckEvery = probe, every
}

// DetachDaemonMounts lazily unmounts every zfs-fuse mount in this mount
// namespace (a test's private namespace: the copies of the machine's).
var DetachDaemonMounts = detachDaemonMounts
