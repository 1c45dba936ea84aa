//go:build linux

package agent

// Minimal Linux AIO and io_uring clients for the notifier tests: one write
// at a time, through the raw system calls (no library), so the tests drive
// exactly the kernel paths the hooks watch.

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// aioWrite writes data at off through io_submit and reaps it with
// io_getevents.
func aioWrite(fd int, data []byte, off int64) error {
	var ctx uint64
	if _, _, e := unix.Syscall(unix.SYS_IO_SETUP, 1, uintptr(unsafe.Pointer(&ctx)), 0); e != 0 {
		return fmt.Errorf("io_setup: %w", e)
	}
	defer unix.Syscall(unix.SYS_IO_DESTROY, uintptr(ctx), 0, 0)
	// struct iocb (uapi/linux/aio_abi.h), little endian
	var iocb [64]byte
	binary.LittleEndian.PutUint16(iocb[16:], 1) // IOCB_CMD_PWRITE
	binary.LittleEndian.PutUint32(iocb[20:], uint32(fd))
	binary.LittleEndian.PutUint64(iocb[24:], uint64(uintptr(unsafe.Pointer(&data[0]))))
	binary.LittleEndian.PutUint64(iocb[32:], uint64(len(data)))
	binary.LittleEndian.PutUint64(iocb[40:], uint64(off))
	ptr := uintptr(unsafe.Pointer(&iocb[0]))
	n, _, e := unix.Syscall(unix.SYS_IO_SUBMIT, uintptr(ctx), 1, uintptr(unsafe.Pointer(&ptr)))
	if e != 0 || n != 1 {
		return fmt.Errorf("io_submit: %d, %v", n, e)
	}
	var ev [32]byte // struct io_event
	n, _, e = unix.Syscall6(unix.SYS_IO_GETEVENTS, uintptr(ctx), 1, 1, uintptr(unsafe.Pointer(&ev[0])), 0, 0)
	runtime.KeepAlive(data)
	runtime.KeepAlive(&iocb)
	if e != 0 || n != 1 {
		return fmt.Errorf("io_getevents: %d, %v", n, e)
	}
	if res := int64(binary.LittleEndian.Uint64(ev[16:])); res != int64(len(data)) {
		return fmt.Errorf("aio write: result %d, want %d", res, len(data))
	}
	return nil
}

// io_uring ABI (uapi/linux/io_uring.h).
const (
	ioringOpWrite         = 23
	ioringSetupSQPoll     = 1 << 1
	ioringFeatSingleMmap  = 1 << 0
	ioringEnterGetEvents  = 1 << 0
	ioringEnterSQWakeup   = 1 << 1
	ioringSQNeedWakeup    = 1 << 0
	ioringRegisterFiles   = 2
	iosqeFixedFile        = 1 << 0
	ioringOffSQRing       = 0
	ioringOffSQEs         = 0x10000000
	sysIoUringSetup       = 425
	sysIoUringEnter       = 426
	sysIoUringRegister    = 427
	ioUringSQESize        = 64
	ioUringCQESize        = 16
	ioUringDefaultEntries = 4
)

type ioSQRingOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type ioCQRingOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, CQEs, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type ioUringParams struct {
	SQEntries, CQEntries, Flags, SQThreadCPU, SQThreadIdle, Features, WQFd uint32
	Resv                                                                   [3]uint32
	SQOff                                                                  ioSQRingOffsets
	CQOff                                                                  ioCQRingOffsets
}

type ioUring struct {
	fd     int
	p      ioUringParams
	ring   []byte // SQ and CQ rings (IORING_FEAT_SINGLE_MMAP)
	sqes   []byte
	fixed  bool
	sqpoll bool
}

