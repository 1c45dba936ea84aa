//go:build linux

package changes

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Linux native AIO (io_setup/io_submit/io_getevents), called directly: no
// library wraps it for Go, and one write needs only these three calls.

// iocb is struct iocb of linux/aio_abi.h (little-endian layout, 64 bytes).
type iocb struct {
	_      uint64 // aio_data
	_      uint32 // aio_key
	_      int32  // aio_rw_flags
	opcode uint16
	_      int16 // aio_reqprio
	fildes uint32
	buf    uint64
	nbytes uint64
	offset int64
	_      uint64 // aio_reserved2
	_      uint32 // aio_flags
	_      uint32 // aio_resfd
}

// ioEvent is struct io_event.
type ioEvent struct {
	data uint64
	obj  uint64
	res  int64
	res2 int64
}

const iocbCmdPwrite = 1 // IOCB_CMD_PWRITE

var _ [64]byte = [unsafe.Sizeof(iocb{})]byte{}

type aioContext uintptr

func aioSetup(n int) (aioContext, error) {
	var ctx aioContext
	if _, _, errno := unix.Syscall(unix.SYS_IO_SETUP, uintptr(n), uintptr(unsafe.Pointer(&ctx)), 0); errno != 0 {
		return 0, fmt.Errorf("io_setup: %w", errno)
	}
	return ctx, nil
}

func (c aioContext) destroy() error {
	if _, _, errno := unix.Syscall(unix.SYS_IO_DESTROY, uintptr(c), 0, 0); errno != 0 {
		return fmt.Errorf("io_destroy: %w", errno)
	}
	return nil
}

// pwrite submits one write of buf at off and waits for its completion. buf
// must stay mapped until then: it is outside the Go heap (see anonPage).
func (c aioContext) pwrite(fd int, buf []byte, off int64) error {
	cb := &iocb{
		opcode: iocbCmdPwrite,
		fildes: uint32(fd),
		buf:    uint64(uintptr(unsafe.Pointer(&buf[0]))),
		nbytes: uint64(len(buf)),
		offset: off,
	}
	cbs := []*iocb{cb}
	n, _, errno := unix.Syscall(unix.SYS_IO_SUBMIT, uintptr(c), 1, uintptr(unsafe.Pointer(&cbs[0])))
	if errno != 0 {
		return fmt.Errorf("io_submit: %w", errno)
	}
	if n != 1 {
		return fmt.Errorf("io_submit: accepted %d of 1", n)
	}
	var ev ioEvent
	for {
		n, _, errno = unix.Syscall6(unix.SYS_IO_GETEVENTS, uintptr(c), 1, 1, uintptr(unsafe.Pointer(&ev)), 0, 0)
		if errno == unix.EINTR {
			continue
		}
		if errno != 0 {
			return fmt.Errorf("io_getevents: %w", errno)
		}
		break
	}
	if n != 1 {
		return fmt.Errorf("io_getevents: %d events, want 1", n)
	}
	if ev.res < 0 {
		return fmt.Errorf("aio write: %w", unix.Errno(-ev.res))
	}
	if ev.res != int64(len(buf)) {
		return fmt.Errorf("aio write: wrote %d bytes, want %d", ev.res, len(buf))
	}
	return nil
}
