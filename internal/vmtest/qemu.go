package vmtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// vm is one guest of one attempt.
type vm struct {
	guest  Guest
	index  int
	dir    string // this guest's files: disks, console.log, exit-report
	nonce  string
	share  string   // share disk image
	images *Images  // boot files
	net    *os.File // this end of the guest link, or nil
	tap    bool     // net is a tap device, not a stream socket
}

func (v *vm) console() string { return filepath.Join(v.dir, "console.log") }
func (v *vm) report() string  { return filepath.Join(v.dir, "exit-report") }
func (v *vm) outImg() string  { return filepath.Join(v.dir, "out.img") }
func (v *vm) disk(d Disk) string {
	return filepath.Join(v.dir, "disk-"+d.Serial+".img")
}

// prepare gives the guest fresh disks and empty logs (a retry starts over).
func (v *vm) prepare(ctx context.Context) error {
	if err := os.RemoveAll(v.dir); err != nil {
		return fmt.Errorf("guest %s: %w", v.guest.Name, err)
	}
	if err := os.MkdirAll(v.dir, 0o755); err != nil {
		return fmt.Errorf("guest %s: %w", v.guest.Name, err)
	}
	for _, d := range v.guest.Disks {
		if err := sparseFile(v.disk(d), d.Size); err != nil {
			return fmt.Errorf("guest %s: disk %s: %w", v.guest.Name, d.Serial, err)
		}
	}
	if v.guest.Out {
		if err := mkfsExt4(ctx, v.outImg(), "out", "", outDiskSize); err != nil {
			return fmt.Errorf("guest %s: %w", v.guest.Name, err)
		}
	}
	return nil
}

// args is the qemu command line. Kept free of side effects so it can be
// checked in a unit test.
func (v *vm) args() []string {
	g := v.guest
	// no_timer_check: on a loaded host the emulated timer may miss the
	// kernel's boot-time IO-APIC check, which then panics ("IO-APIC +
	// timer doesn't work!", seen at load 25).
	cmdline := []string{"console=ttyS0", "panic=-1", "loglevel=4", "no_timer_check",
		"flocker.name=" + g.Name, "flocker.nonce=" + v.nonce}
	if g.IP != "" {
		cmdline = append(cmdline, "flocker.ip="+g.IP)
	}
	a := []string{
		"-accel", "tcg,thread=multi", "-machine", "pc", "-cpu", "max",
		"-smp", strconv.Itoa(g.CPUs), "-m", strconv.Itoa(g.MemoryMiB),
		// Nothing implicit: no monitor, display, NIC or drive unless listed.
		"-nodefaults", "-no-reboot", "-display", "none",
		// ttyS0 is the console; ttyS1 carries only the exit report.
		"-serial", "file:" + v.console(), "-serial", "file:" + v.report(),
		"-kernel", v.images.Kernel, "-initrd", v.images.Initramfs,
		"-append", strings.Join(cmdline, " "),
	}
	drive := func(id, file, serial, opts string) {
		a = append(a, "-drive", "file="+file+",if=none,id="+id+",format=raw"+opts,
			"-device", "virtio-blk-pci,drive="+id+",serial="+serial)
	}
	drive("share", v.share, "share", ",readonly=on")
	for i, d := range g.Disks {
		drive("disk"+strconv.Itoa(i), v.disk(d), d.Serial, ",cache=unsafe,discard=unmap")
	}
	if g.Out {
		drive("out", v.outImg(), "out", "")
	}
	if v.net != nil {
		// fd 3 is the first of exec.Cmd.ExtraFiles.
		backend := "socket,id=net0,fd=3"
		if v.tap {
			backend = "tap,id=net0,fd=3"
		}
		a = append(a, "-netdev", backend,
			"-device", fmt.Sprintf("virtio-net-pci,netdev=net0,mac=52:54:00:f1:0c:%02x", v.index+1))
	}
	return a
}

// run boots the guest and waits for qemu to exit or ctx to end, which kills
// this qemu (and only it) by its PID.
func (v *vm) run(ctx context.Context) (GuestResult, error) {
	gr := GuestResult{Name: v.guest.Name, ExitCode: -1}
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", v.args()...)
	var qemuOut bytes.Buffer
	cmd.Stdout = &qemuOut
	cmd.Stderr = &qemuOut
	cmd.WaitDelay = 5 * time.Second
	// If the test process dies, its guests die with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if v.net != nil {
		cmd.ExtraFiles = []*os.File{v.net}
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return gr, fmt.Errorf("guest %s: starting qemu: %w", v.guest.Name, err)
	}
	waitErr := cmd.Wait()
	gr.Elapsed = time.Since(start)

	console, err := os.ReadFile(v.console())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return gr, fmt.Errorf("guest %s: %w", v.guest.Name, err)
	}
	gr.Console = strings.ReplaceAll(string(console), "\r\n", "\n")
	report, err := os.ReadFile(v.report())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return gr, fmt.Errorf("guest %s: %w", v.guest.Name, err)
	}
	if code, ok := parseExitReport(report, v.nonce); ok {
		gr.ExitCode = code
	}
	// qemu failing by itself (not killed by us) before the guest reported is
	// a setup problem (bad argument, missing file), not a guest failure.
	if waitErr != nil && ctx.Err() == nil && gr.ExitCode < 0 && len(console) == 0 {
		return gr, fmt.Errorf("guest %s: qemu: %w: %s", v.guest.Name, waitErr, strings.TrimSpace(qemuOut.String()))
	}
	if qemuOut.Len() > 0 {
		gr.Console += "\n[qemu] " + strings.TrimSpace(qemuOut.String()) + "\n"
	}
	if v.guest.Out {
		if gr.Out, err = copyOut(context.WithoutCancel(ctx), v.outImg(), filepath.Join(v.dir, "out")); err != nil {
			return gr, fmt.Errorf("guest %s: %w", v.guest.Name, err)
		}
	}
	return gr, nil
}

// sparseFile creates an empty file of the given size that takes no space.
func sparseFile(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if err := f.Truncate(size); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// mkfsExt4 makes an ext4 image of size bytes at img, filled from dir if set.
func mkfsExt4(ctx context.Context, img, label, dir string, size int64) error {
	if err := os.Remove(img); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("%s disk: %w", label, err)
	}
	if err := sparseFile(img, size); err != nil {
		return fmt.Errorf("%s disk: %w", label, err)
	}
	args := []string{"-q", "-F", "-L", label, "-E", "root_owner=0:0"}
	if dir != "" {
		args = append(args, "-d", dir)
	}
	args = append(args, img)
	out, err := exec.CommandContext(ctx, "mkfs.ext4", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s disk: mkfs.ext4: %w: %s", label, err, bytes.TrimSpace(out))
	}
	return nil
}

// copyOut extracts the out disk's files into dir with debugfs (no loop
// device or mount needed) and reads them.
func copyOut(ctx context.Context, img, dir string) (map[string][]byte, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("out disk: %w", err)
	}
	out, err := exec.CommandContext(ctx, "debugfs", "-R", "rdump / "+dir, img).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("out disk: debugfs: %w: %s", err, bytes.TrimSpace(out))
	}
	files, err := readOut(dir)
	if err != nil {
		return nil, fmt.Errorf("out disk: %w", err)
	}
	return files, nil
}