// newIOUring sets up a ring; with fixedFD >= 0 it registers that file as
// fixed file 0; with sqpoll a kernel thread submits.
func newIOUring(fixedFD int, sqpoll bool) (*ioUring, error) {
	r := &ioUring{fd: -1, sqpoll: sqpoll}
	if sqpoll {
		r.p.Flags |= ioringSetupSQPoll
		r.p.SQThreadIdle = 1000 // ms
	}
	fd, _, e := unix.Syscall(sysIoUringSetup, ioUringDefaultEntries, uintptr(unsafe.Pointer(&r.p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", e)
	}
	r.fd = int(fd)
	if r.p.Features&ioringFeatSingleMmap == 0 {
		r.Close()
		return nil, fmt.Errorf("io_uring without IORING_FEAT_SINGLE_MMAP")
	}
	size := max(r.p.SQOff.Array+r.p.SQEntries*4, r.p.CQOff.CQEs+r.p.CQEntries*ioUringCQESize)
	var err error
	if r.ring, err = unix.Mmap(r.fd, ioringOffSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.Close()
		return nil, fmt.Errorf("mapping io_uring rings: %w", err)
	}
	if r.sqes, err = unix.Mmap(r.fd, ioringOffSQEs, int(r.p.SQEntries*ioUringSQESize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE); err != nil {
		r.Close()
		return nil, fmt.Errorf("mapping io_uring SQEs: %w", err)
	}
	if fixedFD >= 0 {
		fds := []int32{int32(fixedFD)}
		if _, _, e := unix.Syscall6(sysIoUringRegister, uintptr(r.fd), ioringRegisterFiles, uintptr(unsafe.Pointer(&fds[0])), 1, 0, 0); e != 0 {
			r.Close()
			return nil, fmt.Errorf("registering a fixed file: %w", e)
		}
		r.fixed = true
	}
	return r, nil
}

func (r *ioUring) u32(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&r.ring[off])) }

// write writes data at off to fd (or fixed file 0) and waits for it.
func (r *ioUring) write(fd int, data []byte, off uint64) error {
	tail := atomic.LoadUint32(r.u32(r.p.SQOff.Tail))
	idx := tail & atomic.LoadUint32(r.u32(r.p.SQOff.RingMask))
	sqe := r.sqes[idx*ioUringSQESize : (idx+1)*ioUringSQESize]
	clear(sqe)
	sqe[0] = ioringOpWrite
	if r.fixed {
		sqe[1] = iosqeFixedFile
		fd = 0
	}
	binary.LittleEndian.PutUint32(sqe[4:], uint32(int32(fd)))
	binary.LittleEndian.PutUint64(sqe[8:], off)
	binary.LittleEndian.PutUint64(sqe[16:], uint64(uintptr(unsafe.Pointer(&data[0]))))
	binary.LittleEndian.PutUint32(sqe[24:], uint32(len(data)))
	binary.LittleEndian.PutUint64(sqe[32:], 0x1234) // user_data
	*(*uint32)(unsafe.Pointer(&r.ring[r.p.SQOff.Array+idx*4])) = idx
	atomic.StoreUint32(r.u32(r.p.SQOff.Tail), tail+1)

	flags := uintptr(ioringEnterGetEvents)
	if r.sqpoll && atomic.LoadUint32(r.u32(r.p.SQOff.Flags))&ioringSQNeedWakeup != 0 {
		flags |= ioringEnterSQWakeup
	}
	if _, _, e := unix.Syscall6(sysIoUringEnter, uintptr(r.fd), 1, 1, flags, 0, 0); e != 0 {
		return fmt.Errorf("io_uring_enter: %w", e)
	}
	head := atomic.LoadUint32(r.u32(r.p.CQOff.Head))
	for head == atomic.LoadUint32(r.u32(r.p.CQOff.Tail)) {
		// SQPOLL: the kernel thread may not have reaped the entry yet.
		if _, _, e := unix.Syscall6(sysIoUringEnter, uintptr(r.fd), 0, 1, ioringEnterGetEvents, 0, 0); e != 0 {
			return fmt.Errorf("io_uring_enter: %w", e)
		}
	}
	cqe := r.CQE(head)
	atomic.StoreUint32(r.u32(r.p.CQOff.Head), head+1)
	runtime.KeepAlive(data)
	if res := int32(binary.LittleEndian.Uint32(cqe[8:])); res != int32(len(data)) {
		return fmt.Errorf("io_uring write: result %d, want %d", res, len(data))
	}
	return nil
}

// CQE returns the completion entry at head.
func (r *ioUring) CQE(head uint32) []byte {
	idx := head & atomic.LoadUint32(r.u32(r.p.CQOff.RingMask))
	off := r.p.CQOff.CQEs + idx*ioUringCQESize
	return r.ring[off : off+ioUringCQESize]
}

func (r *ioUring) Close() error {
	if r.sqes != nil {
		unix.Munmap(r.sqes)
	}
	if r.ring != nil {
		unix.Munmap(r.ring)
	}
	if r.fd >= 0 {
		return unix.Close(r.fd)
	}
	return nil
}
