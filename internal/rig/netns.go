package rig

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// NetnsDir is where named network namespaces are bind-mounted, as `ip netns`
// does, so an operator can inspect a rig with `ip netns exec NAME ...`.
const NetnsDir = "/run/netns"

// Namespace is a named network namespace the rig created.
type Namespace struct {
	Name string // as listed by `ip netns`
	Path string // NetnsDir/Name

	handle netns.NsHandle
	dev    uint64 // identity of the namespace (nsfs inode) for finding
	ino    uint64 // the processes inside it
}

// createNamespace makes a new named network namespace. unshare moves the
// calling thread into it, so the work runs on a locked thread that is put
// back afterwards; if it cannot be put back the thread stays locked and the
// Go runtime ends it with the goroutine instead of reusing it.
func createNamespace(name string) (*Namespace, error) {
	type result struct {
		ns  *Namespace
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("reading current network namespace: %w", err)}
			return
		}
		defer orig.Close()
		h, err := netns.NewNamed(name)
		if rerr := netns.Set(orig); rerr != nil {
			if h.IsOpen() {
				h.Close()
			}
			ch <- result{err: errors.Join(err, fmt.Errorf("returning from new namespace: %w", rerr))}
			return // thread stays locked: discarded
		}
		runtime.UnlockOSThread()
		if err != nil {
			ch <- result{err: fmt.Errorf("creating network namespace %s: %w", name, err)}
			return
		}
		ch <- result{ns: &Namespace{Name: name, Path: filepath.Join(NetnsDir, name), handle: h}}
	}()
	r := <-ch
	if r.err != nil {
		return nil, r.err
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(r.ns.handle), &st); err != nil {
		r.ns.handle.Close()
		return nil, errors.Join(fmt.Errorf("stat of namespace %s: %w", name, err), netns.DeleteNamed(name))
	}
	r.ns.dev, r.ns.ino = st.Dev, st.Ino
	return r.ns, nil
}

// Do runs fn with the calling goroutine's work moved into the namespace: fn
// runs on a fresh goroutine locked to an OS thread that joins the namespace
// and is restored afterwards (or discarded if it cannot be). Sockets fn opens
// stay in the namespace for their whole life, so a listener or connection
// made inside Do can be used outside it. Goroutines fn starts do NOT run in
// the namespace. A panic in fn is re-raised in the caller.
func (ns *Namespace) Do(fn func() error) error {
	type result struct {
		err   error
		panic any
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("reading current network namespace: %w", err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(ns.handle); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("entering namespace %s: %w", ns.Name, err)}
			return
		}
		var r result
		func() {
			defer func() { r.panic = recover() }()
			r.err = fn()
		}()
		if err := netns.Set(orig); err != nil {
			r.err = errors.Join(r.err, fmt.Errorf("leaving namespace %s: %w", ns.Name, err))
			ch <- r
			return // thread stays locked: discarded
		}
		runtime.UnlockOSThread()
		ch <- r
	}()
	r := <-ch
	if r.panic != nil {
		panic(r.panic)
	}
	return r.err
}

// Command returns a command that runs name in the namespace through
// `nsenter --net=PATH`. Only the network namespace changes: the process
// shares the caller's mount namespace (zfs-fuse mounts included), pid
// namespace and filesystem. nsenter execs name, so Process.Pid is name's.
func (ns *Namespace) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + ns.Path, "--", name}, args...)...)
}

// Processes lists the pids of processes whose network namespace is this one
// (judged by each process's main thread), the calling process excepted.
func (ns *Namespace) Processes() []int {
	return processesInNetns(ns.dev, ns.ino)
}

func processesInNetns(dev, ino uint64) []int {
	var pids []int
	self := os.Getpid()
	for _, pid := range allPIDs() {
		if pid == self {
			continue
		}
		var st unix.Stat_t
		if unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st) == nil && st.Dev == dev && st.Ino == ino {
			pids = append(pids, pid)
		}
	}
	return pids
}

