//go:build linux

package changes

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A minimal io_uring written against linux/io_uring.h: setup, the three
// mappings, one SQE, one CQE. The Go io_uring libraries are young and
// sparsely maintained, and a test that submits one plain write needs about a
// hundred lines, not a dependency.

type sqRingOffsets struct {
	head, tail, ringMask, ringEntries, flags, dropped, array, resv1 uint32
	userAddr                                                        uint64
}

type cqRingOffsets struct {
	head, tail, ringMask, ringEntries, overflow, cqes, flags, resv1 uint32
	userAddr                                                        uint64
}

// uringParams is struct io_uring_params (120 bytes).
type uringParams struct {
	sqEntries, cqEntries, flags, sqThreadCPU, sqThreadIdle, features, wqFD uint32
	resv                                                                   [3]uint32
	sqOff                                                                  sqRingOffsets
	cqOff                                                                  cqRingOffsets
}

// sqe is struct io_uring_sqe (64 bytes) with the fields a write uses.
type sqe struct {
	opcode      uint8
	flags       uint8
	ioprio      uint16
	fd          int32
	off         uint64
	addr        uint64
	len         uint32
	rwFlags     uint32
	userData    uint64
	bufIndex    uint16
	personality uint16
	spliceFDIn  int32
	addr3       uint64
	pad         uint64
}

// cqe is struct io_uring_cqe.
type cqe struct {
	userData uint64
	res      int32
	flags    uint32
}

var (
	_ [120]byte = [unsafe.Sizeof(uringParams{})]byte{}
	_ [64]byte  = [unsafe.Sizeof(sqe{})]byte{}
)

const (
	uringOffSQRing   = 0
	uringOffCQRing   = 0x8000000
	uringOffSQEs     = 0x10000000
	uringOpWrite     = 23 // IORING_OP_WRITE, Linux 5.6
	uringEnterGetEvs = 1  // IORING_ENTER_GETEVENTS
	uringEnterWakeup = 2  // IORING_ENTER_SQ_WAKEUP
	uringSetupSQPoll = 2  // IORING_SETUP_SQPOLL
	uringSQNeedWake  = 1  // IORING_SQ_NEED_WAKEUP
	uringRegFiles    = 2  // IORING_REGISTER_FILES
	uringSQEFixed    = 1  // IOSQE_FIXED_FILE
)

// ringMode is how a write reaches the kernel: by descriptor from this
// thread, through a registered (fixed) file, or submitted by the kernel's
// SQPOLL thread (no system call of this process submits it).
type ringMode int

const (
	ringPlain ringMode = iota
	ringFixed
	ringSQPoll
)

type ring struct {
	fd         int
	mode       ringMode
	sq, cq     []byte
	sqes       []byte
	p          uringParams
	unmapFuncs []func() error
}

// newRing sets up a ring; in ringFixed mode file is registered as fixed
// file 0.
func newRing(entries uint32, mode ringMode, file int) (*ring, error) {
	r := &ring{fd: -1, mode: mode}
	if mode == ringSQPoll {
		r.p.flags, r.p.sqThreadIdle = uringSetupSQPoll, 1000 // ms
	}
	fd, _, errno := unix.Syscall(unix.SYS_IO_URING_SETUP, uintptr(entries), uintptr(unsafe.Pointer(&r.p)), 0)
	if errno != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", errno)
	}
	r.fd = int(fd)
	mmap := func(off int64, size int) ([]byte, error) {
		b, err := unix.Mmap(r.fd, off, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
		if err != nil {
			return nil, fmt.Errorf("mapping io_uring region %#x: %w", off, err)
		}
		r.unmapFuncs = append(r.unmapFuncs, func() error { return unix.Munmap(b) })
		return b, nil
	}
	var err error
	if r.sq, err = mmap(uringOffSQRing, int(r.p.sqOff.array+r.p.sqEntries*4)); err != nil {
		return nil, errors.Join(err, r.close())
	}
	if r.cq, err = mmap(uringOffCQRing, int(r.p.cqOff.cqes+r.p.cqEntries*uint32(unsafe.Sizeof(cqe{})))); err != nil {
		return nil, errors.Join(err, r.close())
	}
	if r.sqes, err = mmap(uringOffSQEs, int(r.p.sqEntries)*int(unsafe.Sizeof(sqe{}))); err != nil {
		return nil, errors.Join(err, r.close())
	}
	if mode == ringFixed {
		fds := []int32{int32(file)}
		if _, _, errno := unix.Syscall6(unix.SYS_IO_URING_REGISTER, uintptr(r.fd), uringRegFiles, uintptr(unsafe.Pointer(&fds[0])), 1, 0, 0); errno != 0 {
			return nil, errors.Join(fmt.Errorf("registering a fixed file: %w", errno), r.close())
		}
	}
	return r, nil
}

