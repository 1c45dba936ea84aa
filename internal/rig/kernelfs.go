package rig

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// Where the BPF loader expects tracefs and bpffs. Neither is mounted at boot
// on these machines.
const (
	TracefsPath = "/sys/kernel/tracing"
	BPFFSPath   = "/sys/fs/bpf"
)

// Magic numbers statfs reports for tracefs and bpffs (linux/magic.h).
const (
	tracefsMagic = 0x74726163
	bpffsMagic   = 0xcafe4a11
)

// EnsureKernelFS mounts tracefs and bpffs at their usual places when they are
// not mounted there yet. It is idempotent, and it never unmounts anything: the
// mounts are for every user of the machine.
func EnsureKernelFS() error {
	return errors.Join(
		ensureMounted("tracefs", TracefsPath, tracefsMagic),
		ensureMounted("bpf", BPFFSPath, bpffsMagic),
	)
}

func ensureMounted(fstype, path string, magic int64) error {
	if mounted, err := hasFS(path, magic); err != nil || mounted {
		return err
	}
	err := unix.Mount(fstype, path, fstype, 0, "")
	if errors.Is(err, unix.EBUSY) {
		err = nil // mounted meanwhile by another process
	}
	if err != nil {
		return fmt.Errorf("mounting %s on %s: %w", fstype, path, err)
	}
	if mounted, err := hasFS(path, magic); err != nil || !mounted {
		return fmt.Errorf("mounted %s on %s but statfs does not show it (err %v)", fstype, path, err)
	}
	return nil
}

func hasFS(path string, magic int64) (bool, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false, fmt.Errorf("statfs %s: %w", path, err)
	}
	return int64(st.Type) == magic, nil
}