// KillAll sends SIGKILL to every process in the namespace, as a power loss
// would, and waits until none is left (new children forked meanwhile are
// killed too). Killed children of this process stay zombies until their
// exec.Cmd is waited for; they hold nothing.
func (ns *Namespace) KillAll() error {
	return killAllIn(ns.Name, ns.dev, ns.ino, 10*time.Second)
}

func killAllIn(name string, dev, ino uint64, wait time.Duration) error {
	deadline := time.Now().Add(wait)
	for {
		pids := processesInNetns(dev, ino)
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("namespace %s: processes %v survive SIGKILL", name, pids)
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("namespace %s: killing pid %d: %w", name, pid, err)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// netlinkHandle opens a netlink socket inside the namespace.
func (ns *Namespace) netlinkHandle() (*netlink.Handle, error) {
	h, err := netlink.NewHandleAt(ns.handle)
	if err != nil {
		return nil, fmt.Errorf("netlink in namespace %s: %w", ns.Name, err)
	}
	return h, nil
}

// Links lists the namespace's interface names (a small inspection aid).
func (ns *Namespace) Links() ([]string, error) {
	h, err := ns.netlinkHandle()
	if err != nil {
		return nil, err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing links in %s: %w", ns.Name, err)
	}
	names := make([]string, 0, len(links))
	for _, l := range links {
		names = append(names, l.Attrs().Name)
	}
	slices.Sort(names)
	return names, nil
}

// remove kills what runs inside, deletes every link but lo (a socket kept
// open elsewhere would keep the namespace, and so its veths, alive after its
// name is gone), and unmounts and removes the name.
func (ns *Namespace) remove() error {
	var errs []error
	if err := ns.KillAll(); err != nil {
		errs = append(errs, err)
	}
	if err := deleteLinks(ns); err != nil {
		errs = append(errs, err)
	}
	if ns.handle.IsOpen() {
		ns.handle.Close()
		ns.handle = netns.None()
	}
	if err := unmountNamespace(ns.Name); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func deleteLinks(ns *Namespace) error {
	h, err := ns.netlinkHandle()
	if err != nil {
		return err
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return fmt.Errorf("listing links in %s: %w", ns.Name, err)
	}
	var errs []error
	for _, l := range links {
		if l.Attrs().Name == "lo" {
			continue
		}
		// Deleting one end of a veth deletes its peer too: ignore a link
		// that is already gone.
		if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("deleting %s in %s: %w", l.Attrs().Name, ns.Name, err))
		}
	}
	return errors.Join(errs...)
}

func unmountNamespace(name string) error {
	path := filepath.Join(NetnsDir, name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmounting %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("removing %s: %w", path, err)
	}
	return nil
}

// removeNamespaceByName removes a namespace a dead owner left (Sweep): it is
// opened by name, emptied and removed; a missing one is fine.
func removeNamespaceByName(name string) error {
	if !strings.HasPrefix(name, namePrefix) || strings.ContainsRune(name, '/') {
		return fmt.Errorf("refusing to remove namespace %q: not a rig name", name)
	}
	h, err := netns.GetFromName(name)
	if errors.Is(err, os.ErrNotExist) {
		return unmountNamespace(name) // maybe an empty mountpoint file
	}
	if err != nil {
		return fmt.Errorf("opening namespace %s: %w", name, err)
	}
	// A file left without its bind mount (the owner died between creating
	// it and mounting) is a plain file, not a namespace.
	var sfs unix.Statfs_t
	if err := unix.Fstatfs(int(h), &sfs); err != nil || sfs.Type != unix.NSFS_MAGIC {
		h.Close()
		return unmountNamespace(name)
	}
	ns := &Namespace{Name: name, Path: filepath.Join(NetnsDir, name), handle: h}
	var st unix.Stat_t
	if err := unix.Fstat(int(h), &st); err != nil {
		h.Close()
		return fmt.Errorf("stat of namespace %s: %w", name, err)
	}
	ns.dev, ns.ino = st.Dev, st.Ino
	return ns.remove()
}