func u32(b []byte, off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&b[off])) }

// write submits one IORING_OP_WRITE of buf at off and waits for its
// completion. buf must stay mapped until then (see anonPage).
//
// io_uring_enter returns the number it submitted even when its wait for
// the completion was cut short (a signal: Go preempts goroutines with
// SIGURG), so the CQ ring, not the return value, says whether the write
// completed; a repeated wait submits again only if the kernel's SQ head says
// it did not take the entry. The goroutine stays on its thread, since a
// completion can arrive as task work for the submitting thread.
func (r *ring) write(fd int, buf []byte, off uint64) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	tail := atomic.LoadUint32(u32(r.sq, r.p.sqOff.tail))
	idx := tail & *u32(r.sq, r.p.sqOff.ringMask)
	e := (*sqe)(unsafe.Pointer(&r.sqes[uintptr(idx)*unsafe.Sizeof(sqe{})]))
	*e = sqe{opcode: uringOpWrite, fd: int32(fd), off: off,
		addr: uint64(uintptr(unsafe.Pointer(&buf[0]))), len: uint32(len(buf)), userData: 1}
	if r.mode == ringFixed {
		e.flags, e.fd = uringSQEFixed, 0
	}
	*u32(r.sq, r.p.sqOff.array+idx*4) = idx
	atomic.StoreUint32(u32(r.sq, r.p.sqOff.tail), tail+1)

	head := atomic.LoadUint32(u32(r.cq, r.p.cqOff.head))
	deadline := time.Now().Add(uringWait)
	for head == atomic.LoadUint32(u32(r.cq, r.p.cqOff.tail)) {
		if time.Now().After(deadline) {
			return fmt.Errorf("io_uring: no completion within %v", uringWait)
		}
		toSubmit, flags := uintptr(0), uintptr(uringEnterGetEvs)
		if atomic.LoadUint32(u32(r.sq, r.p.sqOff.head)) != tail+1 {
			toSubmit = 1
		}
		if r.mode == ringSQPoll && atomic.LoadUint32(u32(r.sq, r.p.sqOff.flags))&uringSQNeedWake != 0 {
			flags |= uringEnterWakeup // the kernel thread went idle
		}
		_, _, errno := unix.Syscall6(unix.SYS_IO_URING_ENTER, uintptr(r.fd), toSubmit, 1, flags, 0, 0)
		if errno != 0 && errno != unix.EINTR && errno != unix.EAGAIN {
			return fmt.Errorf("io_uring_enter: %w", errno)
		}
	}
	ci := head & *u32(r.cq, r.p.cqOff.ringMask)
	c := *(*cqe)(unsafe.Pointer(&r.cq[uintptr(r.p.cqOff.cqes)+uintptr(ci)*unsafe.Sizeof(cqe{})]))
	atomic.StoreUint32(u32(r.cq, r.p.cqOff.head), head+1)
	if c.res < 0 {
		return fmt.Errorf("io_uring write: %w", unix.Errno(-c.res))
	}
	if int(c.res) != len(buf) {
		return fmt.Errorf("io_uring write: wrote %d bytes, want %d", c.res, len(buf))
	}
	return nil
}

// uringWait bounds the wait for one write's completion on a loaded machine.
const uringWait = 30 * time.Second

func (r *ring) close() error {
	var errs []error
	for _, f := range r.unmapFuncs {
		errs = append(errs, f())
	}
	r.unmapFuncs = nil
	if r.fd >= 0 {
		errs = append(errs, unix.Close(r.fd))
		r.fd = -1
	}
	return errors.Join(errs...)
}
